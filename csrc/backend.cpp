#include "backend.h"

#include <mutex>

#include "ggml-backend.h"
#include "llama.h"
#include "log_bridge.h"

#ifndef LLAMA_MTP_LLAMA_COMMIT
#define LLAMA_MTP_LLAMA_COMMIT "unknown"
#endif

namespace llama_mtp {

void ensure_backend(const std::string& backend_dir) {
    static std::once_flag once;
    std::call_once(once, [&] {
        install_log_bridge();
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
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        DeviceInfo d;
        d.name = ggml_backend_dev_name(dev);
        d.description = ggml_backend_dev_description(dev);
        switch (ggml_backend_dev_type(dev)) {
            case GGML_BACKEND_DEVICE_TYPE_CPU: d.type = "cpu"; break;
            case GGML_BACKEND_DEVICE_TYPE_GPU: d.type = "gpu"; break;
            case GGML_BACKEND_DEVICE_TYPE_IGPU: d.type = "igpu"; break;
            default: d.type = "accel"; break;
        }
        ggml_backend_dev_memory(dev, &d.memory_free, &d.memory_total);
        info.devices.push_back(std::move(d));
    }
    info.cpu_features = llama_print_system_info();
    info.gpu_offload = llama_supports_gpu_offload();
    return info;
}

}  // namespace llama_mtp
