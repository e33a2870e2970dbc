"""Canary values go in through every door and must come out of none but the ciphertext.

Each test runs the same scenario (create over the API and the admin, rotate both ways,
a refused rotation, reveals, a re-wrap) with fresh canary values, then searches one
surface. A canary is searched without its last 4 characters, since those may legitimately
show as the masked hint.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils.log import AdminEmailHandler
from django.views.debug import ExceptionReporter
from rest_framework.test import APIClient

from secrets_vault import services
from secrets_vault.crypto import encrypt_value
from secrets_vault.errors import SecretDecryptionError, VersionConflictError
from secrets_vault.keyring import get_keyring
from secrets_vault.models import Secret, SecretAccessEvent, SecretVersion
from secrets_vault.reveal_services import RevealCache, reveal_once, secret_reveal
from secrets_vault.selectors import vault_status_get
from secrets_vault.services import vault_rewrap

pytestmark = pytest.mark.django_db

API = "/api/v1/secrets/"
CIPHERTEXT_COLUMNS = {
    ("secrets_vault_secretversion", c) for c in ("value_ciphertext", "wrapped_dek")
}


def assert_clean(text: str | bytes, canaries: list[str], where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for value in canaries:
        assert value[:-4] not in text, f"a canary leaked into {where}"


class Scenario:
    def __init__(
        self, canary: Callable[[], str], bob: Any, bob_api: APIClient, vault_keys: Any
    ) -> None:
        self.values = [canary() for _ in range(6)]
        self.bob, self.api, self.keys = bob, bob_api, vault_keys
        self.admin = Client()
        self.admin.force_login(bob)
        self.responses: dict[str, bytes] = {}

    def run(self) -> None:
        api_value, api_rotated, admin_value, admin_rotated, refused, conflicted = self.values
        r = self.responses
        r["api create"] = self.api.post(
            API, {"name": "api-canary", "value": api_value}, format="json"
        ).content
        r["api rotate"] = self.api.post(
            f"{API}api-canary/versions/",
            {"value": api_rotated, "expected_version": 1},
            format="json",
        ).content
        r["api conflict"] = self.api.post(
            f"{API}api-canary/versions/",
            {"value": conflicted, "expected_version": 1},
            format="json",
        ).content
        r["api invalid"] = self.api.post(
            API, {"name": "bad name!", "value": refused, "extra": refused}, format="json"
        ).content
        r["api duplicate"] = self.api.post(
            API, {"name": "api-canary", "value": refused}, format="json"
        ).content
        r["api list"] = self.api.get(API).content
        r["api detail"] = self.api.get(f"{API}api-canary/").content
        r["api versions"] = self.api.get(f"{API}api-canary/versions/").content
        r["api version"] = self.api.get(f"{API}api-canary/versions/1/").content
        r["api disable"] = self.api.post(f"{API}api-canary/versions/1/disable/").content

        r["admin add"] = self.admin.post(
            reverse("admin:secrets_vault_secret_add"),
            {
                "name": "admin-canary",
                "value": admin_value,
                "show_hint": "on",
                "versions-TOTAL_FORMS": "0",
                "versions-INITIAL_FORMS": "0",
            },
            follow=True,
        ).content
        secret = Secret.objects.get(name="admin-canary")
        rotate = reverse("admin:secrets_vault_secret_rotate", args=[secret.pk])
        r["admin rotate form"] = self.admin.get(rotate).content
        r["admin rotate refused"] = self.admin.post(
            rotate, {"value": refused, "confirm": refused + "x", "expected_version": "1"}
        ).content
        r["admin rotate stale"] = self.admin.post(
            rotate, {"value": refused, "confirm": refused, "expected_version": "0"}
        ).content
        r["admin rotate"] = self.admin.post(
            rotate,
            {"value": admin_rotated, "confirm": admin_rotated, "expected_version": "1"},
            follow=True,
        ).content

        for name in ("api-canary", "admin-canary"):
            secret_reveal(name=name, purpose="run:canary", actor=self.bob)
        cache = RevealCache()
        reveal_once(cache, name="admin-canary", purpose="run:canary", actor="worker")
        self.keys.add("test-b", activate=True)
        vault_rewrap(batch_size=1)

        admin_pages = {
            "admin list": reverse("admin:secrets_vault_secret_changelist"),
            "admin change": reverse("admin:secrets_vault_secret_change", args=[secret.pk]),
            "admin history": reverse("admin:secrets_vault_secret_history", args=[secret.pk]),
            "admin versions": reverse("admin:secrets_vault_secretversion_changelist"),
            "admin version": reverse(
                "admin:secrets_vault_secretversion_change", args=[SecretVersion.objects.first().pk]
            ),
            "admin access log": reverse("admin:secrets_vault_secretaccessevent_changelist"),
            "admin access event": reverse(
                "admin:secrets_vault_secretaccessevent_change",
                args=[SecretAccessEvent.objects.first().pk],
            ),
        }
        for label, url in admin_pages.items():
            response = self.admin.get(url)
            assert response.status_code == 200, label
            r[label] = response.content
        r["admin destroy confirmation"] = self.admin.post(
            reverse("admin:secrets_vault_secretversion_changelist"),
            {
                "action": "destroy_versions",
                ACTION_CHECKBOX_NAME: [str(v.pk) for v in SecretVersion.objects.all()],
            },
        ).content


@pytest.fixture
def scenario(canary: Callable[[], str], bob: Any, bob_api: APIClient, vault_keys: Any) -> Scenario:
    return Scenario(canary, bob, bob_api, vault_keys)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG, SQL included (with its parameters)."""
    previous = connection.force_debug_cursor
    connection.force_debug_cursor = True
    with caplog.at_level(logging.DEBUG):
        for name in ("django.db.backends", "django.request", "secrets_vault"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        yield caplog
    logging.getLogger("django.db.backends").setLevel(logging.INFO)
    connection.force_debug_cursor = previous


def test_the_scenario_did_store_and_reveal_the_canaries(scenario: Scenario) -> None:
    scenario.run()
    assert SecretVersion.objects.filter(secret__name="api-canary").count() == 2
    assert SecretVersion.objects.filter(secret__name="admin-canary").count() == 2
    value = secret_reveal(name="admin-canary", purpose="check", actor=None)
    assert value.reveal() == scenario.values[3]


def test_no_canary_in_logs_at_debug_level(
    scenario: Scenario, debug_logs: pytest.LogCaptureFixture
) -> None:
    scenario.run()
    assert any("secret_revealed" in str(r.msg) for r in debug_logs.records)
    assert any("INSERT" in r.getMessage() for r in debug_logs.records)
    assert_clean(debug_logs.text, scenario.values, "the captured log text")
    for record in debug_logs.records:
        assert_clean(repr(record.__dict__), scenario.values, f"log record {record.name}")


def test_no_canary_in_api_responses(scenario: Scenario) -> None:
    scenario.run()
    for label in [k for k in scenario.responses if k.startswith("api")]:
        assert_clean(scenario.responses[label], scenario.values, label)
    assert b"version_conflict" in scenario.responses["api conflict"]
    assert b"invalid_request" in scenario.responses["api invalid"]


def test_no_canary_in_admin_pages(scenario: Scenario) -> None:
    scenario.run()
    for label in [k for k in scenario.responses if k.startswith("admin")]:
        assert_clean(scenario.responses[label], scenario.values, label)
    assert b"The two values differ" in scenario.responses["admin rotate refused"]


def test_no_canary_in_the_repr_of_any_vault_object(scenario: Scenario) -> None:
    scenario.run()
    objects: list[Any] = [
        *Secret.objects.all(),
        *SecretVersion.objects.all(),
        *SecretAccessEvent.objects.all(),
        get_keyring(),
        vault_status_get(),
        vault_rewrap(),
        VersionConflictError(name="x", expected=1, current=2),
        SecretDecryptionError(name="x", version=1, reason="authentication_failed"),
    ]
    cache = RevealCache()
    value = reveal_once(cache, name="admin-canary", purpose="run:canary", actor=None)
    record = encrypt_value(
        secret_id=Secret.objects.first().pk, version=9, value=value, keyring=get_keyring()
    )
    objects += [value, cache, record]
    for obj in objects:
        for text in (repr(obj), str(obj)):
            assert_clean(text, scenario.values, f"repr of {type(obj).__name__}")
            for material in scenario.keys.material():
                assert material not in text


def test_no_canary_in_dumpdata(scenario: Scenario) -> None:
    scenario.run()
    out = StringIO()
    call_command("dumpdata", stdout=out)
    assert '"model": "secrets_vault.secretversion"' in out.getvalue()
    assert_clean(out.getvalue(), scenario.values, "dumpdata")


def test_no_canary_in_management_command_output(scenario: Scenario) -> None:
    scenario.run()
    out = StringIO()
    call_command("vault_status", stdout=out, stderr=out)
    call_command("vault_rewrap", stdout=out, stderr=out)
    assert_clean(out.getvalue(), scenario.values, "command output")
    for material in scenario.keys.material():
        assert material not in out.getvalue()


def test_no_canary_in_any_database_column_but_the_ciphertext(scenario: Scenario) -> None:
    # given
    scenario.run()
    needles = [v[:-4].encode() for v in scenario.values]
    # when / then: every column of every table
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                for column, cell in zip(columns, row, strict=True):
                    if isinstance(cell, bytes | memoryview):
                        raw = bytes(cell)
                        # Even the ciphertext columns must not hold the plaintext bytes.
                        assert not any(n in raw for n in needles), (table, column)
                        if (table, column) not in CIPHERTEXT_COLUMNS:
                            assert_clean(
                                raw.decode("latin-1"), scenario.values, f"{table}.{column}"
                            )
                    else:
                        assert_clean(str(cell), scenario.values, f"{table}.{column}")


def _boom_after_encrypting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail after the value reached the service (and was encrypted): the worst moment."""
    real = services._new_version

    def new_version(**kwargs: Any) -> Any:
        real(**kwargs)
        raise RuntimeError("simulated failure after encryption")

    monkeypatch.setattr(services, "_new_version", new_version)


@pytest.fixture
def error_mail(settings: Any) -> Iterator[None]:
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    handler = AdminEmailHandler(include_html=True)
    handler.setLevel(logging.ERROR)
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)


@pytest.mark.parametrize("debug", [True, False])
def test_no_canary_in_500_pages_or_error_emails(
    bob: Any,
    bob_api: APIClient,
    canary: Callable[[], str],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    error_mail: None,
    debug: bool,
) -> None:
    # given: every write path fails after it has the value in hand
    settings.DEBUG = debug
    values = [canary() for _ in range(3)]
    bob_api.raise_request_exception = False
    admin = Client(raise_request_exception=False)
    admin.force_login(bob)
    services.secret_create(name="existing", value="existing-value-0000000")
    existing = Secret.objects.get()
    _boom_after_encrypting(monkeypatch)
    # when
    pages = [
        bob_api.post(API, {"name": "boom", "value": values[0]}, format="json"),
        bob_api.post(f"{API}existing/versions/", {"value": values[1]}, format="json"),
        admin.post(
            reverse("admin:secrets_vault_secret_add"),
            {
                "name": "boom",
                "value": values[2],
                "show_hint": "on",
                "versions-TOTAL_FORMS": "0",
                "versions-INITIAL_FORMS": "0",
            },
        ),
        admin.post(
            reverse("admin:secrets_vault_secret_rotate", args=[existing.pk]),
            {"value": values[2], "confirm": values[2], "expected_version": "1"},
        ),
    ]
    # then
    assert [p.status_code for p in pages] == [500] * 4
    if debug:
        # The API answers in its JSON error shape even with DEBUG on; the admin's page is
        # Django's debug page, with the exception (and so the locals it must not show).
        assert pages[0]["Content-Type"].startswith("application/json")
        assert b"simulated failure after encryption" in pages[2].content
    for index, page in enumerate(pages):
        assert_clean(page.content, values, f"500 page {index}")
    assert len(mail.outbox) == 4
    for message in mail.outbox:
        assert "simulated failure" in message.body
        assert_clean(message.body, values, "an error e-mail")
        for content, _ in message.alternatives:
            assert_clean(content, values, "an error e-mail (HTML)")


def report_of(call: Callable[[], Any], request: Any) -> list[str]:
    """The HTML and text reports Django would render for the failure of ``call``."""
    try:
        call()
    except Exception:  # noqa: BLE001 - the report of any failure is what is checked
        reporter = ExceptionReporter(request, *sys.exc_info())
        return [reporter.get_traceback_html(), reporter.get_traceback_text()]
    raise AssertionError("the call did not fail")


def use_then_fail(name: str) -> None:
    revealed = secret_reveal(name=name, purpose="run:x", actor=None)
    raise RuntimeError(f"provider refused {revealed}")


def test_no_value_or_key_in_the_report_of_an_error_raised_while_holding_them(
    make_secret: Callable, canary: Callable[[], str], vault_keys: Any, rf: Any
) -> None:
    # given
    values = [canary(), canary()]
    make_secret(name="held", value=values[0])
    make_secret(name="tampered", value=values[1])
    SecretVersion.objects.filter(secret__name="tampered").update(wrapped_dek=b"\0" * 60)
    # when: a caller fails while holding a revealed value; a reveal fails on a bad record
    reports = report_of(lambda: use_then_fail("held"), rf.get("/")) + report_of(
        lambda: secret_reveal(name="tampered", purpose="run:x", actor=None), rf.get("/")
    )
    # then
    assert "provider refused &lt;SecretValue ********&gt;" in reports[0]
    assert "SecretDecryptionError" in reports[2]
    for report in reports:
        assert_clean(report, values, "an exception report")
        for material in vault_keys.material():
            assert material not in report
