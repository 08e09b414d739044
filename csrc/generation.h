// Options and results of text generation, shared by the C++ core and the binding layer.
// Field names follow llama-server's `timings` JSON and vLLM's speculative-decoding metrics.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <string>
#include <vector>

#include "common.h"  // llama.cpp common: common_grammar_trigger
#include "llama.h"
#include "tensor_placement.h"

namespace llama_mtp {

// How a context is created (llama-cli: -c, -b, -ub, -t, -tb, -fa, -ctk, -ctv).
struct ContextOptions {
    uint32_t n_ctx = 4096;
    uint32_t n_batch = 2048;
    uint32_t n_ubatch = 512;
    int32_t n_threads = 0;        // <= 0: llama.cpp's default (physical cores)
    int32_t n_threads_batch = 0;  // <= 0: same as n_threads
    std::string flash_attn = "auto";  // "auto" | "on" | "off"
    std::string cache_type_k = "f16";
    std::string cache_type_v = "f16";
    bool offload_kqv = true;  // KV cache and its ops on the GPU (llama.cpp: -nkvo turns it off)
    bool kv_unified = true;  // one KV pool shared by all sequences (llama.cpp: -kvu / -no-kvu)
};

// Which speculator drafts tokens (llama.cpp: --spec-type, --spec-draft-*). Field names are those
// of llama_mtp.Speculator.
struct SpeculatorOptions {
    std::string type = "none";  // llama.cpp's name: "draft-mtp", "draft-simple", "ngram-simple", ...
    int32_t n_max = 3;
    int32_t n_min = 0;
    float p_min = 0.0f;
    std::string model_path;     // draft-simple: the draft GGUF; draft-mtp: an MTP sidecar GGUF
    int32_t gpu_layers = -1;    // --spec-draft-ngl
    // --spec-draft-device: the draft model's / MTP sidecar's devices (names, or an RPC server's
    // host:port; {"none"}: no offload); empty: the target's. The MTP head inside the target
    // file runs where the target placed its last block, as in llama.cpp.
    std::vector<std::string> devices;
    std::string cache_type_k = "f16";  // -ctkd
    std::string cache_type_v = "f16";  // -ctvd
    // -otd / --cpu-moe-draft / --n-cpu-moe-draft: buffer types of a separately loaded draft
    // model's (or MTP sidecar's) weights, see tensor_placement.h. The MTP head inside the
    // target file is placed by the target's own options, as in llama.cpp.
    std::vector<std::pair<std::string, std::string>> override_tensor;
    bool cpu_moe = false;
    int32_t n_cpu_moe = 0;
    // n-gram speculators (llama.cpp defaults)
    int32_t ngram_size_n = 12;
    int32_t ngram_size_m = 48;
    int32_t ngram_min_hits = 1;
    // n_max = "auto": the draft length is chosen before every draft, up to n_max (csrc/adaptive.h).
    bool adaptive = false;

    bool enabled() const { return !type.empty() && type != "none"; }
    TensorPlacement tensor_placement() const { return {override_tensor, cpu_moe, n_cpu_moe}; }
};

// Sampling (llama.cpp common_params_sampling, vLLM SamplingParams).
struct SamplingOptions {
    float temperature = 0.8f;
    int32_t top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    float typical_p = 1.0f;
    float repeat_penalty = 1.0f;
    int32_t repeat_last_n = 64;
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    uint32_t seed = LLAMA_DEFAULT_SEED;
    int32_t max_tokens = 256;  // < 0: until EOS or the context is full
    std::vector<std::string> stop;
    std::map<llama_token, float> logit_bias;
    std::string grammar;  // GBNF
    bool ignore_eos = false;
    // Reasoning budget (chat): after `reasoning_budget_tokens` tokens inside the thinking block
    // (opened by `reasoning_budget_start`), llama.cpp's sampler forces `reasoning_budget_forced`.
    int32_t reasoning_budget_tokens = -1;  // -1: no budget
    std::vector<llama_token> reasoning_budget_start;
    std::vector<std::vector<llama_token>> reasoning_budget_end;
    std::vector<llama_token> reasoning_budget_forced;
    std::string generation_prompt;  // the assistant opener the chat template already wrote
    // The chat template's own grammar (a JSON response format, tool calls; ChatPrompt::constrain
    // sets these): the generation prompt is fed to it first, as llama-server does for
    // COMMON_GRAMMAR_TYPE_TOOL_CALLS, so that its reasoning part starts where the template left
    // off. `grammar_lazy`: it only applies from the first trigger on (tool calls in free text).
    bool grammar_from_template = false;
    bool grammar_lazy = false;
    std::vector<common_grammar_trigger> grammar_triggers;
    // Log-probabilities of the generated tokens under the target model (-1: off; k >= 0: also
    // the k most likely alternatives of each token, at most kMaxLogprobs).
    int32_t logprobs = -1;
};

constexpr int32_t kMaxLogprobs = 20;

// Log-probability of one generated token and of the most likely alternatives at its position,
// from the target model's raw distribution (before the sampler's transformations).
struct TokenLogprob {
    llama_token token = 0;
    float logprob = 0.0f;
    std::vector<std::pair<llama_token, float>> top;
};

// llama-server `timings` + vLLM speculative metrics. Always fully populated (0 when unused).
struct GenerationStats {
    int32_t prompt_n = 0;       // prompt tokens evaluated in this call
    int32_t cache_n = 0;        // prompt tokens reused from the previous call
    double prompt_ms = 0.0;
    int32_t predicted_n = 0;    // tokens generated
    double predicted_ms = 0.0;  // from the end of the prompt to the end of generation
    int32_t draft_n = 0;        // tokens drafted
    int32_t draft_n_accepted = 0;
    int32_t num_drafts = 0;     // verification steps that carried a draft
    std::vector<int32_t> accepted_per_position;  // [i]: drafts whose token i was accepted
    std::vector<int32_t> draft_len_histogram;    // [k]: generation steps that drafted k tokens
};

enum class FinishReason { kStop, kLength, kEos, kCancelled };

struct GenerationResult {
    std::string text;  // complete UTF-8 (invalid bytes replaced), stop string excluded
    std::vector<llama_token> tokens;
    FinishReason finish_reason = FinishReason::kLength;
    std::string stop_reason;  // the stop string matched, if any
    std::vector<TokenLogprob> logprobs;  // one per token when SamplingOptions::logprobs >= 0
    GenerationStats stats;
};


}  // namespace llama_mtp
