#include "gguf_file.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "errors.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"
#include "log_bridge.h"

namespace llama_mtp {
namespace {

constexpr uint32_t kMinVersion = 2;
constexpr uint32_t kMaxVersion = 3;
// Smallest possible encodings, used to reject absurd counts before any allocation:
// a tensor info is name length (8) + name (>=1) + n_dims (4) + dims (>=8) + type (4) + offset (8);
// a key/value pair is key length (8) + key (>=1) + type (4) + smallest value (1).
constexpr uint64_t kMinTensorInfoBytes = 33;
constexpr uint64_t kMinKvBytes = 14;
constexpr uint64_t kHeaderBytes = 4 + 4 + 8 + 8;

struct FileCloser {
    void operator()(FILE* f) const { std::fclose(f); }
};
struct GgufFree {
    void operator()(gguf_context* c) const { gguf_free(c); }
};

// Checks the fixed-size header ourselves: gguf_init_from_file() is robust, but its messages are
// terse, and a huge declared count should be refused before anything is allocated for it.
void check_header(const std::string& path, uint64_t file_size, uint32_t* version_out) {
    std::unique_ptr<FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
    if (!file) throw ModelLoadError("cannot open '" + path + "' for reading");
    unsigned char header[kHeaderBytes];
    size_t got = std::fread(header, 1, sizeof(header), file.get());
    if (got < 4 || std::memcmp(header, "GGUF", 4) != 0) {
        throw ModelLoadError("'" + path + "' is not a GGUF file (bad magic; expected 'GGUF'). "
                             "Convert the model with llama.cpp's convert_hf_to_gguf.py.");
    }
    if (got < sizeof(header)) {
        throw ModelLoadError("'" + path + "' is truncated: the GGUF header is incomplete (" +
                             std::to_string(file_size) + " bytes).");
    }
    uint32_t version;
    uint64_t n_tensors, n_kv;
    std::memcpy(&version, header + 4, 4);
    std::memcpy(&n_tensors, header + 8, 8);
    std::memcpy(&n_kv, header + 16, 8);
    if (version < kMinVersion || version > kMaxVersion) {
        throw ModelLoadError("'" + path + "' has GGUF version " + std::to_string(version) +
                             "; supported versions are 2 and 3.");
    }
    const uint64_t room = file_size - kHeaderBytes;
    if (n_tensors > room / kMinTensorInfoBytes || n_kv > room / kMinKvBytes ||
        n_tensors * kMinTensorInfoBytes + n_kv * kMinKvBytes > room) {
        throw ModelLoadError("'" + path + "' declares " + std::to_string(n_tensors) +
                             " tensors and " + std::to_string(n_kv) +
                             " metadata entries, which cannot fit in a file of " +
                             std::to_string(file_size) + " bytes: the file is corrupt or truncated.");
    }
    *version_out = version;
}

template <typename T>
std::vector<T> read_numeric_array(const gguf_context* ctx, int64_t id, size_t n) {
    const T* data = static_cast<const T*>(gguf_get_arr_data(ctx, id));
    return std::vector<T>(data, data + n);
}

template <typename Out, typename In>
std::vector<Out> widen(const gguf_context* ctx, int64_t id, size_t n) {
    const In* data = static_cast<const In*>(gguf_get_arr_data(ctx, id));
    std::vector<Out> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(data[i]);
    return out;
}

GgufValue read_array(const gguf_context* ctx, int64_t id, size_t max_items) {
    const size_t n = std::min(gguf_get_arr_n(ctx, id), max_items);
    switch (gguf_get_arr_type(ctx, id)) {
        case GGUF_TYPE_UINT8: return widen<uint64_t, uint8_t>(ctx, id, n);
        case GGUF_TYPE_UINT16: return widen<uint64_t, uint16_t>(ctx, id, n);
        case GGUF_TYPE_UINT32: return widen<uint64_t, uint32_t>(ctx, id, n);
        case GGUF_TYPE_UINT64: return read_numeric_array<uint64_t>(ctx, id, n);
        case GGUF_TYPE_INT8: return widen<int64_t, int8_t>(ctx, id, n);
        case GGUF_TYPE_INT16: return widen<int64_t, int16_t>(ctx, id, n);
        case GGUF_TYPE_INT32: return widen<int64_t, int32_t>(ctx, id, n);
        case GGUF_TYPE_INT64: return read_numeric_array<int64_t>(ctx, id, n);
        case GGUF_TYPE_FLOAT32: return widen<double, float>(ctx, id, n);
        case GGUF_TYPE_FLOAT64: return read_numeric_array<double>(ctx, id, n);
        case GGUF_TYPE_BOOL: {
            const int8_t* data = static_cast<const int8_t*>(gguf_get_arr_data(ctx, id));
            std::vector<bool> out(n);
            for (size_t i = 0; i < n; ++i) out[i] = data[i] != 0;
            return out;
        }
        case GGUF_TYPE_STRING: {
            std::vector<std::string> out;
            out.reserve(n);
            for (size_t i = 0; i < n; ++i) out.emplace_back(gguf_get_arr_str(ctx, id, i));
            return out;
        }
        default: return std::vector<int64_t>{};  // nested arrays: not used by GGUF writers
    }
}

GgufValue read_value(const gguf_context* ctx, int64_t id, size_t max_items) {
    switch (gguf_get_kv_type(ctx, id)) {
        case GGUF_TYPE_UINT8: return static_cast<uint64_t>(gguf_get_val_u8(ctx, id));
        case GGUF_TYPE_UINT16: return static_cast<uint64_t>(gguf_get_val_u16(ctx, id));
        case GGUF_TYPE_UINT32: return static_cast<uint64_t>(gguf_get_val_u32(ctx, id));
        case GGUF_TYPE_UINT64: return gguf_get_val_u64(ctx, id);
        case GGUF_TYPE_INT8: return static_cast<int64_t>(gguf_get_val_i8(ctx, id));
        case GGUF_TYPE_INT16: return static_cast<int64_t>(gguf_get_val_i16(ctx, id));
        case GGUF_TYPE_INT32: return static_cast<int64_t>(gguf_get_val_i32(ctx, id));
        case GGUF_TYPE_INT64: return gguf_get_val_i64(ctx, id);
        case GGUF_TYPE_FLOAT32: return static_cast<double>(gguf_get_val_f32(ctx, id));
        case GGUF_TYPE_FLOAT64: return gguf_get_val_f64(ctx, id);
        case GGUF_TYPE_BOOL: return gguf_get_val_bool(ctx, id);
        case GGUF_TYPE_STRING: return std::string(gguf_get_val_str(ctx, id));
        case GGUF_TYPE_ARRAY: return read_array(ctx, id, max_items);
        default: return std::string();
    }
}

const GgufValue* find_key(const GgufFile& f, const std::string& key) {
    for (const auto& [name, value] : f.metadata) {
        if (name == key) return &value;
    }
    return nullptr;
}

int64_t int_key(const GgufFile& f, const std::string& key, int64_t fallback) {
    const GgufValue* v = find_key(f, key);
    if (v == nullptr) return fallback;
    if (auto u = std::get_if<uint64_t>(v)) return static_cast<int64_t>(*u);
    if (auto i = std::get_if<int64_t>(v)) return *i;
    return fallback;
}

GgufFile read_one(const std::string& path, size_t max_array_items) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) throw FileMissing("No such model file: '" + path + "'");
    if (std::filesystem::is_directory(status)) {
        throw ModelLoadError("'" + path + "' is a directory, not a GGUF file");
    }
    GgufFile out;
    out.path = path;
    out.file_size = std::filesystem::file_size(path, ec);
    if (ec) throw ModelLoadError("cannot read the size of '" + path + "': " + ec.message());
    check_header(path, out.file_size, &out.version);

    clear_thread_errors();
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    std::unique_ptr<gguf_context, GgufFree> ctx(gguf_init_from_file(path.c_str(), params));
    if (!ctx) {
        std::string why = take_thread_errors();
        throw ModelLoadError("'" + path + "' is not a valid GGUF file" +
                             (why.empty() ? std::string(" (corrupt or truncated)") : ": " + why));
    }
    out.alignment = gguf_get_alignment(ctx.get());
    out.data_offset = gguf_get_data_offset(ctx.get());

    const int64_t n_kv = gguf_get_n_kv(ctx.get());
    out.metadata.reserve(static_cast<size_t>(n_kv));
    for (int64_t i = 0; i < n_kv; ++i) {
        out.metadata.emplace_back(gguf_get_key(ctx.get(), i), read_value(ctx.get(), i, max_array_items));
    }

    const int64_t n_tensors = gguf_get_n_tensors(ctx.get());
    out.tensors.reserve(static_cast<size_t>(n_tensors));
    for (int64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo info;
        info.name = gguf_get_tensor_name(ctx.get(), i);
        const ggml_type type = gguf_get_tensor_type(ctx.get(), i);
        info.type = ggml_type_name(type);
        const int64_t* ne = gguf_get_tensor_ne(ctx.get(), i);
        int n_dims = GGML_MAX_DIMS;
        while (n_dims > 1 && ne[n_dims - 1] == 1) --n_dims;
        info.shape.assign(ne, ne + n_dims);
        info.n_elements = 1;
        for (int d = 0; d < GGML_MAX_DIMS; ++d) info.n_elements *= static_cast<uint64_t>(ne[d]);
        info.offset = out.data_offset + gguf_get_tensor_offset(ctx.get(), i);
        info.n_bytes = gguf_get_tensor_size(ctx.get(), i);
        if (info.offset > out.file_size || info.n_bytes > out.file_size - info.offset) {
            throw ModelLoadError("'" + path + "' is truncated: tensor '" + info.name + "' needs bytes " +
                                 std::to_string(info.offset) + ".." +
                                 std::to_string(info.offset + info.n_bytes) + " but the file has " +
                                 std::to_string(out.file_size) + " bytes. Download or convert it again.");
        }
        out.tensors.push_back(std::move(info));
    }
    return out;
}

// The other parts of a split model (llama.cpp's gguf-split: `<prefix>-00001-of-00003.gguf` ...,
// `split.count` / `split.no` keys), named as llama.cpp's loader derives them.
std::vector<std::string> split_part_paths(const std::string& first, int64_t count) {
    std::vector<char> buf(first.size() + 64, '\0');
    const int32_t n = llama_split_prefix(buf.data(), buf.size(), first.c_str(), 0, static_cast<int32_t>(count));
    if (n <= 0) {
        llama_split_path(buf.data(), buf.size(), "", 0, static_cast<int32_t>(count));
        throw ModelLoadError("'" + first + "' is the first of " + std::to_string(count) +
                             " parts of a split model, but its name does not end in '" + std::string(buf.data()) +
                             "', so llama.cpp cannot find the other parts: keep gguf-split's file names");
    }
    const std::string prefix(buf.data(), static_cast<size_t>(n));
    std::vector<std::string> paths;
    for (int64_t i = 0; i < count; ++i) {
        const int32_t m = llama_split_path(buf.data(), buf.size(), prefix.c_str(), static_cast<int32_t>(i),
                                           static_cast<int32_t>(count));
        paths.emplace_back(buf.data(), static_cast<size_t>(m));
    }
    return paths;
}

}  // namespace

GgufFile read_gguf(const std::string& path, size_t max_array_items) {
    GgufFile out = read_one(path, max_array_items);
    out.parts = {path};
    const int64_t count = int_key(out, "split.count", 1);
    if (count <= 1) return out;
    const int64_t no = int_key(out, "split.no", 0);
    if (no != 0) {
        throw ModelLoadError("'" + path + "' is part " + std::to_string(no + 1) + " of " + std::to_string(count) +
                             " of a split model: open the first part (-00001-of-" + std::to_string(count) + ".gguf)");
    }
    const auto paths = split_part_paths(path, count);
    for (int64_t i = 1; i < count; ++i) {
        const std::string& part_path = paths[static_cast<size_t>(i)];
        GgufFile part;
        try {
            part = read_one(part_path, 0);
        } catch (const FileMissing&) {
            throw ModelLoadError("'" + path + "' is split into " + std::to_string(count) + " parts and part " +
                                 std::to_string(i + 1) + " is missing: '" + part_path +
                                 "' (download every part into the same directory)");
        }
        if (int_key(part, "split.no", -1) != i || int_key(part, "split.count", -1) != count) {
            throw ModelLoadError("'" + part_path + "' is not part " + std::to_string(i + 1) + " of " +
                                 std::to_string(count) + " of '" + path + "' (its split.no / split.count differ)");
        }
        for (auto& t : part.tensors) {
            t.part = static_cast<uint32_t>(i);
            out.tensors.push_back(std::move(t));
        }
        out.file_size += part.file_size;
        out.parts.push_back(part_path);
    }
    return out;
}

}  // namespace llama_mtp
