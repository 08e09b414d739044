// Reading a GGUF file's header, metadata and tensor table without loading any weights.
// Used to validate a file before llama.cpp sees it (so a broken file raises ModelLoadError
// instead of reaching an assert) and by `llama-mtp inspect`.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "errors.h"

namespace llama_mtp {

// One metadata value. Integers keep their sign; arrays are homogeneous.
using GgufValue = std::variant<bool, int64_t, uint64_t, double, std::string, std::vector<bool>,
                               std::vector<int64_t>, std::vector<uint64_t>, std::vector<double>,
                               std::vector<std::string>>;

struct GgufTensorInfo {
    std::string name;
    std::string type;            // ggml type name: "f32", "q4_K", ...
    std::vector<int64_t> shape;  // ggml order: ne0 (contiguous) first
    uint64_t offset = 0;         // absolute offset of the data in its file (part)
    uint32_t part = 0;           // index of the file holding it, for a split model
    uint64_t n_bytes = 0;
    uint64_t n_elements = 0;
};

struct GgufFile {
    std::string path;
    std::vector<std::string> parts;  // every file of a split model, the first one (path) first
    uint32_t version = 0;
    uint64_t file_size = 0;          // of all parts
    uint64_t alignment = 0;
    uint64_t data_offset = 0;
    std::vector<std::pair<std::string, GgufValue>> metadata;  // file order
    std::vector<GgufTensorInfo> tensors;                      // file order
};

// Parses and validates the file -- every part of a split model (gguf-split's
// `-00001-of-0000N.gguf` files, loaded from the first part), its tensors listed together:
//   - std::ios_base::failure is not used; a missing file throws FileMissing (errors.h);
//   - anything that is not a consistent GGUF throws ModelLoadError with the reason.
// `max_array_items` caps how many items of each array are decoded (the rest are counted only);
// pass SIZE_MAX for all of them.
GgufFile read_gguf(const std::string& path, size_t max_array_items);

}  // namespace llama_mtp
