"""Validation of chat-completion and response requests into what a run needs.

OpenAI's APIs take many parameters. Those the platform honours are checked here (types,
ranges, the agent's limits); those it cannot honour are accepted only with the value that
asks for nothing (``n: 1``, ``tools: []``, ``logprobs: false`` ...), so that clients which
always send their defaults keep working; anything else is a 400 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.models import Agent
from openai_api.errors import invalid_param, unsupported_param

MAX_STOP_SEQUENCES = 4
MAX_METADATA_PAIRS = 16
MAX_USER_CHARS = 256

Neutral = Callable[[Any], bool]


def _is(*values: Any) -> Neutral:
    return lambda v: v is None or v in values


def _empty(v: Any) -> bool:
    return v is None or v in ([], {})


_NO_TOOLS = "client-side tools are not supported; the agent's own tools run server-side"

# name -> (the values that ask for nothing, why anything else is refused)
CHAT_UNSUPPORTED: dict[str, tuple[Neutral, str]] = {
    "n": (_is(1), "one choice per request (n > 1 would be several runs)"),
    "tools": (_empty, _NO_TOOLS),
    "functions": (_empty, _NO_TOOLS),
    "tool_choice": (_is("none", "auto"), _NO_TOOLS),
    "function_call": (_is("none", "auto"), _NO_TOOLS),
    "parallel_tool_calls": (lambda v: True, ""),
    "logprobs": (_is(False), "log probabilities are not available"),
    "top_logprobs": (_is(0), "log probabilities are not available"),
    "presence_penalty": (_is(0), "set it in the agent's model settings"),
    "frequency_penalty": (_is(0), "set it in the agent's model settings"),
    "logit_bias": (_empty, "set it in the agent's model settings"),
    "seed": (_is(), "set it in the agent's model settings"),
    "response_format": (
        lambda v: v is None or v == {"type": "text"},
        "only text output (the agent decides its output)",
    ),
    "modalities": (lambda v: v is None or v == ["text"], "only text output"),
    "audio": (_is(), "only text output"),
    "prediction": (_is(), "predicted outputs are not available"),
    "reasoning_effort": (_is(), "set it in the agent's model settings"),
    "verbosity": (_is(), "set it in the agent's model settings"),
    "web_search_options": (_is(), "give the agent a tool instead"),
    "service_tier": (_is("auto", "default"), "the agent's provider decides"),
    # Every run is stored; a hint about caching or store changes nothing we could honour.
    "store": (lambda v: True, ""),
    "prompt_cache_key": (lambda v: True, ""),
    "safety_identifier": (lambda v: v is None or isinstance(v, str), "a string"),
}
CHAT_HONOURED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "user",
        "metadata",
    }
)

RESPONSES_UNSUPPORTED: dict[str, tuple[Neutral, str]] = {
    "tools": (_empty, _NO_TOOLS),
    "tool_choice": (_is("none", "auto"), _NO_TOOLS),
    "parallel_tool_calls": (lambda v: True, ""),
    "text": (
        lambda v: v is None or v in ({}, {"format": {"type": "text"}}),
        "only text output (the agent decides its output)",
    ),
    "truncation": (_is("disabled"), "the thread's history is cut by the platform"),
    "reasoning": (_empty, "set it in the agent's model settings"),
    "include": (_empty, "no extra output items are available"),
    "top_logprobs": (_is(0), "log probabilities are not available"),
    "service_tier": (_is("auto", "default"), "the agent's provider decides"),
    "prompt": (_is(), "prompt templates are not available; use instructions"),
    "conversation": (_is(), "use previous_response_id"),
    "store": (_is(True), "every response is stored as a run"),
    "prompt_cache_key": (lambda v: True, ""),
    "safety_identifier": (lambda v: v is None or isinstance(v, str), "a string"),
    "stream_options": (lambda v: True, ""),
}
RESPONSES_HONOURED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "stream",
        "background",
        "max_output_tokens",
        "max_tool_calls",
        "temperature",
        "top_p",
        "user",
        "metadata",
    }
)


@dataclass
class RunRequest:
    """One OpenAI request, as the run it becomes."""

    model: str
    input: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    instructions: str = ""
    model_settings: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    previous_response_id: str | None = None
    background: bool = False


def check_known(
    body: dict[str, Any], honoured: frozenset[str], unsupported: dict[str, tuple[Neutral, str]]
) -> None:
    for name, value in body.items():
        if name in honoured:
            continue
        if name in unsupported:
            neutral, why = unsupported[name]
            if not neutral(value):
                raise unsupported_param(name, why)
            continue
        raise invalid_param(
            name, f"Unrecognized request argument supplied: {name}", code="unknown_parameter"
        )


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_param("model", "'model' is required: the slug of an agent (GET /v1/models).")
    return model


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid_param(name, f"'{name}' must be a boolean.", code="invalid_type")
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_param(name, f"'{name}' must be a number.", code="invalid_type")
    if not low <= value <= high:
        raise invalid_param(name, f"'{name}' must be between {low} and {high}.")
    return float(value)


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_param(name, f"'{name}' must be a positive integer.", code="invalid_type")
    return value


def _client(body: dict[str, Any]) -> dict[str, Any]:
    """``user`` and ``metadata``: remembered with the run (its config), never sent on."""
    client: dict[str, Any] = {}
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str) or len(user) > MAX_USER_CHARS:
            raise invalid_param("user", f"'user' must be a string of at most {MAX_USER_CHARS}.")
        client["user"] = user
    metadata = body.get("metadata")
    if metadata is not None:
        ok = isinstance(metadata, dict) and len(metadata) <= MAX_METADATA_PAIRS
        ok = ok and all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
            for k, v in metadata.items()
        )
        if not ok:
            raise invalid_param(
                "metadata",
                "'metadata' must be an object of at most 16 string values "
                "(keys up to 64 characters, values up to 512).",
            )
        client["metadata"] = metadata
    return client


def _sampling(body: dict[str, Any], settings: dict[str, Any]) -> None:
    temperature = _number(body, "temperature", 0, 2)
    if temperature is not None:
        settings["temperature"] = temperature
    top_p = _number(body, "top_p", 0, 1)
    if top_p is not None:
        settings["top_p"] = top_p


def output_cap(
    agent: Agent, param: str, wanted: int | None, settings: dict[str, Any], limits: dict[str, int]
) -> None:
    """A client's output-token cap, checked against the agent's: it may lower it, never
    raise it. It caps each model request and, as the run's ``max_output_tokens`` limit,
    the run as a whole (a run stopped by it ends with ``finish_reason: "length"``)."""
    if wanted is None:
        return
    caps = [c for c in (agent.model_settings.get("max_tokens"), agent.max_output_tokens) if c]
    if caps and wanted > min(caps):
        raise invalid_param(
            param, f"'{param}' is {wanted}; this model allows at most {min(caps)} output tokens."
        )
    settings["max_tokens"] = wanted
    limits["max_output_tokens"] = wanted


def text_of(content: Any, param: str, part_types: tuple[str, ...]) -> str:
    """A message's text: a string, or a list of text parts (joined)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid_param(param, f"'{param}' must be a string or a list of text parts.")
    texts: list[str] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in part_types:
            raise unsupported_param(
                f"{param}[{i}].type", f"only text parts ({', '.join(part_types)})"
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid_param(f"{param}[{i}].text", "A text part needs a string 'text'.")
        texts.append(text)
    return "\n".join(texts)


def split_conversation(
    turns: list[tuple[str, str]], param: str
) -> tuple[str, list[dict[str, str]], str]:
    """(input, history, extra instructions) from (role, text) turns.

    The last turn must be the user's: it is the run's input. System and developer turns,
    wherever they are, become instructions added after the agent's. Consecutive turns of
    one role are joined, as a model sees them anyway.
    """
    system = [text for role, text in turns if role in {"system", "developer"}]
    chat = [(role, text) for role, text in turns if role in {"user", "assistant"}]
    if not chat or chat[-1][0] != "user":
        raise invalid_param(
            param, f"The last message in '{param}' must be the user's: it is the run's input."
        )
    history: list[dict[str, str]] = []
    for role, text in chat[:-1]:
        if history and history[-1]["role"] == role:
            history[-1]["content"] += "\n\n" + text
        else:
            history.append({"role": role, "content": text})
    return chat[-1][1], history, "\n\n".join(t for t in system if t)


def chat_request(
    body: dict[str, Any], agent_for: Callable[[str], Agent]
) -> tuple[RunRequest, Agent]:
    """A ``POST /v1/chat/completions`` body, validated; ``agent_for`` resolves ``model``."""
    model = model_of(body)
    check_known(body, CHAT_HONOURED, CHAT_UNSUPPORTED)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_param("messages", "'messages' must be a non-empty list.")
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_param(f"messages[{i}]", "Each message must be an object.")
        role = message.get("role")
        if (
            role in {"tool", "function"}
            or message.get("tool_calls")
            or message.get("function_call")
        ):
            raise unsupported_param(f"messages[{i}].role", _NO_TOOLS)
        if role not in {"system", "developer", "user", "assistant"}:
            raise invalid_param(
                f"messages[{i}].role", "role must be system, developer, user or assistant."
            )
        turns.append((role, text_of(message.get("content"), f"messages[{i}].content", ("text",))))
    text, history, instructions = split_conversation(turns, "messages")
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise invalid_param(
                "stream_options", "'stream_options' is only allowed with 'stream': true."
            )
        if not isinstance(options, dict) or not isinstance(
            options.get("include_usage", False), bool
        ):
            raise invalid_param(
                "stream_options", "'stream_options.include_usage' must be a boolean."
            )
        include_usage = bool(options.get("include_usage", False))
    agent = agent_for(model)
    request = RunRequest(
        model=model,
        input=text,
        history=history,
        instructions=instructions,
        stream=stream,
        include_usage=include_usage,
        client=_client(body),
    )
    _sampling(body, request.model_settings)
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if (
            not isinstance(stops, list)
            or len(stops) > MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and s for s in stops)
        ):
            raise invalid_param("stop", "'stop' must be a string or a list of up to 4 strings.")
        request.model_settings["stop_sequences"] = stops
    for name in ("max_tokens", "max_completion_tokens"):
        _positive_int(body, name)
    cap_param = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    output_cap(agent, cap_param, body.get(cap_param), request.model_settings, request.limits)
    return request, agent


def response_input(value: Any) -> list[tuple[str, str]]:
    """The Responses ``input``: a string, or a list of message items."""
    if isinstance(value, str):
        return [("user", value)]
    if not isinstance(value, list) or not value:
        raise invalid_param("input", "'input' must be a string or a non-empty list of messages.")
    turns: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid_param(f"input[{i}]", "Each input item must be an object.")
        if item.get("type", "message") != "message":
            raise unsupported_param(f"input[{i}].type", "only message items; " + _NO_TOOLS)
        role = item.get("role")
        if role not in {"system", "developer", "user", "assistant"}:
            raise invalid_param(
                f"input[{i}].role", "role must be system, developer, user or assistant."
            )
        turns.append(
            (
                role,
                text_of(
                    item.get("content"),
                    f"input[{i}].content",
                    ("input_text", "output_text", "text"),
                ),
            )
        )
    return turns


def responses_request(
    body: dict[str, Any], agent_for: Callable[[str], Agent]
) -> tuple[RunRequest, Agent]:
    """A ``POST /v1/responses`` body, validated; ``agent_for`` resolves ``model``."""
    model = model_of(body)
    check_known(body, RESPONSES_HONOURED, RESPONSES_UNSUPPORTED)
    if "input" not in body:
        raise invalid_param("input", "'input' is required.")
    text, history, system = split_conversation(response_input(body["input"]), "input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_param("instructions", "'instructions' must be a string.")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise invalid_param("previous_response_id", "'previous_response_id' must be a string.")
    stream, background = _bool(body, "stream"), _bool(body, "background")
    if stream and background:
        raise unsupported_param(
            "background", "a background response is not streamed; poll GET /v1/responses/<id>"
        )
    agent = agent_for(model)
    request = RunRequest(
        model=model,
        input=text,
        history=history,
        instructions="\n\n".join(t for t in (instructions or "", system) if t),
        stream=stream,
        background=background,
        previous_response_id=previous,
        client=_client(body),
    )
    _sampling(body, request.model_settings)
    output_cap(
        agent,
        "max_output_tokens",
        _positive_int(body, "max_output_tokens"),
        request.model_settings,
        request.limits,
    )
    max_tool_calls = _positive_int(body, "max_tool_calls")
    if max_tool_calls is not None:
        if max_tool_calls > agent.max_tool_calls:
            raise invalid_param(
                "max_tool_calls",
                f"'max_tool_calls' may not exceed the agent's {agent.max_tool_calls}.",
            )
        request.limits["max_tool_calls"] = max_tool_calls
    return request, agent
