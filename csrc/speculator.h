// The drafting side of speculative decoding: the draft context (MTP head or a separate draft
// model) and llama.cpp's common_speculative, which does all drafting. No drafting logic is ours.
#pragma once

#include <memory>
#include <vector>

#include "generation.h"
#include "llama.h"
#include "speculative.h"

namespace llama_mtp {

// Speculator types llama-mtp runs (llama.cpp's names), "none" excluded.
std::vector<std::string> speculator_types();

// The one place where speculator options are checked: a known type, n_max in [1, 64], n_min in
// [0, n_max], p_min in [0, 1], a draft model for draft-simple, the model file present, known
// cache types. Throws InvalidArgument (FileMissing for a missing file). "none" is always valid.
void validate_speculator(const SpeculatorOptions& options);

// One draft to make in a Speculator::draft() call.
struct DraftJob {
    llama_seq_id seq = 0;
    llama_pos pos0 = 0;            // position of id_last
    llama_token id_last = 0;       // the last accepted token (not yet in the target's memory)
    int32_t n_max = 0;             // most tokens to draft (> 0)
    const llama_tokens* history = nullptr;  // tokens in the target's memory for this sequence
    llama_tokens* out = nullptr;   // receives the draft (cleared first)
};

class Placement;

class Speculator {
public:
    // Creates the draft context next to `ctx_tgt` (which must outlive this object), serving
    // `n_seq` sequences. A draft model or MTP sidecar is placed as the target (`placement`), or
    // on the devices the options name. Throws MTPUnavailableError / InvalidArgument /
    // ModelLoadError with an actionable message.
    Speculator(const SpeculatorOptions& options, llama_model* model_tgt, bool mtp_loaded,
               llama_context* ctx_tgt, const llama_context_params& ctx_params_tgt, uint32_t n_seq,
               const Placement* placement = nullptr);
    ~Speculator();
    Speculator(const Speculator&) = delete;
    Speculator& operator=(const Speculator&) = delete;

    const SpeculatorOptions& options() const { return options_; }
    int32_t n_max() const { return n_max_; }
    llama_memory_t mem_dft() const { return ctx_dft_ ? llama_get_memory(ctx_dft_) : nullptr; }

    // True when a request asking for `wanted` can be served by this speculator (same kind and
    // draft source, n_max no larger).
    bool serves(const SpeculatorOptions& wanted) const;

    // Mirrors a batch the target just decoded (prompt chunks and verification batches). Each
    // sequence's rows must be contiguous and the batch's rows must be the first rows of the
    // target's last decoded batch.
    bool process(const common_batch& batch);
    // Call once per generation of `seq`, after its prompt: `tokens` are those in the target's memory.
    void begin(llama_seq_id seq, const llama_tokens& tokens);
    // Drafts for every job in one pass; leaves the draft context as it was before drafting.
    void draft(std::vector<DraftJob>& jobs);
    // Reports how many drafted tokens of `seq` the target accepted.
    void accept(llama_seq_id seq, uint16_t n_accepted);

    // Steps of every drafting pass (<= options().n_max). Changing it remakes llama.cpp's
    // drafting state but keeps the draft context and its memory; call it only when no sequence
    // is in the middle of a generation that drafts.
    int32_t depth() const { return n_max_; }
    void set_depth(int32_t depth);

private:
    SpeculatorOptions options_;
    uint32_t n_seq_ = 1;
    int32_t n_max_ = 0;
    llama_model* model_dft_ = nullptr;  // owned: draft-simple's model or the MTP sidecar
    llama_context* ctx_dft_ = nullptr;  // owned
    bool dft_recurrent_ = false;        // draft context needs a state checkpoint around draft()
    common_params_speculative params_;
    common_speculative* spec_ = nullptr;  // owned
    std::vector<bool> drafted_;           // per sequence: drafted since begin()
    std::vector<std::vector<uint8_t>> dft_checkpoints_;  // per sequence (recurrent draft models)
};

}  // namespace llama_mtp
