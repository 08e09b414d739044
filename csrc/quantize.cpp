#include "quantize.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "errors.h"
#include "gguf_file.h"
#include "llama.h"
#include "log_bridge.h"

namespace llama_mtp {
namespace {

const std::vector<std::pair<std::string, llama_ftype>>& ftype_table() {
    static const std::vector<std::pair<std::string, llama_ftype>> table = {
        {"F32", LLAMA_FTYPE_ALL_F32},         {"F16", LLAMA_FTYPE_MOSTLY_F16},
        {"BF16", LLAMA_FTYPE_MOSTLY_BF16},    {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
        {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},    {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
        {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S}, {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
        {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},    {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
        {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
        {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},    {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L},
        {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M}, {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S},
        {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},    {"Q2_K_S", LLAMA_FTYPE_MOSTLY_Q2_K_S},
        {"IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL}, {"IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS},
        {"TQ1_0", LLAMA_FTYPE_MOSTLY_TQ1_0},  {"TQ2_0", LLAMA_FTYPE_MOSTLY_TQ2_0},
    };
    return table;
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
    return s;
}

}  // namespace

std::vector<std::string> quantization_types() {
    std::vector<std::string> names;
    for (const auto& entry : ftype_table()) names.push_back(entry.first);
    return names;
}

void quantize(const std::string& src, const std::string& dst, const std::string& type, int threads,
              bool allow_requantize) {
    const std::string wanted = upper(type);
    const auto& table = ftype_table();
    auto it = std::find_if(table.begin(), table.end(), [&](const auto& e) { return e.first == wanted; });
    if (it == table.end()) {
        std::string known;
        for (const auto& e : table) known += (known.empty() ? "" : ", ") + e.first;
        throw InvalidArgument("unknown quantization type '" + type + "'; known types: " + known);
    }
    if (src == dst) throw InvalidArgument("quantize: source and destination are the same file");
    read_gguf(src, 0);  // raises FileMissing / ModelLoadError with a reason for a bad source

    llama_model_quantize_params params = llama_model_quantize_default_params();
    params.nthread = threads;
    params.ftype = it->second;
    params.allow_requantize = allow_requantize;
    clear_thread_errors();
    if (llama_model_quantize(src.c_str(), dst.c_str(), &params) != 0) {
        std::string why = take_thread_errors();
        throw QuantizeError("llama.cpp failed to quantize '" + src + "' to " + wanted +
                            (why.empty() ? std::string() : ":\n" + why));
    }
}

}  // namespace llama_mtp
