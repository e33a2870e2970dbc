"""Precision/recall evaluation of a policy against labelled examples.

Each example is ``{"text": str, "expected": [finding kinds], "stage"?: str}``. Scoring is
per example and per kind: a kind predicted and expected is a true positive, predicted but
not expected a false positive, expected but not predicted a false negative.

The thresholds below are what ``tests/moderation/test_evaluation.py`` enforces on
``tests/moderation/eval_set.jsonl`` and what docs/moderation.md reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .policy import Policy

# Minimum precision/recall per finding kind. Structured PII and secrets are validated
# (checksums, formats), so they must be near-perfect; keyword rules must find every
# written form; prompt injection is heuristic and is also held to a false-positive rate on
# hard negatives (HARD_NEGATIVE_FLAG_RATE).
DEFAULT_THRESHOLD = {"precision": 0.98, "recall": 0.98}
THRESHOLDS: dict[str, dict[str, float]] = {
    "keyword": {"precision": 0.98, "recall": 1.0},
    "prompt_injection": {"precision": 0.9, "recall": 0.92},
}
# At most this share of the hard negatives may be flagged as prompt injection.
HARD_NEGATIVE_FLAG_RATE = 0.03
# Micro-averaged over all kinds.
OVERALL_THRESHOLD = {"precision": 0.97, "recall": 0.97}


def load_examples(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file of labelled examples (blank lines ignored)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _ratio(num: int, den: int) -> float:
    return num / den if den else 1.0


def evaluate(
    policy: Policy, examples: Iterable[Mapping[str, Any]], stage: str = "input"
) -> dict[str, Any]:
    """Scan every example and compute per-kind and overall precision/recall.

    Returns ``{"kinds": {kind: {tp, fp, fn, precision, recall, support}}, "overall": {...},
    "errors": [{"index", "text", "expected", "predicted"}], "examples": n}``.
    """
    counts: dict[str, dict[str, int]] = {}
    errors: list[dict[str, Any]] = []
    n = 0
    for i, example in enumerate(examples):
        n += 1
        result = policy.scan(example["text"], example.get("stage", stage))
        predicted = {f.kind for f in result.findings}
        expected = set(example["expected"])
        for kind in predicted | expected:
            c = counts.setdefault(kind, {"tp": 0, "fp": 0, "fn": 0})
            if kind in predicted and kind in expected:
                c["tp"] += 1
            elif kind in predicted:
                c["fp"] += 1
            else:
                c["fn"] += 1
        if predicted != expected:
            errors.append(
                {
                    "index": i,
                    "text": example["text"][:120],
                    "expected": sorted(expected),
                    "predicted": sorted(predicted),
                }
            )
    kinds = {}
    for kind, c in sorted(counts.items()):
        kinds[kind] = {
            **c,
            "support": c["tp"] + c["fn"],
            "precision": _ratio(c["tp"], c["tp"] + c["fp"]),
            "recall": _ratio(c["tp"], c["tp"] + c["fn"]),
        }
    tp = sum(c["tp"] for c in counts.values())
    fp = sum(c["fp"] for c in counts.values())
    fn = sum(c["fn"] for c in counts.values())
    overall = {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }
    return {"kinds": kinds, "overall": overall, "errors": errors, "examples": n}


def threshold_for(kind: str) -> dict[str, float]:
    """The minimum precision/recall required for ``kind``."""
    return THRESHOLDS.get(kind, DEFAULT_THRESHOLD)


def failures(report: Mapping[str, Any]) -> list[str]:
    """Human-readable threshold violations in an ``evaluate`` report (empty = pass)."""
    out = []
    for kind, row in report["kinds"].items():
        limit = threshold_for(kind)
        for metric in ("precision", "recall"):
            if row[metric] < limit[metric]:
                out.append(f"{kind}: {metric} {row[metric]:.3f} < {limit[metric]}")
    for metric in ("precision", "recall"):
        if report["overall"][metric] < OVERALL_THRESHOLD[metric]:
            out.append(
                f"overall: {metric} {report['overall'][metric]:.3f} < {OVERALL_THRESHOLD[metric]}"
            )
    return out


def format_table(report: Mapping[str, Any]) -> str:
    """A plain-text table of the report (also pasted into docs/moderation.md)."""
    rows = [
        f"{'kind':<18} {'support':>7} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7}"
    ]
    items = list(report["kinds"].items()) + [("OVERALL", report["overall"])]
    for kind, r in items:
        support = r.get("support", r["tp"] + r["fn"])
        rows.append(
            f"{kind:<18} {support:>7} {r['tp']:>4} {r['fp']:>4} {r['fn']:>4} "
            f"{r['precision']:>9.3f} {r['recall']:>7.3f}"
        )
    return "\n".join(rows)


def injection_false_positive_rate(policy: Policy, examples: Iterable[Mapping[str, Any]]) -> float:
    """Share of hard negatives (``hard_negative: true``) flagged as prompt injection."""
    hard = [e for e in examples if e.get("hard_negative")]
    flagged = sum(
        1
        for e in hard
        if any(f.kind == "prompt_injection" for f in policy.scan(e["text"], e["stage"]).findings)
    )
    return _ratio(flagged, len(hard)) if hard else 0.0


def injection_recall_by(
    policy: Policy, examples: Iterable[Mapping[str, Any]], key: str = "category"
) -> dict[str, float]:
    """Recall of prompt injection per value of ``key`` (category, language, stage)."""
    hit: dict[str, list[int]] = {}
    for e in examples:
        if "prompt_injection" not in e["expected"]:
            continue
        found = any(
            f.kind == "prompt_injection"
            for f in policy.scan(e["text"], e.get("stage", "input")).findings
        )
        hit.setdefault(str(e.get(key)), []).append(int(found))
    return {k: sum(v) / len(v) for k, v in sorted(hit.items())}
