// What an engine slot keeps between requests so that a shared prompt prefix (multi-turn chat) is
// not evaluated again: the tokens of its sequence held in the target's memory, and for models with
// recurrent layers (whose state cannot be truncated) a few saved recurrent states to go back to.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "llama.h"

namespace llama_mtp {

class PromptCache {
public:
    PromptCache(llama_context* ctx_tgt, llama_seq_id seq, bool recurrent, size_t max_checkpoints = 3);

    bool recurrent() const { return recurrent_; }

    // Tokens whose state is in the target's memory, in order.
    const std::vector<llama_token>& tokens() const { return tokens_; }
    std::vector<llama_token>& tokens() { return tokens_; }

    // Saves the recurrent state as it is now (after tokens().size() tokens).
    void checkpoint();

    // Brings the memories (target, and draft if given) to the longest reusable prefix of `prompt`
    // that leaves at least one token to evaluate; returns its length.
    size_t reuse(const std::vector<llama_token>& prompt, llama_memory_t mem_dft);

    // Longest common prefix of the cached tokens and `prompt`.
    size_t common_prefix(const std::vector<llama_token>& prompt) const;

    // Forgets everything (this sequence removed from both memories).
    void clear(llama_memory_t mem_dft);

private:
    struct Checkpoint {
        size_t n_tokens;
        std::vector<uint8_t> state;
    };

    llama_context* ctx_;
    llama_seq_id seq_;
    bool recurrent_;
    size_t max_checkpoints_;
    std::vector<llama_token> tokens_;
    std::deque<Checkpoint> checkpoints_;
};

}  // namespace llama_mtp
