"""Standard Webhooks signatures (https://www.standardwebhooks.com), by its reference library."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret in the ``whsec_<base64>`` form receivers' libraries take."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signature_headers(
    *, message_id: str, timestamp: datetime, body: str, secrets_: Sequence[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers; one ``v1,...`` signature per secret (space
    separated), so a receiver holding either the old or the new secret accepts the message
    while a rotation overlaps."""
    signatures = [Webhook(s).sign(message_id, timestamp, body) for s in secrets_]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
