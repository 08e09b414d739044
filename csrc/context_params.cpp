#include "context_params.h"

#include <algorithm>

#include "common.h"
#include "errors.h"

namespace llama_mtp {

ggml_type cache_type_from_name(const std::string& name) {
    static const ggml_type allowed[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16,
                                        GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                                        GGML_TYPE_IQ4_NL, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1};
    std::string known;
    for (ggml_type t : allowed) {
        if (name == ggml_type_name(t)) return t;
        known += (known.empty() ? "" : ", ") + std::string(ggml_type_name(t));
    }
    throw InvalidArgument("unknown KV cache type '" + name + "'; use one of: " + known);
}

llama_context_params make_context_params(const ContextOptions& o, uint32_t n_rs_seq,
                                         uint32_t n_outputs_max, uint32_t n_seq) {
    if (o.n_ctx < 16) throw InvalidArgument("n_ctx must be at least 16");
    if (o.n_batch < 1 || o.n_ubatch < 1) throw InvalidArgument("n_batch and n_ubatch must be >= 1");
    if (o.n_ubatch > o.n_batch) throw InvalidArgument("n_ubatch must not exceed n_batch");
    if (n_seq < 1) throw InvalidArgument("n_parallel must be >= 1");
    if (!o.kv_unified && o.n_ctx / n_seq < 16) {
        throw InvalidArgument("n_ctx / n_parallel must be at least 16 tokens per sequence");
    }
    if (n_rs_seq > 0 && o.n_ubatch < n_rs_seq + 2) {
        throw InvalidArgument("n_ubatch (" + std::to_string(o.n_ubatch) +
                              ") must be at least the draft length + 2 (" + std::to_string(n_rs_seq + 2) +
                              ") so that a verification batch is one micro-batch");
    }
    llama_context_params p = llama_context_default_params();
    p.n_ctx = o.n_ctx;
    p.n_batch = o.n_batch;
    p.n_ubatch = o.n_ubatch;
    p.n_seq_max = n_seq;
    p.kv_unified = o.kv_unified;
    p.n_rs_seq = n_rs_seq;
    p.n_outputs_max = std::max<uint32_t>(1, std::min(n_outputs_max, o.n_batch));
    p.n_outputs_max_per_seq = 0;
    const int32_t threads = o.n_threads > 0 ? o.n_threads : common_cpu_get_num_physical_cores();
    p.n_threads = threads;
    p.n_threads_batch = o.n_threads_batch > 0 ? o.n_threads_batch : threads;
    if (o.flash_attn == "auto") p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    else if (o.flash_attn == "on") p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    else if (o.flash_attn == "off") p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    else throw InvalidArgument("flash_attn must be 'auto', 'on' or 'off', not '" + o.flash_attn + "'");
    p.type_k = cache_type_from_name(o.cache_type_k);
    p.type_v = cache_type_from_name(o.cache_type_v);
    p.offload_kqv = o.offload_kqv;
    p.no_perf = true;
    return p;
}

}  // namespace llama_mtp
