// One sequence slot of the engine: the tokens its sequence holds in the context's memory (with
// recurrent checkpoints for prefix reuse) and, while it serves a request, that request's sampler,
// speculative state, output text stream, log-probabilities and statistics.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "adaptive.h"
#include "common.h"
#include "generation.h"
#include "prompt_cache.h"
#include "request.h"
#include "sampling.h"  // llama.cpp common/sampling.h
#include "text_stream.h"

namespace llama_mtp {

class Slot {
public:
    using Clock = std::chrono::steady_clock;
    enum class State { kIdle, kPrompt, kGenerating };

    Slot(llama_context* ctx, llama_seq_id id, bool recurrent);

    llama_seq_id id() const { return id_; }
    State state() const { return state_; }
    bool active() const { return state_ != State::kIdle; }
    PromptCache& cache() { return cache_; }
    const PromptCache& cache() const { return cache_; }
    // The draft context's memory holds this sequence's cached tokens too.
    bool draft_synced = false;
    uint64_t last_used = 0;

    // --- a request ---------------------------------------------------------------------------
    // Takes the request; `n_reused` prompt tokens are already in memory.
    void start(std::shared_ptr<Request> request, common_sampler_ptr sampler, bool speculate, int32_t n_draft,
               size_t n_reused, const llama_vocab* vocab);
    Request& request() { return *request_; }
    const std::shared_ptr<Request>& request_ptr() const { return request_; }
    const RequestOptions& options() const { return request_->options(); }
    common_sampler* sampler() { return sampler_.get(); }
    bool speculate() const { return speculate_; }
    int32_t n_draft() const { return n_draft_; }

    // Prompt evaluation: the next position to evaluate, and where recurrent checkpoints go.
    size_t n_prompt_done() const { return cache_.tokens().size(); }
    size_t checkpoint_before_last() const { return checkpoint_last_; }
    size_t checkpoint_early() const { return checkpoint_early_; }
    bool checkpoints() const { return checkpoints_; }
    // The prompt has been evaluated: `first` is the token sampled from its last row.
    void begin_generation(llama_token first);

    // Generation.
    DraftController controller;     // adaptive speculation: this sequence's draft lengths
    llama_token id_last = 0;        // sampled, not yet in memory
    llama_tokens draft;             // this step's draft
    std::vector<int32_t> rows;      // this step's batch rows: prompt output row / verification rows

    // Appends generated tokens (stopping at EOG / a stop string / max_tokens); `logprob_rows[i]`
    // is the batch row whose logits produced tokens[i] (used when the request wants logprobs).
    void emit(const std::vector<llama_token>& tokens, const std::vector<int32_t>& logprob_rows,
              llama_context* ctx);
    bool done() const { return done_; }
    int32_t n_generated() const { return static_cast<int32_t>(result_.tokens.size()); }
    void cancel_generation() { result_.finish_reason = FinishReason::kCancelled; done_ = true; }
    // The context (or the slot's share of it) is full.
    void stop_for_length() { result_.finish_reason = FinishReason::kLength; done_ = true; }
    // Hands this step's new text to a streaming caller.
    void flush_chunk();
    // Ends the request: final text and timings into the result, which is returned.
    GenerationResult finish_result();
    // Drops the request (after finish or failure); the cache stays for prefix reuse.
    void release();

    GenerationStats& stats() { return result_.stats; }
    Clock::time_point t_start;  // admission
    Clock::time_point t_first;  // first token sampled

private:
    llama_seq_id id_;
    PromptCache cache_;
    State state_ = State::kIdle;

    std::shared_ptr<Request> request_;
    common_sampler_ptr sampler_;
    bool speculate_ = false;
    int32_t n_draft_ = 0;
    bool checkpoints_ = false;
    size_t checkpoint_early_ = 0;
    size_t checkpoint_last_ = 0;

    const llama_vocab* vocab_ = nullptr;
    std::unique_ptr<TextStream> stream_;
    GenerationResult result_;
    bool done_ = false;
    Chunk pending_;
};

// log-probability of `token` and the `top` most likely tokens under `logits` (n_vocab values).
TokenLogprob token_logprob(const float* logits, int32_t n_vocab, llama_token token, int32_t top);

}  // namespace llama_mtp
