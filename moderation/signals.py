"""Signals other apps listen to, so that moderation imports none of them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after flags are stored, with ``flags`` (the Flag rows), inside the caller's
# transaction if there is one.
flags_recorded = Signal()
