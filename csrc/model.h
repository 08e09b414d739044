// A loaded GGUF model: weights (or only the vocabulary), its metadata and its tokenizer.
// Thread-safe: every query may run concurrently with others; close() waits for nothing and
// frees the weights once the last user (a running generation, say) lets go of them.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gguf_file.h"
#include "llama.h"
#include "placement.h"
#include "tensor_placement.h"

namespace llama_mtp {

struct ModelOptions {
    int n_gpu_layers = -1;  // -1: all layers on the GPU when a GPU backend exists
    int main_gpu = 0;
    // Devices and split (llama.cpp: -sm, -ts, --rpc; -mg is main_gpu): see placement.h.
    std::string split_mode = "layer";
    std::vector<float> tensor_split;
    std::vector<std::string> rpc_servers;
    // Buffer types of single weights (llama.cpp: -ot, --cpu-moe, --n-cpu-moe): see
    // tensor_placement.h. The MTP block is one of this model's blocks (blk.<n_layer>), so these
    // place its tensors too.
    std::vector<std::pair<std::string, std::string>> override_tensor;
    bool cpu_moe = false;
    int32_t n_cpu_moe = 0;
    bool vocab_only = false;
    bool use_mmap = true;
    bool use_mlock = false;
    bool check_tensors = false;
    // Only read metadata and check every tensor's name and shape; allocate no weights.
    bool no_alloc = false;
    // nullopt: load the MTP head when the file declares one (<arch>.nextn_predict_layers > 0).
    std::optional<bool> load_mtp;

    TensorPlacement tensor_placement() const { return {override_tensor, cpu_moe, n_cpu_moe}; }
};

// Owns a llama_model; shared between a Model and the sessions that run on it.
using ModelHandle = std::shared_ptr<llama_model>;

class Model {
public:
    Model(const std::string& path, const ModelOptions& options);
    ~Model() = default;
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    void close();
    bool closed() const;
    // The live handle; throws ModelClosedError after close().
    ModelHandle handle() const;

    const std::string& arch() const { return arch_; }
    // Metadata as read from the file (arrays complete).
    const GgufFile& file() const { return file_; }

    uint64_t n_params() const;
    uint64_t model_size() const;
    int32_t n_vocab() const;
    int32_t n_ctx_train() const;
    int32_t n_embd() const;
    int32_t n_layer() const;      // transformer blocks, MTP blocks excluded
    int32_t n_mtp_layers() const; // <arch>.nextn_predict_layers
    bool mtp_loaded() const { return mtp_loaded_; }
    std::string description() const;
    std::optional<std::string> chat_template(const std::string& name) const;

    llama_token bos() const;
    llama_token eos() const;
    llama_token eot() const;
    bool is_eog(llama_token token) const;

    std::vector<llama_token> tokenize(const std::string& text, bool add_special,
                                      bool parse_special) const;
    std::string detokenize(const std::vector<llama_token>& tokens, bool remove_special,
                           bool unparse_special) const;
    std::string token_to_piece(llama_token token, bool special) const;

    // Throws InvalidArgument unless 0 <= token < n_vocab.
    void check_token(llama_token token) const;

    // Where the layers are (devices, split, RPC servers); a draft model follows it.
    const Placement& placement() const { return placement_; }
    // Throws DecodeError, naming the server, once a connection to one of the model's RPC
    // servers has broken: its weights are gone with it, so the model must be loaded again.
    void check_connections() const;

private:
    const llama_vocab* vocab() const;

    GgufFile file_;
    std::string arch_;
    int32_t n_mtp_layers_ = 0;
    bool mtp_loaded_ = false;
    Placement placement_;
    std::vector<uint64_t> rpc_failures_at_load_;  // per RPC server
    std::string broken_rpc_server() const;  // endpoint of one whose connection broke, or ""
    mutable std::mutex mutex_;
    ModelHandle model_;
};

}  // namespace llama_mtp
