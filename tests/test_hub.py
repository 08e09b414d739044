"""Model.from_pretrained / -hf, offline: against a local cache laid out as huggingface_hub lays it
out (HF_HUB_OFFLINE=1), and with a stand-in for the download (no machine here reaches a hub)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

pytest.importorskip("huggingface_hub", reason="the [hub] extra (huggingface_hub) is not installed")
import huggingface_hub  # noqa: E402

from llama_mtp import Model, SamplingParams, Speculator, synthetic  # noqa: E402
from llama_mtp.hub import parse_hf_spec, resolve  # noqa: E402
from tests.gguf_edit import rewrite, split  # noqa: E402

ModelFactory = Callable[..., Path]
PROMPT = "Once upon a time"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def greedy(n: int) -> SamplingParams:
    return SamplingParams.greedy(max_tokens=n)


def fake_cache(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """``cache/models--org--name/{blobs,refs/main,snapshots/<commit>/...}``, as huggingface_hub
    writes it (snapshot entries are relative links to blobs; the blobs link to our files)."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    for i, (name, src) in enumerate(files.items()):
        blob = root / "blobs" / f"blob{i:04d}"
        blob.symlink_to(src)
        entry = snapshot / name
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.symlink_to(os.path.relpath(blob, entry.parent))
    return snapshot


@pytest.fixture(scope="module")
def hub_files(synthetic_model: ModelFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two repositories' files: acme/tiny-GGUF (a single file, a three-part split, a vision
    projector, a README) and acme/trunk-GGUF (a model without MTP head and its MTP sidecar)."""
    src = tmp_path_factory.mktemp("hubsrc")
    tiny = synthetic_model()
    parts = split(tiny, src / "Tiny-Q4_0.gguf", max_tensors=30)  # the same weights, in three files
    mmproj = src / "mmproj.gguf"
    mmproj.write_bytes(b"GGUF not a model")
    readme = src / "README.md"
    readme.write_text("# tiny\n")
    full = synthetic_model(vocab_size=4096)
    trunk = synthetic_model(vocab_size=4096, mtp=False)
    sidecar = rewrite(full, src / "mtp.gguf",
                      drop_tensor=lambda name: name.startswith("blk.") and not name.startswith("blk.4."))
    return {
        "tiny": tiny,
        "acme/tiny-GGUF": {"Tiny-Q8_0.gguf": tiny, "mmproj-Tiny-F16.gguf": mmproj, "README.md": readme,
                           **{p.name: p for p in parts}},
        "acme/trunk-GGUF": {"Trunk-Q8_0.gguf": trunk, "mtp-Trunk-Q8_0.gguf": sidecar},
        "full": full,
    }


@pytest.fixture()
def offline_cache(hub_files: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    for repo in ("acme/tiny-GGUF", "acme/trunk-GGUF"):
        fake_cache(cache, repo, hub_files[repo])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def expected(path: Path, n: int) -> list[int]:
    with Model(path, vocab_only=True) as vocab:
        return synthetic.expected_continuation(path, vocab.tokenize(PROMPT, add_special=True, parse_special=True), n)


def test_from_pretrained_offline_resolves_the_glob_and_loads(offline_cache: Path, hub_files: dict[str, Any]) -> None:
    # "*Q8_0*" names one model: the projector and the Q4_0 split do not match it
    with Model.from_pretrained("acme/tiny-GGUF", "*Q8_0*.gguf", cache_dir=offline_cache, n_ctx=256,
                               n_threads=1) as model:
        assert Path(model.path).name == "Tiny-Q8_0.gguf" and str(offline_cache) in model.path
        assert model.generate(PROMPT, greedy(16)).tokens == expected(hub_files["tiny"], 16)


def test_from_pretrained_offline_loads_a_split_model_from_its_first_part(
        offline_cache: Path, hub_files: dict[str, Any]) -> None:
    with Model.from_pretrained("acme/tiny-GGUF", "*q4_0*", cache_dir=offline_cache, n_ctx=256,
                               n_threads=1) as model:  # case-insensitive, any part's name
        assert Path(model.path).name == "Tiny-Q4_0-00001-of-00003.gguf"
        assert model.has_mtp
        assert model.generate(PROMPT, greedy(16), speculator=Speculator.mtp(2)).tokens == \
            expected(hub_files["tiny"], 16)


def test_an_ambiguous_or_empty_glob_lists_the_candidates(offline_cache: Path) -> None:
    with pytest.raises(ValueError, match=r"matches 2 models.*Tiny-Q4_0-\*-of-00003\.gguf.*Tiny-Q8_0\.gguf"):
        resolve("acme/tiny-GGUF", "*.gguf", cache_dir=offline_cache)
    with pytest.raises(FileNotFoundError, match=r"no GGUF in acme/tiny-GGUF matches '\*Q2_K\*\.gguf'.*Tiny-Q8_0\.gguf"):
        resolve("acme/tiny-GGUF", "*Q2_K*.gguf", cache_dir=offline_cache)
    with pytest.raises(FileNotFoundError, match="acme/absent-GGUF"):
        resolve("acme/absent-GGUF", cache_dir=offline_cache)


def test_a_split_part_missing_from_the_cache(hub_files: dict[str, Any], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    files = {k: v for k, v in hub_files["acme/tiny-GGUF"].items() if not k.endswith("00002-of-00003.gguf")}
    fake_cache(tmp_path, "acme/tiny-GGUF", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="Tiny-Q4_0-00002-of-00003.gguf"):
        resolve("acme/tiny-GGUF", "*Q4_0*", cache_dir=tmp_path)


def test_from_pretrained_with_an_mtp_sidecar(offline_cache: Path, hub_files: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="matches 2 models"):  # the sidecar matches *Q8_0* too
        resolve("acme/trunk-GGUF", "*Q8_0*.gguf", cache_dir=offline_cache)
    with Model.from_pretrained("acme/trunk-GGUF", "*Q8_0*.gguf", cache_dir=offline_cache, mtp_sidecar="mtp-*.gguf",
                               n_ctx=512, n_threads=1) as model:
        assert Path(model.path).name == "Trunk-Q8_0.gguf" and not model.has_mtp
        assert model.speculator is not None and model.speculator.type == "draft-mtp"
        assert Path(model.speculator.model_path or "").name == "mtp-Trunk-Q8_0.gguf"
        out = model.generate(PROMPT, greedy(32))  # the pinned speculator drafts with the sidecar
        assert out.stats.num_drafts > 0 and out.stats.draft_n_accepted > 0
        assert out.tokens == expected(hub_files["full"], 32)
    with pytest.raises(ValueError, match="mtp_sidecar goes with an MTP speculator"):
        Model.from_pretrained("acme/trunk-GGUF", "Trunk-Q8_0.gguf", cache_dir=offline_cache,
                              mtp_sidecar="mtp-*.gguf", speculator=Speculator.ngram())


def test_download_path_with_a_stand_in_for_the_hub(hub_files: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    files: dict[str, Path] = hub_files["acme/tiny-GGUF"]
    calls: list[tuple[str, str, bool]] = []

    def list_repo_files(repo_id: str, *, revision: str | None = None, **_: Any) -> list[str]:
        assert repo_id == "acme/tiny-GGUF" and revision == "v1"
        return sorted(files)

    def hf_hub_download(repo_id: str, filename: str, *, revision: str | None = None,
                        cache_dir: str | None = None, local_files_only: bool = False, **_: Any) -> str:
        calls.append((filename, str(revision), local_files_only))
        dst = Path(cache_dir or tmp_path) / "dl" / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(files[filename])
        return str(dst)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    with caplog.at_level(logging.INFO, logger="llama_mtp"):
        path = resolve("acme/tiny-GGUF", "*Q4_0*.gguf", revision="v1", cache_dir=tmp_path)
    assert path.name == "Tiny-Q4_0-00001-of-00003.gguf"
    assert calls == [(f"Tiny-Q4_0-0000{i}-of-00003.gguf", "v1", False) for i in (1, 2, 3)]
    assert "part 3 of 3" in caplog.text
    with Model(path, n_ctx=256, n_threads=1) as model:
        assert model.generate(PROMPT, greedy(8)).tokens == expected(hub_files["tiny"], 8)

    # the Hub unreachable: the cached snapshot answers, with a warning
    def unreachable(*_: Any, **__: Any) -> list[str]:
        raise ConnectionError("no route to huggingface.co")

    cache = tmp_path / "cache"
    fake_cache(cache, "acme/tiny-GGUF", files)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", unreachable)
    calls.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llama_mtp"):
        path = resolve("acme/tiny-GGUF", "*Q8_0*", cache_dir=cache)
    assert "unreachable" in caplog.text and path.name == "Tiny-Q8_0.gguf"
    assert calls == [("Tiny-Q8_0.gguf", "None", True)]


def test_cli_hf_flag_offline(offline_cache: Path, hub_files: dict[str, Any]) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(offline_cache), HF_HUB_DISABLE_PROGRESS_BARS="1")
    run = [sys.executable, "-m", "llama_mtp", "run", "-c", "256", "-t", "1", "--temp", "0", "-n", "8", "-p", PROMPT]
    out = subprocess.run(run + ["-hf", "acme/tiny-GGUF:q4_0"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    with Model(hub_files["tiny"], vocab_only=True) as vocab:
        assert out.stdout.startswith(vocab.detokenize(expected(hub_files["tiny"], 8)))
    out = subprocess.run(run + ["-hf", "acme/tiny-GGUF", "-hff", "Tiny-Q8_0.gguf"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(run + ["-hf", "acme/tiny-GGUF"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 1 and "*Q4_K_M*.gguf" in out.stderr  # llama.cpp's default quantization
    out = subprocess.run(run, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 1 and "-hf" in out.stderr


def test_hf_spec_and_a_missing_huggingface_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_hf_spec("unsloth/Qwen3.6-27B-GGUF") == ("unsloth/Qwen3.6-27B-GGUF", "*Q4_K_M*.gguf")
    assert parse_hf_spec("unsloth/Qwen3.6-27B-GGUF:Q8_0") == ("unsloth/Qwen3.6-27B-GGUF", "*Q8_0*.gguf")
    with pytest.raises(ValueError, match="user/repo"):
        parse_hf_spec("just-a-name")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"llama-mtp\[hub\]"):
        resolve("acme/tiny-GGUF")
