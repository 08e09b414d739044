#include "backend.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "ggml-backend.h"
#include "llama.h"
#include "log_bridge.h"
#include "rpc.h"

#ifndef LLAMA_MTP_LLAMA_COMMIT
#define LLAMA_MTP_LLAMA_COMMIT "unknown"
#endif

namespace llama_mtp {
namespace {

// glibc serves a block above its mmap threshold (128 KiB at start) with a fresh mapping. ggml's
// CPU work buffer (`new uint8_t[]`: the scratch tiles of the flash-attention and matmul kernels)
// then lands on one, and long prompts ran ~4 % slower than in llama-server (side by side on one
// core each, 8k prompt: 0.958; benches/results/prompt-gap-8k.md). With the threshold at glibc's
// 32 MiB ceiling (what MALLOC_MMAP_THRESHOLD_=33554432 does) the buffers below it come from the
// heap and the same measurement gave 1.012. Weights, KV cache and compute buffers are larger and
// stay mappings. A fixed threshold also switches off glibc's rule that keeps the trim threshold at
// twice the mmap threshold: left at 128 KiB, every freed block of a few MiB at the heap's top went
// back to the kernel and its pages were faulted in again on the next step (~5 faults per token
// in plain decoding), so it is raised with it.
//
// Set once per process; LLAMA_MTP_KEEP_MALLOC=1 leaves glibc's defaults alone, and a
// MALLOC_*_THRESHOLD_ of the user's own is kept.
bool keep_malloc() {
    const char* keep = std::getenv("LLAMA_MTP_KEEP_MALLOC");
    return keep && *keep && std::string(keep) != "0";
}

void raise_malloc_mmap_threshold() {
#if defined(__GLIBC__)
    if (keep_malloc()) return;
    if (std::getenv("MALLOC_MMAP_THRESHOLD_")) return;  // the user's own choice
    constexpr int threshold = 32 * 1024 * 1024;
    mallopt(M_MMAP_THRESHOLD, threshold);
    if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 2 * threshold);
#endif
}

}  // namespace

void release_freed_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

// One arena (M_ARENA_MAX=1). glibc gives each new thread an arena of its own, up to 8 per core,
// and memory freed into an arena other than the main one is not given back here: malloc_trim()
// (release_freed_memory) cannot shrink such an arena's top chunk, and free() shrinks it only
// beyond the trim threshold, which at 64 MiB is the largest an arena's heap can be. Each thread
// that once held a context's buffers, a request's n_vocab-sized sampler arrays or a model's
// vocabulary kept that peak resident: a process replacing models under many calling threads grew
// while malloc's bytes in use stayed flat (benches/soak.py --replace-every; the README's
// Reliability section has the measurements). In the main arena it all goes back after a context
// or model is freed.
//
// Called when the module is imported, before any thread of ours starts (llama.cpp's log worker
// is the first): a thread takes a free arena, one left by an ended thread, before the limit is
// looked at, and glibc fixes its limit for good once more than 8 arenas exist. A process that
// ran threads before importing llama_mtp keeps their arenas (MALLOC_ARENA_MAX=1 in its
// environment covers those too). LLAMA_MTP_KEEP_MALLOC=1, MALLOC_ARENA_MAX or a
// glibc.malloc.arena_max tunable of the user's own leave it alone.
void limit_malloc_arenas() {
#if defined(__GLIBC__)
    if (keep_malloc()) return;
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if (std::getenv("MALLOC_ARENA_MAX") || (tunables && std::strstr(tunables, "malloc.arena_max"))) return;
    mallopt(M_ARENA_MAX, 1);
#endif
}

void ensure_backend(const std::string& backend_dir) {
    static std::once_flag once;
    std::call_once(once, [&] {
        install_log_bridge();
        raise_malloc_mmap_threshold();
#ifdef LLAMA_MTP_BACKEND_DL
        ggml_backend_load_all_from_path(backend_dir.c_str());
#else
        (void)backend_dir;
#endif
        llama_backend_init();
    });
}

SystemInfo system_info() {
    SystemInfo info;
    info.llama_commit = LLAMA_MTP_LLAMA_COMMIT;
    info.llama_version = llama_version();
#ifdef LLAMA_MTP_BACKEND_DL
    info.backend_dl = true;
#endif
#ifdef LLAMA_MTP_CUDA
    info.cuda_compiled = true;
#endif
#ifdef LLAMA_MTP_CUDA_ARCHS
    info.cuda_archs = LLAMA_MTP_CUDA_ARCHS;
#endif
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        info.backends.emplace_back(ggml_backend_reg_name(ggml_backend_reg_get(i)));
    }
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        info.devices.push_back(describe_device(ggml_backend_dev_get(i)));
    }
    info.cpu_features = llama_print_system_info();
    info.gpu_offload = llama_supports_gpu_offload();
    info.rpc = ggml_backend_reg_by_name("RPC") != nullptr;
    if (info.rpc) info.rpc_protocol = rpc_protocol_version();
    return info;
}

DeviceInfo describe_device(ggml_backend_dev_t dev) {
    DeviceInfo d;
    d.name = ggml_backend_dev_name(dev);
    d.description = ggml_backend_dev_description(dev);
    switch (ggml_backend_dev_type(dev)) {
        case GGML_BACKEND_DEVICE_TYPE_CPU: d.type = "cpu"; break;
        case GGML_BACKEND_DEVICE_TYPE_GPU: d.type = "gpu"; break;
        case GGML_BACKEND_DEVICE_TYPE_IGPU: d.type = "igpu"; break;
        default: d.type = "accel"; break;
    }
    if (std::string(ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev))) == "RPC") d.type = "rpc";
    ggml_backend_dev_memory(dev, &d.memory_free, &d.memory_total);
    return d;
}

}  // namespace llama_mtp
