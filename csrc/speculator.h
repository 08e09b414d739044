// The drafting side of speculative decoding: the draft context (MTP head or a separate draft
// model) and llama.cpp's common_speculative, which does all drafting. No drafting logic is ours.
#pragma once

#include <memory>
#include <vector>

#include "generation.h"
#include "llama.h"
#include "speculative.h"

namespace llama_mtp {

class Speculator {
public:
    // Creates the draft context next to `ctx_tgt` (which must outlive this object).
    // Throws MTPUnavailableError / InvalidArgument / ModelLoadError with an actionable message.
    Speculator(const SpeculatorOptions& options, llama_model* model_tgt, bool mtp_loaded,
               llama_context* ctx_tgt, const llama_context_params& ctx_params_tgt);
    ~Speculator();
    Speculator(const Speculator&) = delete;
    Speculator& operator=(const Speculator&) = delete;

    const SpeculatorOptions& options() const { return options_; }
    int32_t n_max() const { return n_max_; }
    llama_context* ctx_dft() const { return ctx_dft_; }
    llama_memory_t mem_dft() const { return ctx_dft_ ? llama_get_memory(ctx_dft_) : nullptr; }

    // Mirrors a batch the target just decoded (prompt chunks and verification batches).
    bool process(const common_batch& batch);
    // Call once per generation, after the prompt: `tokens` are those in the target's memory.
    void begin(const llama_tokens& tokens);
    // Drafts up to `n_max` tokens after `id_last` at position `pos0`; leaves the draft context
    // as it was before drafting.
    void draft(llama_pos pos0, llama_token id_last, int32_t n_max, const llama_tokens& history,
               llama_tokens& out);
    // Reports how many drafted tokens the target accepted.
    void accept(uint16_t n_accepted);

private:
    SpeculatorOptions options_;
    int32_t n_max_ = 0;
    llama_model* model_dft_ = nullptr;  // owned: draft-simple's model
    llama_context* ctx_dft_ = nullptr;  // owned
    bool dft_recurrent_ = false;        // draft context needs a state checkpoint around draft()
    common_speculative* spec_ = nullptr;  // owned
    bool drafted_ = false;
    std::vector<uint8_t> dft_checkpoint_;
};

}  // namespace llama_mtp
