"""Management commands, run as a user would: in a subprocess on the embedded defaults."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedded_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(VAR_DIR=str(tmp_path_factory.mktemp("cmd")), DEMO_MODEL_DELAY_MS="0")
    manage(env, "migrate", "--noinput", "-v0")
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_seed_demo_is_idempotent_and_prints_a_token_only_when_it_creates_the_admin(
    embedded_env: dict[str, str],
) -> None:
    first = manage(embedded_env, "seed_demo")
    second = manage(embedded_env, "seed_demo")
    assert first.returncode == second.returncode == 0, first.stderr
    assert "agent demo-assistant: created" in first.stdout
    assert "agent demo-assistant: exists" in second.stdout
    assert re.search(r"password: \S+", first.stdout)
    assert "exists (password unchanged)" in second.stdout
    assert re.fullmatch(r"sy_[0-9a-f]{64}", first.stdout.strip().splitlines()[-1])
    assert not re.search(r"sy_[0-9a-f]{64}", second.stdout)
    assert "python manage.py create_api_token admin" in second.stdout
    count = manage(
        embedded_env,
        "shell",
        "-v0",
        "-c",
        "from agents.models import Agent, Provider; print(Agent.objects.count(), "
        "Provider.objects.count())",
    )
    assert count.stdout.split() == ["2", "1"]  # demo-assistant and demo-coordinator


def test_seed_demo_shows_every_feature_on_first_start(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a fresh database seeded once
    embedded_env = {**embedded_env, "VAR_DIR": str(tmp_path)}
    manage(embedded_env, "migrate", "--noinput", "-v0")
    seeded = manage(embedded_env, "seed_demo", "--no-token")
    assert "example runs: succeeded, succeeded, succeeded, blocked, cancelled, succeeded" in (
        seeded.stdout
    ), seeded.stderr
    # Then the demo agent has the default policy, the demo model a price, the coordinator
    # delegates, and the example runs ended in every interesting way
    report = manage(
        embedded_env,
        "shell",
        "-v0",
        "-c",
        "import json; from agents.models import Agent, Run, RunEvent, PriceOverride;"
        "from moderation.models import Flag;"
        "rules = Agent.objects.get(slug='demo-assistant').moderation_policy.rules.all();"
        "print(json.dumps({'rules': sorted((r.kind, r.action) for r in rules),"
        "'price': str(PriceOverride.objects.get(model_name='demo').input_per_mtok_usd),"
        "'statuses': sorted(Run.objects.values_list('status', flat=True)),"
        "'children': Run.objects.filter(parent__agent__slug='demo-coordinator').count(),"
        "'tool_runs': Run.objects.filter(tool_calls__gt=0, status='succeeded').count(),"
        "'cost': str(sum(r.cost_usd for r in Run.objects.all())),"
        "'redacted': RunEvent.objects.filter(data__action='redact').count(),"
        "'flags': sorted(set(Flag.objects.values_list('action', flat=True)))}))",
    )
    data = json.loads(report.stdout.strip().splitlines()[-1])
    assert data["rules"] == [
        ["keyword", "block"],
        ["pii", "redact"],
        ["prompt_injection", "flag"],
        ["secret", "redact"],
    ]
    assert data["price"] == "2.500000"
    assert {"succeeded", "blocked", "cancelled"} <= set(data["statuses"])
    assert data["children"] == 1 and data["tool_runs"] >= 2
    assert float(data["cost"]) > 0
    assert {"flag", "block"} <= set(data["flags"])  # in the triage queue
    assert data["redacted"] >= 1  # redactions are events of the run, not flags


def test_create_api_token_prints_the_token_last(embedded_env: dict[str, str]) -> None:
    manage(embedded_env, "seed_demo")
    result = manage(embedded_env, "create_api_token", "admin")
    assert result.returncode == 0
    assert re.fullmatch(r"sy_[0-9a-f]{64}", result.stdout.strip().splitlines()[-1])
    missing = manage(embedded_env, "create_api_token", "nobody")
    assert missing.returncode != 0 and "No user named 'nobody'" in missing.stderr


def test_run_agent_prints_json_events_and_exits_zero(embedded_env: dict[str, str]) -> None:
    manage(embedded_env, "seed_demo")
    result = manage(embedded_env, "run_agent", "demo-assistant", "What is 2+3?", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run.succeeded"
    assert events[-1]["data"]["output"] == "The result is 5."


def test_run_agent_exits_non_zero_when_the_run_does_not_succeed(
    embedded_env: dict[str, str],
) -> None:
    manage(embedded_env, "seed_demo")
    manage(
        embedded_env,
        "shell",
        "-v0",
        "-c",
        "from agents.models import Agent; Agent.objects.create(slug='tiny', name='t', "
        "provider_id=1, model_name='demo', tools=['calculator'], max_requests=1)",
    )
    # The calculator call uses the only model request; the answer would need a second.
    result = manage(embedded_env, "run_agent", "tiny", "What is 2+3?")
    assert result.returncode == 1
    assert "limit_exceeded" in result.stderr
    unknown = manage(embedded_env, "run_agent", "nope", "x")
    assert unknown.returncode != 0 and "No agent 'nope'" in unknown.stderr
