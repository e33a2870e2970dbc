"""Precision/recall of the default policy on the labelled evaluation set."""

from __future__ import annotations

import json
from pathlib import Path

from moderation.engine import Policy, default_policy_rules
from moderation.engine.evaluation import evaluate, failures, format_table, load_examples

from . import samples

EVAL_SET = Path(__file__).with_name("eval_set.jsonl")
VAR_DIR = Path(__file__).resolve().parents[2] / "var"


def test_the_evaluation_set_is_large_and_multilingual() -> None:
    examples = load_examples(EVAL_SET)
    assert len(examples) >= 150
    assert sum(1 for e in examples if not e["expected"]) >= 50  # hard negatives


def test_evaluation_meets_thresholds() -> None:
    policy = Policy(default_policy_rules(), known_secrets=[samples.KNOWN_SECRET])
    report = evaluate(policy, load_examples(EVAL_SET))
    print("\n" + format_table(report))
    for error in report["errors"]:
        print("mismatch:", error)
    if VAR_DIR.is_dir():
        (VAR_DIR / "moderation_eval.json").write_text(json.dumps(report, indent=2))
    assert failures(report) == []
