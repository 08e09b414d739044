#!/bin/bash
# cibuildwheel before-all on manylinux_2_28 (AlmaLinux 8), run once per container.
#
# CPU package (pyproject name `llama-mtp`): only ccache, so the 2nd..Nth Python version reuse
# the ggml/llama objects (CCACHE_BASEDIR makes the per-wheel-tag build dirs hash alike).
# CUDA package (`llama-mtp-cu13`, stamped by wheels/variant.py): additionally a pinned, minimal
# CUDA toolkit from NVIDIA's rhel8 repository -- compiler, cudart and cuBLAS headers/libs only.
# The runtime libraries are NOT bundled into the wheel (auditwheel --exclude); users get them
# from the nvidia-cuda-runtime / nvidia-cublas pip dependencies.
set -euxo pipefail
cd "$(dirname "$0")/.."

dnf install -y epel-release && dnf install -y ccache || echo "ccache unavailable: builds are slower"

variant=$(sed -n 's/^name = "llama-mtp-\(cu[0-9]*\)"$/\1/p' pyproject.toml)
case "$variant" in
  "")
    exit 0 ;;
  cu13)
    # CUDA 13.0 update 2 (nvcc 13.0.88, cuBLAS 13.0.2.14): the release wheels are built with.
    CUDA_DASH=13-0
    PKGS=(
      "cuda-nvcc-${CUDA_DASH}-13.0.88-1"
      "cuda-crt-${CUDA_DASH}-13.0.88-1"
      "cuda-nvvm-${CUDA_DASH}-13.0.88-1"
      "cuda-cudart-devel-${CUDA_DASH}-13.0.96-1"
      "cuda-cccl-${CUDA_DASH}-13.0.85-1"
      "libcublas-devel-${CUDA_DASH}-13.0.2.14-1"
    )
    ;;
  *)
    echo "before_all_linux.sh: no CUDA toolkit pinned for variant '$variant'" >&2
    exit 1 ;;
esac

dnf install -y 'dnf-command(config-manager)'
dnf config-manager --add-repo \
  https://developer.download.nvidia.com/compute/cuda/repos/rhel8/x86_64/cuda-rhel8.repo
dnf install -y --setopt=install_weak_deps=False "${PKGS[@]}"
ln -sfn "/usr/local/cuda-${CUDA_DASH/-/.}" /usr/local/cuda
/usr/local/cuda/bin/nvcc --version
ls /usr/local/cuda/lib64/libcublas.so /usr/local/cuda/lib64/libcudart.so
