#include "prompt_cache.h"

#include <algorithm>

namespace llama_mtp {

PromptCache::PromptCache(llama_context* ctx_tgt, llama_seq_id seq, bool recurrent, size_t max_checkpoints)
    : ctx_(ctx_tgt), seq_(seq), recurrent_(recurrent), max_checkpoints_(max_checkpoints) {}

void PromptCache::checkpoint() {
    if (!recurrent_ || tokens_.empty()) return;
    if (!checkpoints_.empty() && checkpoints_.back().n_tokens == tokens_.size()) return;
    Checkpoint ck{tokens_.size(), {}};
    ck.state.resize(llama_state_seq_get_size_ext(ctx_, seq_, LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY));
    if (ck.state.empty() || llama_state_seq_get_data_ext(ctx_, ck.state.data(), ck.state.size(), seq_,
                                                         LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY) == 0) {
        return;  // no checkpoint: a later divergent prompt is simply evaluated from the start
    }
    checkpoints_.push_back(std::move(ck));
    while (checkpoints_.size() > max_checkpoints_) checkpoints_.pop_front();
}

void PromptCache::clear(llama_memory_t mem_dft) {
    llama_memory_seq_rm(llama_get_memory(ctx_), seq_, -1, -1);
    if (mem_dft) llama_memory_seq_rm(mem_dft, seq_, -1, -1);
    tokens_.clear();
    checkpoints_.clear();
}

size_t PromptCache::common_prefix(const std::vector<llama_token>& prompt) const {
    size_t n = 0;
    while (n < tokens_.size() && n < prompt.size() && tokens_[n] == prompt[n]) ++n;
    return n;
}

size_t PromptCache::reuse(const std::vector<llama_token>& prompt, llama_memory_t mem_dft) {
    const size_t common = common_prefix(prompt);
    const size_t wanted = std::min(common, prompt.empty() ? 0 : prompt.size() - 1);
    if (wanted == tokens_.size()) return wanted;  // the whole cache is a prefix: nothing to cut

    llama_memory_t mem_tgt = llama_get_memory(ctx_);
    size_t keep = 0;
    if (!recurrent_) {
        keep = wanted;
    } else {
        // The recurrent state cannot be truncated: go back to the newest checkpoint in the prefix.
        auto it = std::find_if(checkpoints_.rbegin(), checkpoints_.rend(),
                               [&](const Checkpoint& c) { return c.n_tokens <= wanted; });
        if (it == checkpoints_.rend() ||
            llama_state_seq_set_data_ext(ctx_, it->state.data(), it->state.size(), seq_,
                                         LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY) == 0) {
            clear(mem_dft);
            return 0;
        }
        keep = it->n_tokens;
    }
    const auto pos = static_cast<llama_pos>(keep);
    if (keep == 0 || !llama_memory_seq_rm(mem_tgt, seq_, pos, -1) ||
        (mem_dft && !llama_memory_seq_rm(mem_dft, seq_, pos, -1))) {
        clear(mem_dft);
        return 0;
    }
    tokens_.resize(keep);
    checkpoints_.erase(std::remove_if(checkpoints_.begin(), checkpoints_.end(),
                                      [&](const Checkpoint& c) { return c.n_tokens > keep; }),
                       checkpoints_.end());
    return keep;
}

}  // namespace llama_mtp
