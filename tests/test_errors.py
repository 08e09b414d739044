"""Errors keep their promise: each C++ exception type reaches Python as the class csrc/errors.h
names, quantizer and chat-template failures are llama_mtp errors, and the CLI reports them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

import llama_mtp
from llama_mtp import ChatTemplateError, Model, ModelClosedError, QuantizeError, _core, errors

ROOT = Path(__file__).resolve().parents[1]
ModelFactory = Callable[..., Path]
HELLO = [{"role": "user", "content": "Hi"}]
BUILTIN = {"InvalidArgument": ValueError, "FileMissing": FileNotFoundError}


def test_errors_h_names_the_python_classes() -> None:
    """csrc/errors.h says each type maps to the llama_mtp.errors class of the same name (two to
    Python built-ins); bindings.cpp translates every one of them."""
    header = (ROOT / "csrc" / "errors.h").read_text(encoding="utf-8")
    bindings = (ROOT / "csrc" / "bindings.cpp").read_text(encoding="utf-8")
    types = re.findall(r"(?m)^struct (\w+) :", header)
    same_name = re.search(r"Python exception:\n(.*?)->\s+the llama_mtp.errors class of the same name",
                          header, re.S)
    assert same_name is not None
    listed = set(re.findall(r"[A-Z]\w+", same_name.group(1)))
    assert listed | set(BUILTIN) == set(types) and not listed & set(BUILTIN)
    for name in types:
        assert f"raise_as<{name}>(e, " in bindings, f"{name} is not translated"
    for name in listed:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.LlamaMTPError) and name in errors.__all__
        assert f'raise_as<{name}>(e, "{name}")' in bindings
    for name, builtin in BUILTIN.items():
        assert re.search(rf"//\s+{name}\s+->\s+{builtin.__name__}\b", header)
        assert f"raise_as<{name}>(e, PyExc_{builtin.__name__})" in bindings


def test_closed_model_raises_model_closed_error_from_cpp(tiny_model_path: Path) -> None:
    model = Model(tiny_model_path, vocab_only=True)
    native = model._native
    model.close()
    with pytest.raises(ModelClosedError, match="closed"):
        native.tokenize("x", False, False)  # the C++ check, not the facade's


def test_chat_template_errors_come_from_the_binding(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, vocab_only=True) as model:
        with pytest.raises(ChatTemplateError, match="could not be parsed"):
            _core.ChatTemplates(model._native, "{% if %}")
        failing = _core.ChatTemplates(model._native, "{{ raise_exception('no chat here') }}")
        with pytest.raises(ChatTemplateError, match="no chat here"):
            failing.apply('[{"role": "user", "content": "Hi"}]', "", "auto", "", True, True)
        good = _core.ChatTemplates(model._native, "")
        with pytest.raises(ValueError, match="invalid chat messages") as bad:
            good.apply('[{"role": "user", "content": 5}]', "", "auto", "", True, True)
        assert not isinstance(bad.value, ChatTemplateError)  # the messages are wrong, not the template
        with pytest.raises(ValueError, match="at least one message"):
            good.apply("[]", "", "auto", "", True, True)
        hi = '[{"role": "user", "content": "Hi"}]'
        for schema, needle in [("[1]", "must be an object"), ("{nope", "not valid JSON"),
                               ('{"type": "string", "pattern": "^(a$"}', "cannot be used")]:
            with pytest.raises(ValueError, match=needle) as bad:
                good.apply(hi, "", "auto", schema, True, True)
            assert not isinstance(bad.value, ChatTemplateError)  # the schema is wrong


def test_chat_template_errors_through_the_api(tiny_model_path: Path) -> None:
    with Model(tiny_model_path, n_ctx=256, n_threads=1) as model:
        with pytest.raises(ChatTemplateError, match="could not be parsed"):
            model.chat(HELLO, chat_template="{% if %}")
        with pytest.raises(ChatTemplateError, match="no chat here"):
            model.chat(HELLO, chat_template="{{ raise_exception('no chat here') }}")


@pytest.fixture(scope="module")
def f16_model(synthetic_model: ModelFactory) -> Path:
    return synthetic_model(quant="F16", vocab_size=4096)


def test_quantizer_failures_are_quantize_errors(f16_model: Path, tmp_path: Path) -> None:
    # llama.cpp's rule: Q2_K_S needs an importance matrix
    with pytest.raises(QuantizeError, match="importance matrix"):
        llama_mtp.quantize(f16_model, tmp_path / "out.gguf", "Q2_K_S", threads=1)
    with pytest.raises(QuantizeError, match="failed to quantize"):
        llama_mtp.quantize(f16_model, tmp_path / "no-such-dir" / "out.gguf", "Q8_0", threads=1)
    assert issubclass(QuantizeError, llama_mtp.LlamaMTPError)


def test_cli_reports_a_quantizer_failure(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "llama_mtp", "synth", str(tmp_path / "m.gguf"),
                          "--quant", "Q2_K_S", "--method", "requantize", "--vocab-size", "4096",
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "importance matrix" in out.stderr and "Traceback" not in out.stderr
