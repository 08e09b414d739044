#!/bin/bash
# cibuildwheel before-all on Windows (Git bash on the GitHub runner).
#
# CPU package: nothing to install. CUDA package (`llama-mtp-cu13`, stamped by
# wheels/variant.py): NVIDIA's network installer in silent mode with only the compiler, the
# runtime and cuBLAS (+ crt/nvvm, which nvcc 13 needs, cccl headers, and the Visual Studio
# integration for CMake's Visual Studio generator). The DLLs are not bundled into the wheel;
# users get them from the nvidia-cuda-runtime / nvidia-cublas pip dependencies.
set -euxo pipefail
cd "$(dirname "$0")/.."

variant=$(sed -n 's/^name = "llama-mtp-\(cu[0-9]*\)"$/\1/p' pyproject.toml)
case "$variant" in
  "")
    exit 0 ;;
  cu13)
    CUDA_FULL=13.0.2
    V=13.0 ;;
  *)
    echo "before_all_windows.sh: no CUDA toolkit pinned for variant '$variant'" >&2
    exit 1 ;;
esac

installer="cuda_${CUDA_FULL}_windows_network.exe"
curl -fsSL -o "$installer" \
  "https://developer.download.nvidia.com/compute/cuda/${CUDA_FULL}/network_installers/${installer}"
./"$installer" -s "nvcc_$V" "crt_$V" "nvvm_$V" "cudart_$V" "cublas_$V" "cublas_dev_$V" \
  "thrust_$V" "visual_studio_integration_$V"
rm -f "$installer"
"/c/Program Files/NVIDIA GPU Computing Toolkit/CUDA/v$V/bin/nvcc.exe" --version
