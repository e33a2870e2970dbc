"""Precision/recall of the default policy on the labelled evaluation set.

The set is built by tests/moderation/build_eval_set.py (see docs/moderation.md,
"Evaluation"); the numbers printed here are the ones the docs report.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from moderation.engine import Policy
from moderation.engine.evaluation import (
    HARD_NEGATIVE_FLAG_RATE,
    evaluate,
    failures,
    format_table,
    injection_false_positive_rate,
    injection_recall_by,
    load_examples,
)
from moderation.engine.phrases import LANGUAGES

from . import samples
from .test_streaming_property import assert_no_redacted_value_leaks

EVAL_SET = Path(__file__).with_name("eval_set.jsonl")
VAR_DIR = Path(__file__).resolve().parents[2] / "var"
EXAMPLES = load_examples(EVAL_SET)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return samples.evaluation_policy()


def test_the_evaluation_set_is_large_varied_and_mostly_hard() -> None:
    assert len(EXAMPLES) >= 600
    hard = sum(1 for e in EXAMPLES if e["hard_negative"])
    assert hard / len(EXAMPLES) >= 0.40
    assert {e["stage"] for e in EXAMPLES} == {"input", "output", "tool_output"}
    injection_categories = {
        e["category"] for e in EXAMPLES if e["category"].startswith("injection:")
    }
    for category in injection_categories - {"injection:fake_role"}:
        languages = {e["language"] for e in EXAMPLES if e["category"] == category}
        assert languages == set(LANGUAGES), category
    assert sum(1 for e in EXAMPLES if "chunks" in e) >= 50


def test_evaluation_meets_thresholds(policy: Policy) -> None:
    report = evaluate(policy, EXAMPLES)
    print("\n" + format_table(report))
    for error in report["errors"]:
        print("mismatch:", error)
    rate = injection_false_positive_rate(policy, EXAMPLES)
    print(f"hard negatives flagged as prompt injection: {rate:.3f}")
    if VAR_DIR.is_dir():
        (VAR_DIR / "moderation_eval.json").write_text(json.dumps(report, indent=2))
    assert failures(report) == []
    assert rate <= HARD_NEGATIVE_FLAG_RATE
    for kind, row in report["kinds"].items():
        if kind != "prompt_injection":
            assert row["precision"] >= 0.98 and row["recall"] >= 0.98, kind
    assert report["kinds"]["keyword"]["recall"] == 1.0


def test_each_injection_layer_is_measured_on_its_own() -> None:
    recall = {}
    for layer in ("phrases", "views", "structure"):
        by_category = injection_recall_by(samples.evaluation_policy(layers=[layer]), EXAMPLES)
        print(layer, {k: round(v, 2) for k, v in by_category.items()})
        recall[layer] = by_category
    # Each layer carries the categories it is built for, on its own.
    assert recall["phrases"]["injection:override"] >= 0.9
    assert recall["views"]["injection:reversed"] == 1.0
    assert recall["views"]["injection:encoded"] >= 0.9
    assert recall["structure"]["injection:fake_role"] >= 0.4
    assert recall["phrases"]["injection:reversed"] == 0.0  # only the views read it


def test_streamed_variants_never_leak_and_match_the_whole_text(policy: Policy) -> None:
    streamed = [e for e in EXAMPLES if "chunks" in e]
    counts: Counter[str] = Counter()
    for example in streamed:
        text = "".join(example["chunks"])
        assert text == example["text"]
        whole = policy.scan(text, example["stage"])
        moderator = policy.stream(example["stage"])
        released = "".join(moderator.feed(c) for c in example["chunks"]) + moderator.finish()
        assert released == whole.text, example["category"]
        assert moderator.findings == whole.findings
        assert_no_redacted_value_leaks(text, whole.findings, released)
        counts[example["category"]] += 1
    assert len(counts) >= 15
