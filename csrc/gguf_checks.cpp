#include "gguf_checks.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "errors.h"
#include "llama-hparams.h"  // LLAMA_MAX_LAYERS, LLAMA_MAX_EXPERTS: the limits llama.cpp asserts

namespace llama_mtp {
namespace {

constexpr const char* kAdvice =
    "The file is corrupt or was written by a broken converter: download or convert it again.";

// Read-only view of the metadata with the conversions the checks need. Integers of any GGUF
// width come back as int64_t (a u64 above INT64_MAX as INT64_MAX: too large either way).
class Meta {
public:
    Meta(const GgufFile& file, const std::string& arch) : file_(file), arch_(arch) {}

    std::string key(const char* suffix) const { return arch_ + "." + suffix; }

    const GgufValue* find(const std::string& key) const {
        for (const auto& [name, value] : file_.metadata) {
            if (name == key) return &value;
        }
        return nullptr;
    }

    std::optional<int64_t> integer(const std::string& key) const {
        const GgufValue* v = find(key);
        if (v == nullptr) return std::nullopt;
        if (auto i = std::get_if<int64_t>(v)) return *i;
        if (auto u = std::get_if<uint64_t>(v)) return clamp(*u);
        return std::nullopt;
    }

    // A key llama.cpp reads with get_key_or_arr: one integer, or one per layer.
    std::vector<int64_t> integers(const std::string& key) const {
        const GgufValue* v = find(key);
        if (v == nullptr) return {};
        if (auto i = std::get_if<int64_t>(v)) return {*i};
        if (auto u = std::get_if<uint64_t>(v)) return {clamp(*u)};
        if (auto a = std::get_if<std::vector<int64_t>>(v)) return *a;
        if (auto a = std::get_if<std::vector<uint64_t>>(v)) {
            std::vector<int64_t> out;
            out.reserve(a->size());
            for (uint64_t x : *a) out.push_back(clamp(x));
            return out;
        }
        if (auto a = std::get_if<std::vector<bool>>(v)) return std::vector<int64_t>(a->begin(), a->end());
        return {};
    }

    std::optional<double> real(const std::string& key) const {
        const GgufValue* v = find(key);
        if (v == nullptr) return std::nullopt;
        if (auto d = std::get_if<double>(v)) return *d;
        return std::nullopt;
    }

    std::optional<std::string> str(const std::string& key) const {
        const GgufValue* v = find(key);
        if (v == nullptr) return std::nullopt;
        if (auto s = std::get_if<std::string>(v)) return *s;
        return std::nullopt;
    }

    const std::vector<std::string>* strings(const std::string& key) const {
        const GgufValue* v = find(key);
        return v == nullptr ? nullptr : std::get_if<std::vector<std::string>>(v);
    }

    [[noreturn]] void fail(const std::string& what) const {
        throw ModelLoadError("'" + file_.path + "': " + what + ". " + kAdvice);
    }

private:
    static int64_t clamp(uint64_t u) {
        return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                   ? std::numeric_limits<int64_t>::max()
                   : static_cast<int64_t>(u);
    }

    const GgufFile& file_;
    std::string arch_;
};

std::string num(int64_t v) { return std::to_string(v); }

// --- every architecture: llama_model_base::load_hparams and llama_vocab::impl::load -----------

// block_count and nextn_predict_layers: GGML_ASSERT(0 < n_layer_all <= LLAMA_MAX_LAYERS) and
// GGML_ASSERT(n_layer_nextn <= n_layer_all).
int64_t check_layer_counts(const Meta& m) {
    const std::string key = m.key("block_count");
    const auto n_layer = m.integer(key);
    if (!n_layer) return 0;  // missing or not an integer: llama.cpp reports it
    if (*n_layer < 1 || *n_layer > LLAMA_MAX_LAYERS) {
        m.fail(key + " = " + num(*n_layer) + "; expected 1.." + num(LLAMA_MAX_LAYERS));
    }
    const std::string nextn_key = m.key("nextn_predict_layers");
    if (const auto nextn = m.integer(nextn_key); nextn && (*nextn < 0 || *nextn > *n_layer)) {
        m.fail(nextn_key + " = " + num(*nextn) + " but " + key + " = " + num(*n_layer) +
               "; the MTP layers are part of the blocks, so expected 0.." + num(*n_layer));
    }
    return *n_layer;
}

// The expert counts load_hparams asserts on (for dense models too: they must then be absent/0).
void check_experts(const Meta& m) {
    const std::string count_key = m.key("expert_count");
    const std::string used_key = m.key("expert_used_count");
    const std::string groups_key = m.key("expert_group_count");
    const std::string group_used_key = m.key("expert_group_used_count");
    const int64_t n_expert = m.integer(count_key).value_or(0);
    const auto used = m.integers(used_key);
    const int64_t used_max = used.empty() ? 0 : *std::max_element(used.begin(), used.end());
    const int64_t groups = m.integer(groups_key).value_or(0);
    const int64_t group_used = m.integer(group_used_key).value_or(0);
    if (n_expert < 0 || n_expert > LLAMA_MAX_EXPERTS) {
        m.fail(count_key + " = " + num(n_expert) + "; expected 0.." + num(LLAMA_MAX_EXPERTS));
    }
    if (used_max > n_expert || (!used.empty() && *std::min_element(used.begin(), used.end()) < 0)) {
        m.fail(used_key + " = " + num(used_max) + " but " + count_key + " = " + num(n_expert) +
               "; a token cannot use more experts than there are");
    }
    if (n_expert > 0) {
        if (used_max == 0) m.fail(count_key + " = " + num(n_expert) + " but " + used_key + " is 0 or missing");
        if (groups < 0 || groups >= n_expert) {
            m.fail(groups_key + " = " + num(groups) + "; expected fewer groups than " + count_key + " = " +
                   num(n_expert));
        }
        if (groups > 1 && (n_expert % groups != 0 || group_used <= 0 || group_used >= groups)) {
            m.fail(groups_key + " = " + num(groups) + ", " + group_used_key + " = " + num(group_used) +
                   " with " + count_key + " = " + num(n_expert) +
                   "; expected groups dividing the experts and 0 < groups used < groups");
        }
    } else if (groups != 0) {
        m.fail(groups_key + " = " + num(groups) + " in a model without experts (" + count_key + " = 0)");
    }
}

// GGML_ASSERT(rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED): the names of
// llama-model.cpp's LLAMA_ROPE_SCALING_TYPES.
void check_rope_scaling(const Meta& m) {
    const std::string key = m.key("rope.scaling.type");
    const auto type = m.str(key);
    if (!type) return;
    for (const char* known : {"none", "linear", "yarn", "longrope"}) {
        if (*type == known) return;
    }
    m.fail(key + " = '" + *type + "'; expected one of none, linear, yarn, longrope");
}

// GGML_ASSERT(id_to_token.size() == token_to_id.size()) in llama_vocab::impl::load: every token
// string distinct, an empty one counting as "[EMPTY_<id>]" (the name llama.cpp gives it).
void check_tokens(const Meta& m) {
    const std::string key = "tokenizer.ggml.tokens";
    const std::vector<std::string>* tokens = m.strings(key);
    if (tokens == nullptr) return;
    std::deque<std::string> renamed;  // stable storage for the views of renamed empty tokens
    std::unordered_map<std::string_view, size_t> ids;
    ids.reserve(tokens->size());
    for (size_t i = 0; i < tokens->size(); ++i) {
        std::string_view word = (*tokens)[i];
        if (word.empty()) word = renamed.emplace_back("[EMPTY_" + std::to_string(i) + "]");
        auto [it, inserted] = ids.emplace(word, i);
        if (!inserted) {
            m.fail(key + " has the string '" + std::string(word.substr(0, 80)) + "' twice (tokens " +
                   std::to_string(it->second) + " and " + std::to_string(i) +
                   "); llama.cpp needs every token string to be distinct");
        }
    }
}

// --- qwen35 / qwen35moe: src/models/qwen35*.cpp and the ggml-cpu kernels their graphs reach ---

// The head sizes, head counts and RoPE dimensions the graph asserts on (n_embd_head_k ==
// n_embd_head_v; ggml-cpu rope: n_dims <= ne0, n_dims even, sections summing to at most ne0
// with one of the first three positive; attention: query heads a multiple of the KV heads). The
// graph takes one head count for every layer (layer 0's), while the KV cache is sized per layer.
void check_attention(const Meta& m) {
    const std::string head_key = m.key("attention.head_count");
    const std::string kv_key = m.key("attention.head_count_kv");
    const std::vector<int64_t> heads = m.integers(head_key);
    if (heads.empty()) return;  // llama.cpp then finds no head size and refuses the tensors
    const std::vector<int64_t> kv_heads = m.find(kv_key) ? m.integers(kv_key) : heads;
    if (kv_heads.empty()) return;  // not an integer: llama.cpp reports the type
    for (const auto& [list, key] : {std::pair{&heads, &head_key}, std::pair{&kv_heads, &kv_key}}) {
        if (std::adjacent_find(list->begin(), list->end(), std::not_equal_to<>()) != list->end()) {
            m.fail(*key + " differs between layers; llama.cpp's qwen35 graph uses one value for every layer");
        }
    }
    const int64_t n_head = heads[0];
    const int64_t n_head_kv = kv_heads[0];
    if (n_head <= 0) m.fail(head_key + " = " + num(n_head) + "; expected at least 1");
    if (n_head_kv <= 0 || n_head % n_head_kv != 0) {
        m.fail(kv_key + " = " + num(n_head_kv) + " with " + head_key + " = " + num(n_head) +
               "; expected a positive divisor of the query heads");
    }
    const int64_t n_embd = m.integer(m.key("embedding_length")).value_or(0);
    const std::string k_key = m.key("attention.key_length");
    const std::string v_key = m.key("attention.value_length");
    const int64_t head_k = m.integer(k_key).value_or(n_embd / n_head);
    const int64_t head_v = m.integer(v_key).value_or(n_embd / n_head);
    if (head_k <= 0 || head_k != head_v) {
        m.fail(k_key + " = " + num(head_k) + " and " + v_key + " = " + num(head_v) +
               "; the qwen35 graph needs equal, positive key and value head sizes");
    }
    const std::string rot_key = m.key("rope.dimension_count");
    const int64_t n_rot = m.integer(rot_key).value_or(head_k);
    if (n_rot <= 0 || n_rot > head_k || n_rot % 2 != 0) {
        m.fail(rot_key + " = " + num(n_rot) + " but the head size (" + k_key + ") is " + num(head_k) +
               "; RoPE needs an even dimension count in 1.." + num(head_k));
    }
    const std::string sec_key = m.key("rope.dimension_sections");
    auto sections = m.integers(sec_key);
    if (sections.size() == 1) sections.assign(4, sections[0]);  // one value: every section
    if (sections.size() == 4) {
        // llama.cpp keeps them as int: a u32 above INT32_MAX is negative there
        int64_t sum = 0;
        bool negative = false;
        for (int64_t& s : sections) {
            s = static_cast<int32_t>(static_cast<uint32_t>(s));
            negative = negative || s < 0;
            sum += s;
        }
        if (negative || sum <= 0 || sum > head_k ||
            std::max({sections[0], sections[1], sections[2]}) <= 0) {
            m.fail(sec_key + " = [" + num(sections[0]) + ", " + num(sections[1]) + ", " + num(sections[2]) +
                   ", " + num(sections[3]) + "]; multi-section RoPE needs non-negative sections, one of "
                   "the first three positive, summing to at most the head size " + num(head_k));
        }
    }
}

// Gated DeltaNet sizes: the graph computes head_v_dim = inner_size / time_step_rank and reshapes
// the recurrent state (state_size x inner_size values) into time_step_rank heads of head_v_dim^2,
// and repeats the key heads onto the value heads; only conv_kernel, state_size, group_count and
// time_step_rank are checked against tensor shapes by llama.cpp.
void check_delta_net(const Meta& m) {
    const std::string inner_key = m.key("ssm.inner_size");
    const std::string state_key = m.key("ssm.state_size");
    const std::string rank_key = m.key("ssm.time_step_rank");
    const std::string group_key = m.key("ssm.group_count");
    const std::string conv_key = m.key("ssm.conv_kernel");
    const auto inner = m.integer(inner_key);
    const auto state = m.integer(state_key);
    const auto rank = m.integer(rank_key);
    const auto groups = m.integer(group_key);
    const auto conv = m.integer(conv_key);
    if (!inner || !state || !rank || !groups || !conv) return;  // llama.cpp reports a missing key
    if (*state <= 0 || *rank <= 0 || *groups <= 0 || *conv <= 0) {
        m.fail(state_key + ", " + rank_key + ", " + group_key + " and " + conv_key +
               " must be positive (got " + num(*state) + ", " + num(*rank) + ", " + num(*groups) +
               ", " + num(*conv) + ")");
    }
    if (*rank % *groups != 0) {
        m.fail(rank_key + " = " + num(*rank) + " is not a multiple of " + group_key + " = " + num(*groups) +
               "; the value heads are shared out among the key heads");
    }
    if (*inner != *state * *rank) {
        m.fail(inner_key + " = " + num(*inner) + " but " + state_key + " x " + rank_key + " = " +
               num(*state) + " x " + num(*rank) + " = " + num(*state * *rank) +
               "; the DeltaNet value heads must fill the inner size exactly");
    }
    // Without an explicit per-layer list, layer i is recurrent when (i + 1) % interval != 0.
    if (m.find(m.key("attention.recurrent_layers")) == nullptr) {
        const std::string key = m.key("full_attention_interval");
        if (const auto interval = m.integer(key); interval && *interval == 0) {
            m.fail(key + " = 0; expected the (positive) distance between full-attention layers");
        }
    }
}

// The RMS norms (and the DeltaNet's L2 norms) take layer_norm_rms_epsilon: ggml-cpu asserts
// eps >= 0, which NaN fails too.
void check_norm_epsilon(const Meta& m) {
    const std::string key = m.key("attention.layer_norm_rms_epsilon");
    if (const auto eps = m.real(key); eps && !(*eps >= 0.0)) {
        m.fail(key + " = " + std::to_string(*eps) + "; expected a small non-negative number (e.g. 1e-6)");
    }
}

// qwen35moe sizes each expert's FFN as feed_forward_length / expert_used_count when
// expert_feed_forward_length is absent, before any tensor is checked: it needs experts.
void check_moe(const Meta& m) {
    const std::string key = m.key("expert_count");
    if (m.integer(key).value_or(0) <= 0) {
        m.fail(key + " is 0 or missing; a qwen35moe model has routed experts (did a dense qwen35 file "
               "get the qwen35moe architecture?)");
    }
}

// ggml-cpu's ssm_conv kernel asserts f32 weights (every architecture with a conv1d state).
void check_conv_types(const GgufFile& file) {
    for (const auto& t : file.tensors) {
        if (t.name.find(".ssm_conv1d.") != std::string::npos && t.type != "f32") {
            throw ModelLoadError("'" + file.path + "': tensor " + t.name + " is " + t.type +
                                 "; llama.cpp's ssm_conv kernel needs f32 (re-convert or re-quantize "
                                 "with a current llama.cpp, which keeps it f32)");
        }
    }
}

// The qwen35 graphs use the norm weights, the biases and ssm_a as the second operand of an
// elementwise mul / add with f32 activations, which ggml-cpu only implements for an f32 operand
// (GGML_ABORT "binary_op: unsupported types"). Converters and llama-quantize keep them f32.
// Every other tensor is a matrix of a mul_mat / get_rows: ggml-cpu has no dot product for the
// activation-side quantizations (q8_1, q8_K) and the integer / f64 types, and calls a null
// function on them (SIGSEGV at the first decode; llama.cpp's load-time op check lets them pass).
void check_tensor_types(const GgufFile& file) {
    auto ends_with = [](const std::string& s, std::string_view tail) {
        return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
    };
    for (const auto& t : file.tensors) {
        const bool elementwise = ends_with(t.name, "norm.weight") || ends_with(t.name, ".bias") ||
                                 ends_with(t.name, ".ssm_a");
        if (elementwise && t.type != "f32") {
            throw ModelLoadError("'" + file.path + "': tensor " + t.name + " is " + t.type +
                                 "; llama.cpp's elementwise kernels need norm weights, biases and "
                                 "ssm_a in f32. " + kAdvice);
        }
        for (const char* no_kernel : {"q8_1", "q8_K", "i8", "i16", "i32", "i64", "f64"}) {
            if (!elementwise && t.type == no_kernel) {
                throw ModelLoadError("'" + file.path + "': tensor " + t.name + " is " + t.type +
                                     ", a type llama.cpp has no matrix kernel for (weights are f32, "
                                     "f16, bf16 or a weight quantization such as q8_0, q4_K). " +
                                     kAdvice);
            }
        }
    }
}

// Qwen3.5/3.6 ship a byte-level BPE vocabulary ("gpt2"); llama.cpp's other tokenizers assume
// files made for them (SPM byte tokens, RWKV's newline token, UGM's charsmap) and assert or
// throw out of tokenize() on a vocabulary that is not.
void check_tokenizer_model(const Meta& m) {
    const std::string key = "tokenizer.ggml.model";
    if (const auto model = m.str(key); model && *model != "gpt2") {
        m.fail(key + " = '" + *model + "'; Qwen3.5/3.6 models use the byte-level BPE tokenizer 'gpt2'");
    }
}

// A GGUF's chat templates (tokenizer.chat_template and the named tokenizer.chat_template.*).
void check_chat_templates(const Meta& m, const GgufFile& file) {
    for (const auto& [name, value] : file.metadata) {
        if (name.rfind("tokenizer.chat_template", 0) != 0) continue;
        const auto* source = std::get_if<std::string>(&value);
        if (source == nullptr) continue;
        if (std::string why = chat_template_problem(*source); !why.empty()) m.fail(name + " " + why);
    }
}

}  // namespace

void check_loadable(const GgufFile& file, const std::string& arch) {
    const Meta m(file, arch);
    const bool qwen35 = arch == "qwen35" || arch == "qwen35moe";
    check_layer_counts(m);
    check_experts(m);
    check_rope_scaling(m);
    check_conv_types(file);
    check_chat_templates(m, file);
    if (qwen35) check_tokenizer_model(m);
    check_tokens(m);
    if (qwen35) {
        check_tensor_types(file);
        check_attention(m);
        check_delta_net(m);
        check_norm_epsilon(m);
        if (arch == "qwen35moe") check_moe(m);
    }
}

std::string chat_template_problem(const std::string& src) {
    auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
    size_t depth = 0;
    size_t i = 0;
    const size_t n = src.size();
    while (i < n) {
        const size_t open = src.find('{', i);
        if (open == std::string::npos || open + 1 >= n) break;
        const char kind = src[open + 1];
        if (kind == '#') {  // comment: not parsed
            const size_t end = src.find("#}", open + 2);
            i = end == std::string::npos ? n : end + 2;
            continue;
        }
        if (kind != '{' && kind != '%') {
            i = open + 1;
            continue;
        }
        // one tag: count its tokens (a word, a number, a quoted string or one other character)
        // up to its closing "}}" / "%}" outside strings and braces, as llama.cpp's lexer does
        size_t tokens = 0;
        size_t braces = 0;
        std::string keyword;
        bool assigns = false;  // {% set x = ... %} (a block {% set x %} ... {% endset %} has none)
        size_t j = open + 2;
        bool closed = false;
        while (j < n) {
            const char c = src[j];
            if (std::isspace(static_cast<unsigned char>(c))) {
                ++j;
            } else if (c == '"' || c == '\'') {
                ++tokens;
                for (++j; j < n && src[j] != c; ++j) {
                    if (src[j] == '\\') ++j;
                }
                ++j;
            } else if (ident(c)) {
                const size_t start = j;
                while (j < n && ident(src[j])) ++j;
                if (keyword.empty()) keyword = src.substr(start, j - start);
                ++tokens;
            } else if (c == '}' && j + 1 < n && src[j + 1] == '}' && kind == '{' && braces == 0) {
                j += 2;
                closed = true;
                break;
            } else if (c == '%' && j + 1 < n && src[j + 1] == '}' && kind == '%') {
                j += 2;
                closed = true;
                break;
            } else {
                if (c == '{') ++braces;
                if (c == '}' && braces > 0) --braces;
                if (c == '=') assigns = true;
                ++tokens;
                ++j;
            }
        }
        if (tokens > kMaxTemplateTagTokens) {
            return "has a tag of " + std::to_string(tokens) + " tokens at byte " + std::to_string(open) +
                   "; llama.cpp's Jinja engine recurses per nesting level with no limit and overflows "
                   "the stack on deep expressions: expected at most " +
                   std::to_string(kMaxTemplateTagTokens) + " tokens per tag";
        }
        if (kind == '%') {
            if (keyword == "raw") {  // not parsed up to {% endraw %}
                const size_t end = src.find("endraw", j);
                j = end == std::string::npos ? n : end;
            } else if (keyword == "if" || keyword == "for" || keyword == "macro" || keyword == "call" ||
                       keyword == "filter" || keyword == "generation" ||
                       (keyword == "set" && !assigns)) {
                if (++depth > kMaxTemplateBlockDepth) {
                    return "nests more than " + std::to_string(kMaxTemplateBlockDepth) +
                           " blocks (at byte " + std::to_string(open) +
                           "); llama.cpp's Jinja engine recurses per block with no limit and "
                           "overflows the stack on deep nesting";
                }
            } else if (keyword.rfind("end", 0) == 0 && depth > 0) {
                --depth;
            }
        }
        if (!closed) break;  // unterminated: llama.cpp's parser reports it
        i = j;
    }
    return "";
}

}  // namespace llama_mtp
