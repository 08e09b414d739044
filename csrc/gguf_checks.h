// Metadata and tensor conditions that llama.cpp does not report as errors but asserts on
// (GGML_ASSERT / GGML_ABORT), divides by, or only discovers inside a kernel at the first decode.
// A file that breaks one of them would kill the Python process; check_loadable() refuses it with
// a ModelLoadError that names the key or tensor and says what is expected.
//
// The conditions come from reading the code a GGUF reaches while it is loaded and run
// (src/llama-model.cpp hparams, src/llama-vocab.cpp, src/models/qwen35*.cpp, ggml-cpu's ops)
// and from fuzzing (benches/fuzz_gguf.py). Conditions llama.cpp already turns into a load error
// (wrong key types, tensor shapes against the hyperparameters, missing tensors) are left to it.
#pragma once

#include <string>

#include "gguf_file.h"

namespace llama_mtp {

// Throws ModelLoadError for the first violated condition. `arch` is general.architecture.
void check_loadable(const GgufFile& file, const std::string& arch);

}  // namespace llama_mtp
