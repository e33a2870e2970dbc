"""Rules saved before the rule editor all had order 0: make each such policy's orders
sequential (0, 1, ...), keeping the order they ran in (by order, then id)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import migrations


def renumber(apps: Any, schema_editor: Any) -> None:
    rule_model = apps.get_model("moderation", "Rule")
    by_policy: dict[int, list[Any]] = defaultdict(list)
    for rule in rule_model.objects.order_by("policy_id", "order", "id"):
        by_policy[rule.policy_id].append(rule)
    for rules in by_policy.values():
        if len({r.order for r in rules}) == len(rules):
            continue
        for index, rule in enumerate(rules):
            rule.order = index
        rule_model.objects.bulk_update(rules, ["order"])


class Migration(migrations.Migration):
    dependencies = [("moderation", "0001_initial")]

    operations = [migrations.RunPython(renumber, migrations.RunPython.noop)]
