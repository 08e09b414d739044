#include "tensor_placement.h"

#include <map>
#include <regex>

#include "common.h"
#include "errors.h"

namespace llama_mtp {
namespace {

// Name -> default buffer type of every registered device, as llama.cpp's -ot parser builds it
// (its lookup is a static function of common/arg.cpp, so it is not callable from here), plus
// the given devices: our RPC servers' devices are not registered globally (placement.h).
std::map<std::string, ggml_backend_buffer_type_t> buffer_types(const std::vector<ggml_backend_dev_t>& devices) {
    std::map<std::string, ggml_backend_buffer_type_t> out;
    auto add = [&](ggml_backend_dev_t dev) {
        ggml_backend_buffer_type_t buft = ggml_backend_dev_buffer_type(dev);
        if (buft != nullptr) out[ggml_backend_buft_name(buft)] = buft;
    };
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) add(ggml_backend_dev_get(i));
    for (auto* dev : devices) add(dev);
    return out;
}

std::string joined(const std::map<std::string, ggml_backend_buffer_type_t>& known) {
    std::string out;
    for (const auto& entry : known) out += (out.empty() ? "" : ", ") + entry.first;
    return out;
}

// ggml-rpc names an RPC server's buffer types "RPC<device>[<endpoint>]".
bool is_rpc_buffer_name(const std::string& name) {
    return name.rfind("RPC", 0) == 0 && name.find('[') != std::string::npos && name.back() == ']';
}

// Everything but the buffer type names. Returns the patterns common's --cpu-moe / --n-cpu-moe
// add after the explicit ones (all to the CPU).
std::vector<std::string> checked_patterns(const TensorPlacement& placement) {
    if (placement.n_cpu_moe < 0) throw InvalidArgument("n_cpu_moe must be >= 0, not " + std::to_string(placement.n_cpu_moe));
    for (const auto& [pattern, buffer] : placement.override_tensor) {
        if (pattern.empty()) throw InvalidArgument("override_tensor: empty tensor name pattern (for '" + buffer + "')");
        try {
            // llama.cpp compiles each pattern while loading (std::regex, ECMAScript) and would
            // abort on a bad one: compile it here so that it is an error before anything loads
            std::regex check(pattern);
        } catch (const std::regex_error& e) {
            throw InvalidArgument("override_tensor: '" + pattern + "' is not a valid regular expression "
                                  "(ECMAScript, as llama.cpp reads it): " + e.what());
        }
    }
    std::vector<std::string> moe;
    // common's own patterns: every block's (or block i's) ffn_{up,down,gate,gate_up}_exps
    if (placement.cpu_moe) moe.emplace_back(LLM_FFN_EXPS_REGEX);
    for (int32_t i = 0; i < placement.n_cpu_moe; ++i) moe.push_back(llm_ffn_block_regex(i, LLM_FFN_EXPS_REGEX));
    const size_t n = placement.override_tensor.size() + moe.size();
    if (n > llama_max_tensor_buft_overrides()) {
        throw InvalidArgument("too many tensor overrides (" + std::to_string(n) + "; llama.cpp takes at most " +
                              std::to_string(llama_max_tensor_buft_overrides()) + ")");
    }
    return moe;
}

InvalidArgument unknown_buffer(const std::string& buffer, const std::string& pattern,
                               const std::map<std::string, ggml_backend_buffer_type_t>& known) {
    return InvalidArgument("override_tensor: unknown buffer type '" + buffer + "' for '" + pattern +
                           "'; known buffer types: " + joined(known));
}

}  // namespace

std::vector<std::string> buffer_type_names(const std::vector<ggml_backend_dev_t>& devices) {
    std::vector<std::string> names;
    for (const auto& entry : buffer_types(devices)) names.push_back(entry.first);
    return names;
}

void validate_tensor_placement(const TensorPlacement& placement) {
    checked_patterns(placement);
    const auto known = buffer_types({});
    for (const auto& [pattern, buffer] : placement.override_tensor) {
        if (known.count(buffer) == 0 && !is_rpc_buffer_name(buffer)) throw unknown_buffer(buffer, pattern, known);
    }
}

TensorOverrides::TensorOverrides(const TensorPlacement& placement, const std::vector<ggml_backend_dev_t>& devices) {
    const std::vector<std::string> moe = checked_patterns(placement);
    const auto known = buffer_types(devices);
    auto add = [&](const std::string& pattern, ggml_backend_buffer_type_t buft) {
        patterns_.push_back(pattern);
        overrides_.push_back({patterns_.back().c_str(), buft});
    };
    for (const auto& [pattern, buffer] : placement.override_tensor) {
        auto it = known.find(buffer);
        if (it == known.end()) throw unknown_buffer(buffer, pattern, known);
        add(pattern, it->second);
    }
    for (const auto& pattern : moe) add(pattern, ggml_backend_cpu_buffer_type());
    if (!overrides_.empty()) overrides_.push_back({nullptr, nullptr});
}

void TensorOverrides::apply(llama_model_params& params) const {
    params.tensor_buft_overrides = overrides_.empty() ? nullptr : overrides_.data();
}

}  // namespace llama_mtp
