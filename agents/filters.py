"""Validated list filters (django-filter): a bad value is a 400 naming the parameter."""

from __future__ import annotations

from django_filters import rest_framework as filters

from agents.lifecycle import RunStatus
from agents.models import Agent, Run, Thread


class StrictFilterSet(filters.FilterSet):
    """A parameter given empty (``?thread=``) is a 400 naming it: django-filter would read
    it as "no filter" and answer with everything, which the schema calls invalid."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        blank = [name for name in self.filters if self.data.get(name, None) == ""]
        for name in blank:
            self.form.add_error(name, "This parameter may not be empty.")
        return valid and not blank


class RunFilter(StrictFilterSet):
    status = filters.ChoiceFilter(choices=RunStatus.choices, help_text="Only runs in this status.")
    agent = filters.ModelChoiceFilter(
        queryset=Agent.objects.all(),
        to_field_name="slug",
        help_text="Only runs of this agent (slug).",
    )
    thread = filters.UUIDFilter(field_name="thread_id", help_text="Only runs of this thread.")
    created_after = filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_before = filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )

    class Meta:
        model = Run
        fields = ["status", "agent", "thread", "created_after", "created_before"]


class ThreadFilter(StrictFilterSet):
    owner = filters.CharFilter(
        field_name="owner__username",
        help_text="Only this user's threads (username; needs agents.view_thread for others).",
    )
    agent = filters.ModelChoiceFilter(
        queryset=Agent.objects.all(), to_field_name="slug", help_text="Only this agent's threads."
    )

    class Meta:
        model = Thread
        fields = ["owner", "agent"]
