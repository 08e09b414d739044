#include "prompt_cache.h"

#include <algorithm>

namespace llama_mtp {

PromptCache::PromptCache(llama_context* ctx_tgt, bool recurrent, size_t max_checkpoints)
    : ctx_(ctx_tgt), recurrent_(recurrent), max_checkpoints_(max_checkpoints) {}

void PromptCache::checkpoint() {
    if (!recurrent_ || tokens_.empty()) return;
    if (!checkpoints_.empty() && checkpoints_.back().n_tokens == tokens_.size()) return;
    Checkpoint ck{tokens_.size(), {}};
    ck.state.resize(llama_state_seq_get_size_ext(ctx_, 0, LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY));
    if (ck.state.empty() || llama_state_seq_get_data_ext(ctx_, ck.state.data(), ck.state.size(), 0,
                                                         LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY) == 0) {
        return;  // no checkpoint: a later divergent prompt is simply evaluated from the start
    }
    checkpoints_.push_back(std::move(ck));
    while (checkpoints_.size() > max_checkpoints_) checkpoints_.pop_front();
}

void PromptCache::clear(llama_memory_t mem_dft) {
    llama_memory_clear(llama_get_memory(ctx_), true);
    if (mem_dft) llama_memory_clear(mem_dft, true);
    tokens_.clear();
    checkpoints_.clear();
}

size_t PromptCache::reuse(const std::vector<llama_token>& prompt, llama_memory_t mem_dft) {
    size_t common = 0;
    while (common < tokens_.size() && common < prompt.size() && tokens_[common] == prompt[common]) ++common;
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
            llama_state_seq_set_data_ext(ctx_, it->state.data(), it->state.size(), 0,
                                         LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY) == 0) {
            clear(mem_dft);
            return 0;
        }
        keep = it->n_tokens;
    }
    const auto pos = static_cast<llama_pos>(keep);
    if (keep == 0 || !llama_memory_seq_rm(mem_tgt, 0, pos, -1) ||
        (mem_dft && !llama_memory_seq_rm(mem_dft, 0, pos, -1))) {
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
