"""The agents app's admin, one module per part: providers and the ledger, agents, runs,
threads and run quotas. Django's autodiscovery imports this package; importing the modules
registers their ModelAdmins."""

from __future__ import annotations

from agents.admin import agents, providers, quotas, runs  # noqa: F401
