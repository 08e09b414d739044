// Process-wide llama.cpp state: backend initialisation (once) and what was compiled in.
#pragma once

#include <string>
#include <vector>

#include "ggml-backend.h"

namespace llama_mtp {

// Initialises llama.cpp's backends once per process. With a portable (GGML_BACKEND_DL) build it
// loads the backend libraries found in `backend_dir` (the package directory), so the best CPU
// variant for this machine and, when present, the CUDA backend are picked at run time.
void ensure_backend(const std::string& backend_dir);

// Gives memory that was just freed in bulk (a context, a model) back to the system. glibc keeps
// what was freed; the engine's contexts are made and freed by different threads, and without this
// a process that opens and closes models while others generate kept growing (benches/soak.py).
// It reaches only the main arena's top chunk: see limit_malloc_arenas. No-op elsewhere.
void release_freed_memory();

// Limits glibc malloc to one arena (see backend.cpp), so that what release_freed_memory() gives
// back includes what other threads freed. Called once, when the module is imported.
void limit_malloc_arenas();

struct DeviceInfo {
    std::string name;
    std::string description;
    std::string type;  // "cpu", "gpu", "igpu", "accel"
    size_t memory_total = 0;
    size_t memory_free = 0;
};

DeviceInfo describe_device(ggml_backend_dev_t dev);

struct SystemInfo {
    std::string llama_commit;
    std::string llama_version;
    bool backend_dl = false;            // backends loaded at run time from shared libraries
    std::vector<std::string> backends;  // registered backends, e.g. "CPU", "CUDA"
    std::vector<DeviceInfo> devices;
    std::string cpu_features;           // llama_print_system_info()
    bool cuda_compiled = false;
    std::string cuda_archs;
    bool gpu_offload = false;           // llama_supports_gpu_offload() (true whenever RPC is built)
    bool rpc = false;                   // the RPC backend (ggml-rpc) is present
    std::string rpc_protocol;           // its protocol version, e.g. "7.0.0"
};

SystemInfo system_info();

}  // namespace llama_mtp
