// Where a model's layers go: the offload devices (local GPUs and RPC servers), llama.cpp's split
// mode, tensor split and main GPU (llama-cli: -sm, -ts, -mg, --rpc), validated before loading.
#pragma once

#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"
#include "rpc.h"

namespace llama_mtp {

struct PlacementOptions {
    std::string split_mode = "layer";  // "none" | "layer" | "row" ("tensor" is refused: placement.cpp)
    std::vector<float> tensor_split;   // proportions per device; empty or all 0: by free memory
    int main_gpu = 0;
    std::vector<std::string> rpc_servers;  // "host:port"
};

class Placement {
public:
    Placement() = default;
    // Connects the RPC servers and checks the split against the devices. Throws InvalidArgument
    // (a bad split_mode, a negative / non-finite proportion, more proportions than devices, a
    // main_gpu that is not a device) or ModelLoadError (an RPC server that cannot be used).
    explicit Placement(const PlacementOptions& options);

    // The offload devices, in llama.cpp's order: RPC servers first, then local GPUs (iGPUs only
    // when there is no discrete GPU). Empty: everything runs on the CPU.
    const std::vector<ggml_backend_dev_t>& devices() const { return devices_; }
    // The devices llama.cpp will use: all of them, or with split_mode "none" the main_gpu one.
    std::vector<ggml_backend_dev_t> used_devices() const;
    const std::vector<RpcServer>& rpc_servers() const { return rpc_; }
    std::vector<std::string> rpc_peers() const;

    // Fills llama_model_params' device, split_mode, tensor_split and main_gpu. The pointers
    // stay valid while this Placement lives.
    void apply(llama_model_params& params) const;
    // A draft model's or MTP sidecar's placement, as llama-server derives it
    // (common_base_params_to_speculative): the target's devices and split, or the devices named
    // in `device_names` (--spec-draft-device; "none": no offload), a single one with layer
    // split. `storage` keeps the device list alive during the load.
    void apply_draft(llama_model_params& params, const std::vector<std::string>& device_names,
                     std::vector<ggml_backend_dev_t>& storage) const;
    // A device of this placement or of the machine, by name ("CUDA0", "RPC0") or, for an RPC
    // server, by its host:port. Throws InvalidArgument naming the known ones.
    ggml_backend_dev_t find_device(const std::string& name) const;

private:
    std::vector<RpcServer> rpc_;
    std::vector<ggml_backend_dev_t> devices_;
    std::vector<ggml_backend_dev_t> devices_null_terminated_;
    bool explicit_devices_ = false;  // pass devices_ to llama.cpp (RPC servers present)
    llama_split_mode split_mode_ = LLAMA_SPLIT_MODE_LAYER;
    std::vector<float> tensor_split_;  // llama_max_devices() entries
    int main_gpu_ = 0;
};

}  // namespace llama_mtp
