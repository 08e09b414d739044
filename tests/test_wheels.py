"""Wheel packaging: the CUDA runtime loader, the CUDA variant stamp, the cibuildwheel config.

No GPU, no CUDA toolkit and no docker needed: the loader is exercised against fake pip
distributions (real dist-info/RECORD files in a temp dir) with ``ctypes.CDLL`` replaced.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import llama_mtp
from llama_mtp import _cuda_runtime

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
    # Nothing else changes.
    for key in base["project"]:
        if key not in ("name", "dependencies"):
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
