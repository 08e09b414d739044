#include "model.h"

#include "backend.h"

#include <limits>

#include "errors.h"
#include "gguf_checks.h"
#include "log_bridge.h"
#include "rpc.h"

namespace llama_mtp {
namespace {

int64_t metadata_int(const GgufFile& file, const std::string& key, int64_t fallback) {
    for (const auto& [name, value] : file.metadata) {
        if (name != key) continue;
        if (auto v = std::get_if<uint64_t>(&value)) return static_cast<int64_t>(*v);
        if (auto v = std::get_if<int64_t>(&value)) return *v;
    }
    return fallback;
}

std::string metadata_str(const GgufFile& file, const std::string& key) {
    for (const auto& [name, value] : file.metadata) {
        if (name == key) {
            if (auto v = std::get_if<std::string>(&value)) return *v;
        }
    }
    return {};
}

}  // namespace

Model::Model(const std::string& path, const ModelOptions& options) {
    // A bad -ot pattern or buffer type is reported before the file is read.
    validate_tensor_placement(options.tensor_placement());
    // Validate the whole file before llama.cpp sees it: a truncated or corrupt file becomes a
    // ModelLoadError here instead of an assert (or a SIGBUS through mmap) inside llama.cpp.
    file_ = read_gguf(path, std::numeric_limits<size_t>::max());
    arch_ = metadata_str(file_, "general.architecture");
    if (arch_.empty()) {
        throw ModelLoadError("'" + path + "' has no 'general.architecture' key; it is not a model GGUF.");
    }
    n_mtp_layers_ = static_cast<int32_t>(metadata_int(file_, arch_ + ".nextn_predict_layers", 0));
    // Conditions llama.cpp would assert on instead of reporting (csrc/gguf_checks.h).
    check_loadable(file_, arch_);

    llama_model_params params = llama_model_default_params();
    params.n_gpu_layers = options.n_gpu_layers;
    if (!options.vocab_only && !options.no_alloc) {
        PlacementOptions where;
        where.split_mode = options.split_mode;
        where.tensor_split = options.tensor_split;
        where.main_gpu = options.main_gpu;
        where.rpc_servers = options.rpc_servers;
        placement_ = Placement(where);
        // A connection to one of these servers that broke before this load is not ours.
        for (const auto& peer : placement_.rpc_peers()) rpc_failures_at_load_.push_back(rpc_failures({peer}));
        placement_.apply(params);
    } else {
        params.main_gpu = options.main_gpu;
    }
    params.vocab_only = options.vocab_only;
    params.check_tensors = options.check_tensors;
    params.no_alloc = options.no_alloc;
    if (options.use_mmap && !options.no_alloc) {  // no_alloc maps nothing (llama.cpp asserts)
        params.load_mode = options.use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP;
    } else {
        params.load_mode = options.use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE;
    }
    mtp_loaded_ = !options.vocab_only && options.load_mtp.value_or(n_mtp_layers_ > 0);
    params.load_mtp = mtp_loaded_;
    // read by llama.cpp during the load; the RPC servers' buffer types are known from here on
    const TensorOverrides overrides(options.tensor_placement(), placement_.devices());
    overrides.apply(params);

    clear_thread_errors();
    llama_model* raw = nullptr;
    try {
        raw = llama_model_load_from_file(path.c_str(), params);
    } catch (const std::exception& e) {  // an RPC server that went away (csrc/ggml_rpc/failsafe.h)
        throw ModelLoadError("llama.cpp could not load '" + path + "': " + e.what());
    }
    if (raw == nullptr) {
        std::string why = take_thread_errors();
        throw ModelLoadError("llama.cpp could not load '" + path + "' (architecture '" + arch_ +
                             "')" + (why.empty() ? std::string(".") : ":\n" + why));
    }
    model_ = ModelHandle(raw, [](llama_model* m) {
        llama_model_free(m);
        release_freed_memory();
    });
    const std::string broken = broken_rpc_server();
    if (!broken.empty()) {
        model_.reset();
        throw ModelLoadError("the connection to RPC server '" + broken + "' broke while '" + path +
                             "' was loading (" + rpc_last_failure() + ")");
    }
}

std::string Model::broken_rpc_server() const {
    const auto& servers = placement_.rpc_servers();
    for (size_t i = 0; i < servers.size(); ++i) {
        if (rpc_failures({servers[i].peer}) != rpc_failures_at_load_[i]) return servers[i].endpoint;
    }
    return {};
}

void Model::check_connections() const {
    if (placement_.rpc_servers().empty()) return;
    const std::string broken = broken_rpc_server();
    if (broken.empty()) return;
    throw DecodeError("the connection to RPC server '" + broken + "' broke (" + rpc_last_failure() +
                      "): the model's layers there are lost; close the model and load it again once "
                      "every server runs");
}

void Model::close() {
    std::lock_guard<std::mutex> lock(mutex_);
    model_.reset();
}

bool Model::closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return !model_;
}

ModelHandle Model::handle() const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!model_) throw ModelClosedError("the model is closed");
    return model_;
}

const llama_vocab* Model::vocab() const { return llama_model_get_vocab(handle().get()); }

uint64_t Model::n_params() const { return llama_model_n_params(handle().get()); }
uint64_t Model::model_size() const { return llama_model_size(handle().get()); }
int32_t Model::n_vocab() const { return llama_vocab_n_tokens(vocab()); }
int32_t Model::n_ctx_train() const { return llama_model_n_ctx_train(handle().get()); }
int32_t Model::n_embd() const { return llama_model_n_embd(handle().get()); }
int32_t Model::n_mtp_layers() const { return n_mtp_layers_; }

int32_t Model::n_layer() const { return llama_model_n_layer(handle().get()); }  // MTP blocks excluded

std::string Model::description() const {
    char buf[256];
    const int n = llama_model_desc(handle().get(), buf, sizeof(buf));
    return n > 0 ? std::string(buf, std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1)) : "";
}

std::optional<std::string> Model::chat_template(const std::string& name) const {
    const char* tmpl = llama_model_chat_template(handle().get(), name.empty() ? nullptr : name.c_str());
    if (tmpl == nullptr) return std::nullopt;
    return std::string(tmpl);
}

llama_token Model::bos() const { return llama_vocab_bos(vocab()); }
llama_token Model::eos() const { return llama_vocab_eos(vocab()); }
llama_token Model::eot() const { return llama_vocab_eot(vocab()); }

bool Model::is_eog(llama_token token) const {
    if (token < 0 || token >= n_vocab()) return false;
    return llama_vocab_is_eog(vocab(), token);
}

void Model::check_token(llama_token token) const {
    const int32_t n = n_vocab();
    if (token < 0 || token >= n) {
        throw InvalidArgument("token id " + std::to_string(token) + " is out of range [0, " +
                              std::to_string(n) + ")");
    }
}

std::vector<llama_token> Model::tokenize(const std::string& text, bool add_special,
                                         bool parse_special) const {
    ModelHandle keep = handle();
    const llama_vocab* v = llama_model_get_vocab(keep.get());
    if (text.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 2)) {
        throw InvalidArgument("text is too long to tokenize in one call");
    }
    std::vector<llama_token> tokens(text.size() + 2);
    int32_t n = 0;
    try {
        n = llama_tokenize(v, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), add_special, parse_special);
        if (n < 0) {
            tokens.resize(static_cast<size_t>(-n));
            n = llama_tokenize(v, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                               static_cast<int32_t>(tokens.size()), add_special, parse_special);
        }
    } catch (const std::exception& e) {
        // llama.cpp's tokenizers look up the tokens they fall back to (byte tokens) with
        // unordered_map::at: a vocabulary without them makes tokenize() throw std::out_of_range.
        throw InvalidArgument(std::string("this model's vocabulary cannot tokenize the text (llama.cpp: ") +
                              e.what() + "); its tokenizer data is incomplete or corrupt");
    }
    if (n < 0) throw InvalidArgument("tokenization failed");
    tokens.resize(static_cast<size_t>(n));
    return tokens;
}

std::string Model::detokenize(const std::vector<llama_token>& tokens, bool remove_special,
                              bool unparse_special) const {
    ModelHandle keep = handle();
    for (llama_token t : tokens) check_token(t);
    const llama_vocab* v = llama_model_get_vocab(keep.get());
    std::string text(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(v, tokens.data(), static_cast<int32_t>(tokens.size()), text.data(),
                                 static_cast<int32_t>(text.size()), remove_special, unparse_special);
    if (n < 0) {
        text.resize(static_cast<size_t>(-n));
        n = llama_detokenize(v, tokens.data(), static_cast<int32_t>(tokens.size()), text.data(),
                             static_cast<int32_t>(text.size()), remove_special, unparse_special);
    }
    if (n < 0) throw InvalidArgument("detokenization failed");
    text.resize(static_cast<size_t>(n));
    return text;
}

std::string Model::token_to_piece(llama_token token, bool special) const {
    ModelHandle keep = handle();
    check_token(token);
    const llama_vocab* v = llama_model_get_vocab(keep.get());
    std::string piece(64, '\0');
    int32_t n = llama_token_to_piece(v, token, piece.data(), static_cast<int32_t>(piece.size()), 0, special);
    if (n < 0) {
        piece.resize(static_cast<size_t>(-n));
        n = llama_token_to_piece(v, token, piece.data(), static_cast<int32_t>(piece.size()), 0, special);
    }
    piece.resize(static_cast<size_t>(std::max(n, 0)));
    return piece;
}

}  // namespace llama_mtp
