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

#include <cstddef>
#include <string>

#include "gguf_file.h"

namespace llama_mtp {

// Throws ModelLoadError for the first violated condition. `arch` is general.architecture.
void check_loadable(const GgufFile& file, const std::string& arch);

// llama.cpp's Jinja engine (common/jinja) parses and renders recursively, one stack frame per
// nesting level, with no limit: a template nested a few thousand levels deep (brackets, `not`
// chains, operator or attribute chains, nested blocks) overflows the stack (SIGSEGV). Returns
// why a template is too deep to be safe, or "" when it is fine: at most kMaxTemplateTagTokens
// tokens in one {{ }} / {% %} tag (an expression's depth is bounded by its length) and
// kMaxTemplateBlockDepth nested blocks; real templates stay far below (llama.cpp's 71
// models/templates: at most 58 tokens in a tag, 10 nested blocks). Recursion through macros is
// not bounded by this.
constexpr size_t kMaxTemplateTagTokens = 1000;
constexpr size_t kMaxTemplateBlockDepth = 100;
std::string chat_template_problem(const std::string& source);

}  // namespace llama_mtp
