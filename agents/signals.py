"""Signals other apps listen to, so that agents imports none of them (DESIGN section 2)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that moves a run to a terminal status, with ``run_id`` and
# ``event`` (the terminal RunEvent). A receiver that writes rows writes them atomically
# with the status; side effects belong in ``transaction.on_commit``.
run_finished = Signal()
