#include "placement.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "errors.h"
#include "ggml-rpc.h"

namespace llama_mtp {
namespace {

llama_split_mode split_mode_from_name(const std::string& name) {
    if (name == "none") return LLAMA_SPLIT_MODE_NONE;
    if (name == "layer") return LLAMA_SPLIT_MODE_LAYER;
    if (name == "row") return LLAMA_SPLIT_MODE_ROW;
    if (name == "tensor") {
        // llama.cpp's experimental tensor parallelism (a meta device over the GPUs): with two
        // devices the qwen35 graph aborts the process in ggml-backend-meta.cpp
        // (GGML_ASSERT(src_ss[0].axis != GGML_BACKEND_SPLIT_AXIS_0), measured over two RPC servers).
        throw InvalidArgument("split_mode 'tensor' (llama.cpp's experimental tensor parallelism) aborts on "
                              "Qwen3.5/3.6 graphs in this llama.cpp version; use 'layer' or 'row'");
    }
    throw InvalidArgument("split_mode must be 'none', 'layer' or 'row' (llama.cpp's -sm), not '" + name + "'");
}

// The local offload devices llama.cpp picks when llama_model_params.devices is NULL
// (llama_prepare_model_devices): discrete GPUs, one per physical device, else integrated ones
// of one backend. Needed here because a model with RPC servers must pass its devices
// explicitly: registering them process-wide, as llama.cpp's --rpc does, would hand them to
// every model loaded afterwards, and ggml cannot unregister.
std::vector<ggml_backend_dev_t> local_devices() {
    std::vector<ggml_backend_dev_t> gpus, igpus;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        const auto type = ggml_backend_dev_type(dev);
        if (type == GGML_BACKEND_DEVICE_TYPE_GPU) {
            if (std::strcmp(ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev)), "RPC") == 0) continue;
            ggml_backend_dev_props props;
            ggml_backend_dev_get_props(dev, &props);
            const bool seen = std::any_of(gpus.begin(), gpus.end(), [&](ggml_backend_dev_t d) {
                ggml_backend_dev_props p;
                ggml_backend_dev_get_props(d, &p);
                return props.device_id && p.device_id && std::strcmp(props.device_id, p.device_id) == 0;
            });
            if (!seen) gpus.push_back(dev);
        } else if (type == GGML_BACKEND_DEVICE_TYPE_IGPU) {
            if (igpus.empty() || ggml_backend_dev_backend_reg(dev) == ggml_backend_dev_backend_reg(igpus.back())) {
                igpus.push_back(dev);
            }
        }
    }
    return gpus.empty() ? igpus : gpus;
}

std::string describe(ggml_backend_dev_t dev) {
    return std::string(ggml_backend_dev_name(dev)) + " (" + ggml_backend_dev_description(dev) + ")";
}

}  // namespace

Placement::Placement(const PlacementOptions& o)
    : split_mode_(split_mode_from_name(o.split_mode)), tensor_split_(llama_max_devices(), 0.0f),
      main_gpu_(o.main_gpu) {
    const size_t max_devices = llama_max_devices();
    if (o.tensor_split.size() > max_devices) {
        throw InvalidArgument("tensor_split has " + std::to_string(o.tensor_split.size()) +
                              " entries; llama.cpp supports at most " + std::to_string(max_devices) + " devices");
    }
    for (float x : o.tensor_split) {
        if (!std::isfinite(x) || x < 0.0f) {
            throw InvalidArgument("tensor_split proportions must be finite and >= 0 (got " + std::to_string(x) + ")");
        }
    }
    if (main_gpu_ < -1) throw InvalidArgument("main_gpu must be >= 0 (or -1: no device with split_mode='none')");
    if (o.rpc_servers.size() > GGML_RPC_MAX_SERVERS) {
        throw InvalidArgument("at most " + std::to_string(GGML_RPC_MAX_SERVERS) + " RPC servers");
    }
    for (size_t i = 0; i < o.rpc_servers.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (o.rpc_servers[i] == o.rpc_servers[j]) {
                throw InvalidArgument("RPC server '" + o.rpc_servers[i] + "' is listed twice");
            }
        }
    }

    for (const auto& endpoint : o.rpc_servers) {
        rpc_.push_back(connect_rpc_server(endpoint));
        devices_.insert(devices_.end(), rpc_.back().devices.begin(), rpc_.back().devices.end());
    }
    explicit_devices_ = !rpc_.empty();
    if (split_mode_ == LLAMA_SPLIT_MODE_ROW && !rpc_.empty()) {
        throw InvalidArgument("split_mode 'row' splits each weight over GPUs that support split buffers "
                              "(CUDA); RPC servers do not: use split_mode 'layer' with rpc_servers");
    }
    const auto local = local_devices();
    devices_.insert(devices_.end(), local.begin(), local.end());

    if (!devices_.empty()) {
        if (o.tensor_split.size() > devices_.size()) {
            std::string names;
            for (auto* d : devices_) names += (names.empty() ? "" : ", ") + describe(d);
            throw InvalidArgument("tensor_split has " + std::to_string(o.tensor_split.size()) +
                                  " entries but the model has " + std::to_string(devices_.size()) +
                                  " device(s): " + names);
        }
        if (main_gpu_ >= static_cast<int>(devices_.size())) {
            throw InvalidArgument("main_gpu " + std::to_string(main_gpu_) + " is not a device: the model has " +
                                  std::to_string(devices_.size()) + " (index 0-" +
                                  std::to_string(devices_.size() - 1) + ")");
        }
    }
    std::copy(o.tensor_split.begin(), o.tensor_split.end(), tensor_split_.begin());
    devices_null_terminated_ = devices_;
    devices_null_terminated_.push_back(nullptr);
}

std::vector<ggml_backend_dev_t> Placement::used_devices() const {
    if (split_mode_ != LLAMA_SPLIT_MODE_NONE || devices_.empty()) return devices_;
    if (main_gpu_ < 0) return {};
    return {devices_.at(static_cast<size_t>(main_gpu_))};
}

std::vector<std::string> Placement::rpc_peers() const {
    std::vector<std::string> peers;
    for (const auto& s : rpc_) peers.push_back(s.peer);
    return peers;
}

void Placement::apply(llama_model_params& params) const {
    params.split_mode = split_mode_;
    params.main_gpu = main_gpu_;
    params.tensor_split = tensor_split_.empty() ? nullptr : tensor_split_.data();
    // Without RPC servers llama.cpp's own default selection applies (the same devices).
    params.devices = explicit_devices_ ? const_cast<ggml_backend_dev_t*>(devices_null_terminated_.data()) : nullptr;
}

ggml_backend_dev_t Placement::find_device(const std::string& name) const {
    for (const auto& s : rpc_) {
        if (s.endpoint == name && !s.devices.empty()) return s.devices.front();
    }
    for (auto* d : devices_) {
        if (name == ggml_backend_dev_name(d)) return d;
    }
    if (ggml_backend_dev_t d = ggml_backend_dev_by_name(name.c_str())) return d;
    std::string known;
    for (auto* d : devices_) known += (known.empty() ? "" : ", ") + describe(d);
    throw InvalidArgument("unknown device '" + name + "' (this model's devices: " +
                          (known.empty() ? std::string("none, CPU only") : known) + ")");
}

void Placement::apply_draft(llama_model_params& params, const std::vector<std::string>& device_names,
                            std::vector<ggml_backend_dev_t>& storage) const {
    apply(params);
    if (device_names.empty()) return;
    storage.clear();
    if (!(device_names.size() == 1 && device_names.front() == "none")) {
        for (const auto& name : device_names) storage.push_back(find_device(name));
    }
    if (storage.size() == 1) params.split_mode = LLAMA_SPLIT_MODE_LAYER;
    storage.push_back(nullptr);
    params.devices = storage.data();
}

}  // namespace llama_mtp
