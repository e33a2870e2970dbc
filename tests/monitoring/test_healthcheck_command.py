"""``manage.py healthcheck``: the /readyz checks from a shell, with an exit code."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_a_healthy_deployment_reports_every_check_ok(settings: Any) -> None:
    settings.REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/0"
    out = StringIO()
    call_command("healthcheck", stdout=out)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   database",
        "ok   redis",
        "ok   channel_layer",
        "ok   broker",
    ]
    assert all(line.endswith(" ms") for line in lines)


def test_json_is_the_readyz_body(settings: Any) -> None:
    out = StringIO()
    call_command("healthcheck", "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True


def test_an_unreachable_redis_fails_naming_it(settings: Any) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    out = StringIO()
    with pytest.raises(CommandError, match=r"not ready: redis"):
        call_command("healthcheck", stdout=out)
    assert "FAIL redis: ConnectionError" in out.getvalue()
    assert out.getvalue().startswith("ok   database")
