// SamplingOptions checked and turned into llama.cpp's common sampler. The one place where
// sampling values are validated (llama_mtp.SamplingParams calls validate_sampling at construction
// too, so a bad value fails where it is written).
#pragma once

#include "generation.h"
#include "model.h"
#include "sampling.h"  // llama.cpp common/sampling.h

namespace llama_mtp {

// Throws InvalidArgument naming the first bad value.
void validate_sampling(const SamplingOptions& options);

// A sampler for `options` on `model` (validated first; token ids checked against the vocabulary,
// the grammar parsed). Throws InvalidArgument.
common_sampler_ptr make_sampler(const SamplingOptions& options, const Model& model);

}  // namespace llama_mtp
