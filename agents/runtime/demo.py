"""The ``demo`` provider: a deterministic, offline pydantic-ai FunctionModel.

- input with an arithmetic expression -> calls ``calculator``, answers with the result;
- input asking for the time -> calls ``current_time``, answers with it;
- anything else -> a deterministic answer that repeats every word of the input.

It streams word by word with ``DEMO_MODEL_DELAY_MS`` between words, so the whole product
(streaming, cancel, the live view) can be tried without an API key.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

# Two or more numbers joined by operators, optionally parenthesised: "12*7", "(3 + 4) ^ 2".
_EXPRESSION = re.compile(
    r"[\(\-\s]*\d+(?:\.\d+)?[\)\s]*(?:[-+*/%^×÷]{1,2}[\(\-\s]*\d+(?:\.\d+)?[\)\s]*)+"
)
_TIME_QUESTION = re.compile(r"\b(what time|current time|time is it|the time|date today)\b", re.I)
_ZONE = re.compile(r"\b([A-Z][A-Za-z_]+/[A-Z][A-Za-z_]+(?:/[A-Z][A-Za-z_]+)?)\b")


def find_expression(text: str) -> str | None:
    match = _EXPRESSION.search(text)
    return match.group(0).strip() if match else None


def plan_tool_call(prompt: str, available: set[str]) -> tuple[str, dict[str, Any]] | None:
    """Which tool the demo model calls for a prompt, if any."""
    expression = find_expression(prompt)
    if expression and "calculator" in available:
        return "calculator", {"expression": expression}
    if _TIME_QUESTION.search(prompt) and "current_time" in available:
        zone = _ZONE.search(prompt)
        return "current_time", ({"timezone": zone.group(1)} if zone else {})
    return None


def echo_answer(prompt: str) -> str:
    """A deterministic answer containing every word of the prompt, in order."""
    words = prompt.split()
    if not words:
        return "You sent an empty message."
    return f"You said {len(words)} words: " + " ".join(words) + " -- that is all I can say offline."


def answer_from_tool(part: ToolReturnPart) -> str:
    content = part.model_response_str()
    if part.outcome != "success":
        return f"The {part.tool_name} tool failed: {content}"
    if part.tool_name == "calculator":
        return f"The result is {content}."
    if part.tool_name == "current_time":
        try:
            iso = json.loads(content)["iso"]
        except (ValueError, KeyError, TypeError):
            iso = content
        return f"The current time is {iso}."
    return f"The {part.tool_name} tool returned: {content}"


def _last_prompt(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _tool_return(messages: list[ModelMessage]) -> ToolReturnPart | None:
    last = messages[-1] if messages else None
    if isinstance(last, ModelRequest):
        for part in last.parts:
            if isinstance(part, ToolReturnPart):
                return part
    return None


async def _words(text: str, delay_s: float) -> AsyncIterator[str]:
    words = text.split(" ")
    for i, word in enumerate(words):
        if delay_s:
            await asyncio.sleep(delay_s)
        yield word if i == len(words) - 1 else word + " "


async def demo_stream(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    delay_s = settings.DEMO_MODEL_DELAY_MS / 1000
    returned = _tool_return(messages)
    if returned is not None:
        async for word in _words(answer_from_tool(returned), delay_s):
            yield word
        return
    prompt = _last_prompt(messages)
    call = plan_tool_call(prompt, {t.name for t in info.function_tools})
    if call is not None:
        name, args = call
        if delay_s:
            await asyncio.sleep(delay_s)
        yield {0: DeltaToolCall(name=name, json_args=json.dumps(args), tool_call_id=f"call_{name}")}
        return
    async for word in _words(echo_answer(prompt), delay_s):
        yield word


def demo_model(model_name: str) -> FunctionModel:
    return FunctionModel(stream_function=demo_stream, model_name=model_name or "demo")
