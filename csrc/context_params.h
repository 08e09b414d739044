// Translation of our ContextOptions into llama_context_params, with the validation that keeps
// llama.cpp's asserts out of reach (they would abort the interpreter).
#pragma once

#include "generation.h"
#include "llama.h"

namespace llama_mtp {

// `n_rs_seq`: recurrent-state snapshots kept per sequence, so that a rejected draft of up to
// n_rs_seq tokens can be rolled back (qwen35 Gated DeltaNet layers cannot truncate otherwise).
// `n_outputs_max`: most logits rows one batch asks for (every sequence's 1 + longest draft).
// `n_seq`: sequences the context serves (the engine's slots).
llama_context_params make_context_params(const ContextOptions& options, uint32_t n_rs_seq,
                                         uint32_t n_outputs_max, uint32_t n_seq = 1);

// ggml type of a KV-cache type name ("f16", "q8_0", ...); throws InvalidArgument.
ggml_type cache_type_from_name(const std::string& name);

}  // namespace llama_mtp
