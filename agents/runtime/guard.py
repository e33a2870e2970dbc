"""Moderation inside one run: input before the first model call, tool output before the
model sees it, and the model's output while it streams (docs/moderation.md).

``Guard`` is a thin layer over ``moderation.runtime.RunModeration`` that turns its findings
into ``moderation.flagged`` events and a block into ``RunBlocked``. Without a policy every
method passes text through unchanged.
"""

from __future__ import annotations

from typing import Any

from agents.runtime.events import EventEmitter


class RunBlocked(Exception):
    """A ``block`` rule matched: the run ends ``blocked``."""

    def __init__(self, stage: str, rule: str) -> None:
        super().__init__(f"Blocked by moderation rule {rule!r} at stage {stage!r}.")
        self.stage = stage
        self.rule = rule


class Guard:
    def __init__(self, moderation: Any | None, emitter: EventEmitter) -> None:
        self.moderation = moderation
        self.emitter = emitter
        self.stream: Any | None = None
        self.part: list[str] = []  # what was released of the current text part
        self.parts: list[str] = []  # released text of every finished part, in order

    @property
    def active(self) -> bool:
        return self.moderation is not None

    @property
    def _moderation(self) -> Any:
        """The run's moderation; only called once ``active`` said there is one."""
        assert self.moderation is not None
        return self.moderation

    async def _settle(self, source: Any, stage: str | None = None) -> None:
        for payload in await self._moderation.record(source, stage):
            self.emitter.emit("moderation.flagged", payload)

    async def check_input(self, text: str) -> str:
        """The prompt the model may see; raises RunBlocked before any model request."""
        if not self.active:
            return text
        outcome = await self._moderation.check_input(text)
        await self._settle(outcome)
        if outcome.blocked is not None:
            raise RunBlocked("input", outcome.blocked.rule_name)
        text_out: str = outcome.text
        return text_out

    async def check_tool_output(self, tool: str, text: str) -> str:
        if not self.active:
            return text
        outcome = await self._moderation.check_tool_output(tool, text)
        await self._settle(outcome)
        if outcome.blocked is not None:
            raise RunBlocked("tool_output", outcome.blocked.rule_name)
        text_out: str = outcome.text
        return text_out

    def start_part(self) -> None:
        self.part = []
        self.stream = self._moderation.output_stream() if self.active else None

    async def feed(self, delta: str) -> str:
        """Text of the current part that is safe to release now."""
        if self.stream is None:
            self.part.append(delta)
            return delta
        released: str = self.stream.feed(delta)
        self.part.append(released)
        if self.stream.blocked is not None:
            await self._settle(self.stream)
            raise RunBlocked("output", self.stream.blocked.rule_name)
        return released

    async def finish_part(self) -> tuple[str, str]:
        """(the rest to release, the part's whole released text) at the end of a part."""
        rest = ""
        if self.stream is not None:
            rest = self.stream.finish()
            self.part.append(rest)
            if self.stream.blocked is not None:
                await self._settle(self.stream)
                raise RunBlocked("output", self.stream.blocked.rule_name)
            await self._settle(self.stream)
        content = "".join(self.part)
        self.parts.append(content)
        self.stream = None
        return rest, content

    def redact_messages(self, messages: list[Any]) -> list[Any]:
        """Stored thread history gets the released text, never what moderation held back."""
        if not self.active:
            return messages
        released = iter(self.parts)
        for message in messages:
            if message.get("kind") != "response":
                continue
            for part in message.get("parts", []):
                if part.get("part_kind") == "text":
                    part["content"] = next(released, "")
        return messages
