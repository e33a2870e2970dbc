"""current_time: the current date and time, in UTC or an IANA time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field

from agents.tools.registry import ToolError, ToolSpec, register


class CurrentTimeArgs(BaseModel):
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="An IANA time zone such as 'Europe/Berlin'; UTC when omitted.",
    )


def now_in(zone_name: str | None) -> datetime:
    if not zone_name:
        return datetime.now(UTC)
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"Unknown time zone {zone_name!r}; use an IANA name.") from None
    return datetime.now(zone)


async def _run(args: CurrentTimeArgs) -> dict[str, str]:
    now = now_in(args.timezone)
    return {"iso": now.isoformat(timespec="seconds"), "timezone": args.timezone or "UTC"}


current_time = register(
    ToolSpec(
        name="current_time",
        description="Return the current date and time, optionally in an IANA time zone.",
        args_model=CurrentTimeArgs,
        run=_run,
        timeout_s=2.0,
        max_output_chars=200,
    )
)
