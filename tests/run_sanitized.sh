#!/usr/bin/env bash
# Build llama-mtp with sanitizers and run tests under them.
#
#   tests/run_sanitized.sh tests/test_model.py tests/test_gguf_errors.py      # any pytest arguments
#   LLAMA_MTP_SANITIZE=undefined tests/run_sanitized.sh tests/test_engine.py
#   SANITIZE_NO_BUILD=1 tests/run_sanitized.sh tests/test_chat.py           # reuse the last build
#   SANITIZE_SCOPE=module tests/run_sanitized.sh tests/test_model.py          # our module only
#
# The module and llama.cpp's libraries are built with -C cmake.define.LLAMA_MTP_SANITIZE=...
# (default address,undefined; RelWithDebInfo for line numbers) into build/sanitize-* and installed
# (editable) into their own venv, .venv-sanitize, so the normal build and venv stay as they are.
# SANITIZE_SCOPE=module instruments only our module (LLAMA_MTP_SANITIZE_LLAMA=OFF; llama.cpp
# compiled as usual, Release, so ccache serves it: minutes instead of about an hour here), in
# build/sanitize-module-* and .venv-sanitize-module. Another sanitizer set than the default gets
# its own: LLAMA_MTP_SANITIZE=thread SANITIZE_SCOPE=module -> build/sanitize-module-thread-*,
# .venv-sanitize-module-thread (libtsan preloaded instead of libasan).
# An ASan module inside an ordinary python needs the ASan runtime first in the process:
# LD_PRELOAD=libasan.so; leak detection is off (the interpreter's own allocations would drown
# the report). Every sanitizer report goes to a log file; at the end the reports are grouped by
# their first frame and told apart as ours (csrc/) or llama.cpp's (third_party/). Exit status:
# pytest's, or 1 if any report points into our code.
#
# Environment: LLAMA_MTP_SANITIZE (sanitizers), SANITIZE_SCOPE (all | module), SANITIZE_VENV
# (venv path), SANITIZE_LOGS (report directory, default build/sanitize[-module]-logs),
# SANITIZE_NO_BUILD=1 (skip the pip install), LLAMA_MTP_TEST_MODELS as for the normal tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAN="${LLAMA_MTP_SANITIZE:-address,undefined}"
SCOPE="${SANITIZE_SCOPE:-all}"
case "$SCOPE" in
  all) suffix=""; llama=ON; build_type=RelWithDebInfo ;;
  module) suffix="-module"; llama=OFF; build_type=Release ;;
  *) echo "SANITIZE_SCOPE must be all or module" >&2; exit 2 ;;
esac
# Another sanitizer set than the default gets its own build dir, venv and logs (-thread, ...):
# ThreadSanitizer cannot be combined with AddressSanitizer, and one build dir holds one
# configuration (switching would rebuild the module each time).
if [[ "$SAN" != "address,undefined" ]]; then
  suffix="$suffix-${SAN//,/-}"
fi
VENV="${SANITIZE_VENV:-$ROOT/.venv-sanitize$suffix}"
LOGS="${SANITIZE_LOGS:-}"
PY="$VENV/bin/python"
CC="${CC:-gcc}"

if [[ ! -x "$PY" ]]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.13" "cmake>=3.21" ninja
fi

if [[ -z "${SANITIZE_NO_BUILD:-}" ]]; then
  echo "== building llama-mtp with -fsanitize=$SAN (scope $SCOPE, build/sanitize$suffix-*)"
  # Release for the module-only scope: the same flags as the normal build for llama.cpp, so ccache
  # hits; the module itself gets -fno-omit-frame-pointer and the sanitizers either way
  (cd "$ROOT" && CCACHE_BASEDIR="$ROOT" nice "$PY" -m pip install -q --no-build-isolation -e ".[test]" \
     -C "build-dir=build/sanitize$suffix-{wheel_tag}" \
     -C "cmake.define.LLAMA_MTP_SANITIZE=$SAN" \
     -C "cmake.define.LLAMA_MTP_SANITIZE_LLAMA=$llama" \
     -C "cmake.build-type=$build_type")
fi

LOGS="${LOGS:-$ROOT/build/sanitize$suffix-logs}"
rm -rf "$LOGS"
mkdir -p "$LOGS"
preload=()
if [[ ",$SAN," == *",address,"* ]]; then
  # libstdc++ right after it: python does not link it, and ASan resolves the real __cxa_throw
  # when it starts ("CHECK failed: ... real___cxa_throw != 0" at the first C++ exception)
  preload+=("$("$CC" -print-file-name=libasan.so)" "$("$CC" -print-file-name=libstdc++.so)")
elif [[ ",$SAN," == *",thread,"* ]]; then
  # python runs with it preloaded; /bin/bash does not (SIGSEGV at start), so no shell children
  preload+=("$("$CC" -print-file-name=libtsan.so)")
elif [[ ",$SAN," == *",undefined,"* ]]; then
  preload+=("$("$CC" -print-file-name=libubsan.so)")
fi
export LD_PRELOAD="${preload[*]:-}${LD_PRELOAD:+ $LD_PRELOAD}"
# halt_on_error=0 for UBSan: collect every report of the run instead of stopping at the first;
# ASan stops the process at its first report (what it found is in the log).
export ASAN_OPTIONS="detect_leaks=0:log_path=$LOGS/asan:strict_string_checks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$LOGS/ubsan:${UBSAN_OPTIONS:-}"
export TSAN_OPTIONS="log_path=$LOGS/tsan:${TSAN_OPTIONS:-}"

echo "== pytest $* (LD_PRELOAD=$LD_PRELOAD)"
set +e
(cd "$ROOT" && "$PY" -m pytest -q -p no:cacheprovider "$@")
status=$?

"$PY" - "$LOGS" "$ROOT" <<'EOF'
"""Group the sanitizer reports in the log directory by their first frame."""
import re
import sys
from collections import Counter
from pathlib import Path

logs, root = Path(sys.argv[1]), sys.argv[2]
kinds: Counter = Counter()
where: dict = {}
ours = 0
for f in sorted(logs.iterdir()):
    text = f.read_text(errors="replace")
    for m in re.finditer(r"(runtime error: [^\n]*|ERROR: \w+Sanitizer: [^\n]*|\w+Sanitizer: CHECK failed[^\n]*|WARNING: ThreadSanitizer: [^\n]*)", text):
        head = m.group(1)
        rest = text[m.start():m.start() + 4000]
        loc = re.search(r"^(\S+:\d+:\d+): runtime error", text[max(0, m.start() - 300):m.end()], re.M)
        # ASan/UBSan frames read "#0 0x… in func file:line", TSan's "#0 func file:line (lib+0x…)".
        # The site is the first frame in this tree (csrc/ or third_party/): frame #0 is often a
        # sanitizer interceptor (memcpy, free) or a libstdc++ header called from there.
        # The first stack (the access) decides; the others (a race's other access, where the
        # memory was allocated or freed) only when the first has no frame in this tree.
        rest = re.split(r"\n=+\n|\n==\d+==ABORTING", rest)[0]
        stacks = [re.findall(r"^\s*#\d+ (?:0x[0-9a-f]+ in )?(\S+) (\S+)", b, re.M)
                  for b in rest.split("\n\n")]
        frames = [f for st in stacks for f in st]
        inside = [f for st in stacks for f in st if f[1].startswith(root + "/")]
        if "ThreadSanitizer" in head:
            # a race takes two: ours when either access (the first two stacks; the rest say
            # where the memory and the threads came from) is in our code
            inside = [f for st in stacks[:2] for f in st if "/csrc/" in f[1]] or inside
        frame = inside[0] if inside else (frames[0] if frames else None)
        site = loc.group(1) if loc else (frame[1] if frame else "?")
        site = site.replace(root + "/", "")
        kind = re.sub(r"0x[0-9a-f]+", "0x…", re.sub(r" \(pid=\d+\)", "", head))[:140]
        key = (kind, site)
        kinds[key] += 1
        where.setdefault(key, f.name)
print(f"== sanitizer reports in {logs}: {sum(kinds.values())} ({len(kinds)} distinct)")
for (kind, site), n in kinds.most_common():
    mine = site.startswith("csrc/") or "/csrc/" in site
    ours += mine
    print(f"  {n:5d} x {'OURS ' if mine else 'llama.cpp ' if 'third_party' in site or 'llama.cpp' in site else ''}{site}: {kind}  [{where[(kind, site)]}]")
sys.exit(1 if ours else 0)
EOF
report_status=$?
if [[ $status -ne 0 ]]; then exit $status; fi
exit $report_status
