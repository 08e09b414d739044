// A generation session: one target context on a Model, an optional Speculator, the prompt cache,
// and the decoding loop (prompt evaluation, draft, one-batch verification, acceptance with the
// target's sampler, rollback of rejected tokens). Calls on one session are serialized.
#pragma once

#include <memory>
#include <mutex>

#include "generation.h"
#include "model.h"
#include "prompt_cache.h"
#include "speculator.h"

struct common_threadpools;  // common/common.h

namespace llama_mtp {

class Session {
public:
    Session(std::shared_ptr<Model> model, const ContextOptions& options);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Generates from `prompt` (token ids). `speculator` may be disabled (types empty/"none").
    // `on_step` (may be empty) receives each step's new text and tokens; `cancel` is polled
    // once per step. Throws ContextOverflowError, InvalidArgument, MTPUnavailableError, DecodeError.
    GenerationResult generate(const std::vector<llama_token>& prompt, const SamplingOptions& sampling,
                              const SpeculatorOptions& speculator, bool cache_prompt,
                              const StepCallback& on_step, const CancelCheck& cancel);

    // Forgets the cached prompt.
    void reset();
    uint32_t n_ctx() const;
    const ContextOptions& options() const { return options_; }

private:
    void ensure_context(uint32_t n_rs_seq, uint32_t n_outputs_max);
    void configure_speculator(const SpeculatorOptions& options);
    void free_context();

    std::shared_ptr<Model> model_;
    ModelHandle handle_;  // keeps the weights alive while the session exists
    ContextOptions options_;
    mutable std::mutex mutex_;
    // Declared before ctx_: the context is freed first (free_context), then its threads.
    std::unique_ptr<common_threadpools> threadpools_;
    llama_context* ctx_ = nullptr;
    llama_context_params ctx_params_{};
    uint32_t n_rs_seq_ = 0;
    std::unique_ptr<Speculator> speculator_;
    std::unique_ptr<PromptCache> cache_;
};

}  // namespace llama_mtp
