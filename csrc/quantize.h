// Re-quantizing a GGUF with llama.cpp's own quantizer (what `llama-quantize` does).
#pragma once

#include <string>
#include <vector>

namespace llama_mtp {

// Names accepted by quantize(), as llama-quantize spells them ("Q4_K_M", "Q8_0", ...).
std::vector<std::string> quantization_types();

// Writes `dst` as `type` from `src`. Throws InvalidArgument for an unknown type, FileMissing /
// ModelLoadError when `src` is missing or not a valid GGUF, and QuantizeError (with llama.cpp's
// reason) when llama.cpp's quantizer fails.
// `threads` <= 0 uses every core.
void quantize(const std::string& src, const std::string& dst, const std::string& type, int threads,
              bool allow_requantize);

}  // namespace llama_mtp
