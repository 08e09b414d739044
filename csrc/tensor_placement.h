// Which buffer type each weight goes to: llama.cpp's tensor buffer-type overrides
// (-ot/--override-tensor, --cpu-moe, --n-cpu-moe and their -draft forms), checked and resolved
// into llama_model_params::tensor_buft_overrides. Which devices the layers go to is placement.h.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace llama_mtp {

// The options, as ModelOptions and SpeculatorOptions hold them (fields of the same names).
struct TensorPlacement {
    // (tensor-name regex, buffer type name) pairs, first match wins: llama.cpp's
    // `-ot PATTERN=BUFFER`; the pattern is searched (std::regex_search) in each tensor name.
    std::vector<std::pair<std::string, std::string>> override_tensor;
    bool cpu_moe = false;   // --cpu-moe: every block's routed-expert weights in CPU memory
    int32_t n_cpu_moe = 0;  // --n-cpu-moe N: those of blocks 0 .. N-1

    bool empty() const { return override_tensor.empty() && !cpu_moe && n_cpu_moe == 0; }
};

// The buffer types a pattern may name: every registered device's default buffer type ("CPU",
// "CUDA0", ...: the list llama.cpp's -ot accepts) and those of `devices` (a model's RPC servers).
std::vector<std::string> buffer_type_names(const std::vector<ggml_backend_dev_t>& devices = {});

// Checks options without loading anything (a Speculator's, before any model is known): throws
// InvalidArgument for a pattern that is not a valid regex, an unknown buffer type (naming the
// known ones) or a negative n_cpu_moe. An RPC server's buffer type ("RPC0[host:port]") passes
// here: it is known once the model has connected its servers (TensorOverrides checks it then).
void validate_tensor_placement(const TensorPlacement& placement);

// The overrides of a placement, ready for llama_model_params::tensor_buft_overrides; `devices`
// are the model's offload devices (RPC servers' included). Throws InvalidArgument as
// validate_tensor_placement. Keeps the pattern strings alive: it must outlive the model load it
// is passed to.
class TensorOverrides {
public:
    TensorOverrides() = default;
    TensorOverrides(const TensorPlacement& placement, const std::vector<ggml_backend_dev_t>& devices);
    TensorOverrides(const TensorOverrides&) = delete;
    TensorOverrides& operator=(const TensorOverrides&) = delete;

    // Sets params.tensor_buft_overrides (left null when there is nothing to override).
    void apply(llama_model_params& params) const;
    size_t size() const { return overrides_.empty() ? 0 : overrides_.size() - 1; }

private:
    std::list<std::string> patterns_;  // stable addresses for the C strings below
    std::vector<llama_model_tensor_buft_override> overrides_;  // null-terminated, or empty
};

}  // namespace llama_mtp
