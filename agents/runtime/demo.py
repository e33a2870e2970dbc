"""The ``demo`` provider: a deterministic, offline pydantic-ai FunctionModel.

- input with an arithmetic expression -> calls ``calculator``, answers with the result;
- input asking for the time -> calls ``current_time``, answers with it;
- "ask <agent>: <task>" with the ``delegate`` tool -> delegates the task to that agent;
- anything else -> a deterministic answer that repeats every word of the input.

Its usage is counted from the text it is sent (instructions, thread history, tool
results) and the text it writes, one token per word or punctuation mark, so prices,
budgets and the ledger show numbers that grow with the conversation.

It streams word by word with ``DEMO_MODEL_DELAY_MS`` between words, so the whole product
(streaming, cancel, the live view) can be tried without an API key.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from django.conf import settings
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.usage import RequestUsage

# Two or more numbers joined by operators, optionally parenthesised: "12*7", "(3 + 4) ^ 2".
_EXPRESSION = re.compile(
    r"[\(\-\s]*\d+(?:\.\d+)?[\)\s]*(?:[-+*/%^×÷]{1,2}[\(\-\s]*\d+(?:\.\d+)?[\)\s]*)+"
)
_TIME_QUESTION = re.compile(r"\b(what time|current time|time is it|the time|date today)\b", re.I)
_DELEGATION = re.compile(r"\bask ([a-z0-9][a-z0-9-]{0,62})\s*[:,]\s*(\S.*)", re.I | re.S)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_ZONE = re.compile(r"\b([A-Z][A-Za-z_]+/[A-Z][A-Za-z_]+(?:/[A-Z][A-Za-z_]+)?)\b")


def find_expression(text: str) -> str | None:
    match = _EXPRESSION.search(text)
    return match.group(0).strip() if match else None


def count_tokens(text: str) -> int:
    """One token per word or punctuation mark: a stand-in for a tokenizer."""
    return len(_TOKEN.findall(text))


def request_tokens(messages: list[ModelMessage]) -> int:
    """The input tokens of one request: everything the model is sent, history included."""
    total = 0
    for message in messages:
        if isinstance(message, ModelRequest):
            total += count_tokens(message.instructions or "")
            for part in message.parts:
                if isinstance(part, SystemPromptPart | UserPromptPart):
                    total += count_tokens(part.content if isinstance(part.content, str) else "")
                elif isinstance(part, ToolReturnPart):
                    total += count_tokens(part.model_response_str())
        elif isinstance(message, ModelResponse):
            for response_part in message.parts:
                if isinstance(response_part, TextPart):
                    total += count_tokens(response_part.content)
                elif isinstance(part, ToolCallPart):
                    total += count_tokens(part.tool_name) + count_tokens(part.args_as_json_str())
    return total


def plan_tool_call(prompt: str, available: set[str]) -> tuple[str, dict[str, Any]] | None:
    """Which tool the demo model calls for a prompt, if any."""
    delegation = _DELEGATION.search(prompt)
    if delegation and "delegate" in available:
        return "delegate", {"agent": delegation.group(1), "input": delegation.group(2).strip()}
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
    if part.tool_name == "delegate":
        try:
            answer = json.loads(content)["output"]
        except (ValueError, KeyError, TypeError):
            answer = content
        return f"My colleague answered: {answer}"
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


class DemoModel(FunctionModel):
    """FunctionModel with input usage counted from the request (pydantic-ai's streamed
    estimate is a fixed 50 tokens whatever was sent)."""

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], *args: Any, **kwargs: Any) -> Any:
        async with super().request_stream(messages, *args, **kwargs) as response:
            response._usage = RequestUsage(input_tokens=request_tokens(messages))
            yield response


def demo_model(model_name: str) -> FunctionModel:
    return DemoModel(stream_function=demo_stream, model_name=model_name or "demo")
