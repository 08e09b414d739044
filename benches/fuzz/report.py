"""Summaries of a fuzz run: counts per strategy and outcome, the abort classes, the reasons
mutants were rejected; as JSON and as Markdown."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from .runner import Finding

OUTCOMES = ["ok", "rejected", "unexpected", "abort", "hang", "harness_error"]


def _reason_class(message: str) -> str:
    """A rejection message with its numbers, paths and quoted values blanked, for grouping."""
    lines = message.strip().splitlines()
    # llama.cpp's own reason follows "could not load '...':" on the next line
    first = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else "")
    first = re.sub(r"'[^']*\.gguf'", "'FILE'", first)
    first = re.sub(r"/[\w./-]+\.gguf", "FILE", first)
    first = re.sub(r"\d+", "N", first)
    return first[:160]


def summarize(records: dict[int, dict[str, Any]], findings: list[Finding],
              meta: dict[str, Any]) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    per_strategy: dict[str, Counter[str]] = defaultdict(Counter)
    stages: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: Counter[str] = Counter()
    unexpected: list[dict[str, Any]] = []
    harness_errors: list[dict[str, Any]] = []
    unexpected_classes: Counter[str] = Counter()
    ms: list[float] = []
    mtp_ok = 0
    for seed in sorted(records):
        r = records[seed]
        outcome = r["outcome"]
        outcomes[outcome] += 1
        per_strategy[r["strategy"]][outcome] += 1
        stages[outcome][r.get("stage") or "?"] += 1
        if "ms" in r:
            ms.append(float(r["ms"]))
        if outcome == "ok" and r.get("mtp"):
            mtp_ok += 1
        if outcome == "rejected":
            reasons[f"{r.get('error_type')}: {_reason_class(r.get('message', ''))}"] += 1
        if outcome == "harness_error" and len(harness_errors) < 20:
            harness_errors.append({"seed": seed, "traceback": r.get("traceback", "")})
        if outcome == "unexpected":
            cls = f"{r.get('error_type')}: {_reason_class(r.get('message', ''))}"
            unexpected_classes[cls] += 1
            if len(unexpected) < 100:
                unexpected.append({k: r.get(k) for k in ("seed", "strategy", "detail", "stage",
                                                         "error_type", "message")})
    classes: dict[str, dict[str, Any]] = {}
    for f in findings:
        c = classes.setdefault(f.cls, {"count": 0, "seeds": [], "strategies": Counter(),
                                       "example": f.to_json()})
        c["count"] += 1
        if len(c["seeds"]) < 20:
            c["seeds"].append(f.seed)
        c["strategies"][f.strategy] += 1
    for c in classes.values():
        c["strategies"] = dict(c["strategies"])
    ms.sort()
    return {
        **meta,
        "n_mutants": len(records),
        "outcomes": {k: outcomes.get(k, 0) for k in OUTCOMES},
        "ok_with_mtp": mtp_ok,
        "per_strategy": {s: {k: c.get(k, 0) for k in OUTCOMES} for s, c in sorted(per_strategy.items())},
        "stages": {o: dict(c.most_common()) for o, c in stages.items()},
        "mutant_ms_median": ms[len(ms) // 2] if ms else None,
        "abort_classes": classes,
        "findings": [f.to_json() for f in findings],
        "unexpected_classes": dict(unexpected_classes.most_common()),
        "unexpected": unexpected,
        "harness_errors": harness_errors,
        "rejection_reasons": dict(reasons.most_common(60)),
        "n_rejection_reasons": len(reasons),
    }


def markdown(s: dict[str, Any]) -> str:
    out = [f"# GGUF fuzz: {s['n_mutants']:,} mutants of `{s['base']}`", ""]
    out += [f"Command: `{s['command']}`", "",
            f"Base: {s['base_args']} (sha256 `{s['base_sha256'][:16]}…`, {s['base_size']:,} bytes); "
            f"seeds {s['seed_start']}–{s['seed_start'] + s['n_seeds'] - 1}; "
            f"{s['jobs']} child process(es) at a time, {s['batch_size']} mutants per child; "
            f"{s['elapsed_s']:.0f} s ({s['children']} child processes started); "
            f"llama-mtp {s.get('git', '?')}; {s.get('machine', '')}.", "",
            "Each mutant: `Model(path)`, tokenize, generate 4 tokens (`Speculator.mtp(2)` when the "
            "model has an MTP head; greedy for even seeds, temperature 0.8 for odd ones), "
            "detokenize; every third seed and every `chat_template` mutant also a two-token "
            "`chat` with the file's template. `rejected` = a `llama_mtp.errors` exception or "
            "`ValueError` (the wanted "
            "outcome for a broken file); `unexpected` = any other Python exception; `abort` = the "
            "process died; `hang` = no progress for the timeout; `harness_error` = the fuzzer itself "
            "failed to make the mutant (a bug to fix here).", ""]
    o = s["outcomes"]
    out += ["| outcome | mutants |", "|---|---:|"]
    out += [f"| {k} | {o[k]:,} |" for k in OUTCOMES]
    out += [f"| (ok with MTP drafting) | {s['ok_with_mtp']:,} |", ""]
    out += ["| strategy | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * len(OUTCOMES)]
    for name, c in s["per_strategy"].items():
        out.append(f"| {name} | " + " | ".join(f"{c[k]:,}" for k in OUTCOMES) + " |")
    out.append("")
    out += ["## Aborts", ""]
    if not s["abort_classes"]:
        out += ["None.", ""]
    for cls, c in s["abort_classes"].items():
        ex = c["example"]
        out += [f"- **{cls}** — {c['count']} mutant(s), strategies {c['strategies']}; "
                f"e.g. seed {ex['seed']} ({ex['strategy']}: {ex['detail']}), stage {ex['stage']}; "
                f"reproduce: `python benches/fuzz_gguf.py {s['reproduce_args']} --reproduce {ex['seed']}`"]
    out += ["", "## Unexpected exceptions", ""]
    if not s["unexpected_classes"]:
        out += ["None.", ""]
    for cls, n in s["unexpected_classes"].items():
        out.append(f"- {n} × `{cls}`")
    if s["harness_errors"]:
        out += ["", "## Harness errors", ""]
        for h in s["harness_errors"]:
            last = h["traceback"].strip().splitlines()[-1:] or [""]
            out.append(f"- seed {h['seed']}: `{last[0]}`")
    out += ["", f"## Why mutants were rejected (top {len(s['rejection_reasons'])} of "
                f"{s['n_rejection_reasons']} message classes; digits shown as N)", ""]
    for cls, n in s["rejection_reasons"].items():
        out.append(f"- {n} × `{cls}`")
    return "\n".join(out) + "\n"
