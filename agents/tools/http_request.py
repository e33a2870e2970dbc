"""http_request: GET or POST to hosts the agent's operator allow-listed, through the SSRF-safe
client in ``core.safe_http``.

Per-agent configuration lives in ``Run.config["tool_config"]["http_request"]``::

    {"allowed_hosts": ["api.example.com", "*.example.org"],
     "auth_secret": "example-api-key",   # a vault secret name, or null
     "auth_header": "Authorization", "auth_scheme": "Bearer",
     "max_bytes": 100000, "timeout_s": 10}

The model chooses the method, URL, a few plain headers and a JSON body. It never sees or
sets credentials: the auth secret is revealed from the vault inside the call, sent as a
header, stripped on cross-origin redirects and scrubbed from what comes back.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agents.tools.registry import ToolContext, ToolError, ToolSpec, register
from agents.tools.utils import validation_message
from core.safe_http import SafeResponse, safe_request

MAX_URL_CHARS = 2_048
MAX_HEADERS = 20
MAX_HEADER_VALUE_CHARS = 1_024
MAX_JSON_BODY_CHARS = 64_000
MAX_BODY_CHARS = 16_000  # of the response body shown to the model; leaves room for the rest
MAX_CONFIG_BYTES = 5_000_000
MAX_CONFIG_TIMEOUT_S = 30.0
REDACTED = "[redacted]"

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")
# Headers the tool owns: credentials, routing and message framing. The model may not set
# them, in any letter case.
FORBIDDEN_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "expect",
        "accept-encoding",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
    }
)
FORBIDDEN_HEADER_PREFIXES = ("proxy-", "sec-")
TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv")


def _header_refusal(name: str, value: str) -> str | None:
    lowered = name.lower()
    if not _TOKEN.match(name):
        return f"{name[:64]!r} is not a valid header name"
    if lowered in FORBIDDEN_HEADERS or lowered.startswith(FORBIDDEN_HEADER_PREFIXES):
        return f"header {name!r} is set by the tool, not by the caller"
    if len(value) > MAX_HEADER_VALUE_CHARS or any(c in value for c in "\r\n\0"):
        return f"header {name!r} has an invalid or too long value"
    return None


class HttpRequestArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: Literal["GET", "POST"] = Field(default="GET", description="GET or POST.")
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="An absolute http(s) URL on one of the hosts this agent may call.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        description="Extra request headers such as Accept. Credentials are added by the tool.",
    )
    json_body: Any = Field(default=None, alias="json", description="A JSON body, for POST only.")

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            refusal = _header_refusal(name, value)
            if refusal:
                raise ValueError(refusal)
        return headers

    @model_validator(mode="after")
    def _body_only_for_post(self) -> HttpRequestArgs:
        if self.json_body is None:
            return self
        if self.method != "POST":
            raise ValueError("a JSON body is only sent with POST")
        if len(json.dumps(self.json_body, default=str)) > MAX_JSON_BODY_CHARS:
            raise ValueError(f"the JSON body is over {MAX_JSON_BODY_CHARS} characters")
        return self


class HttpRequestConfig(BaseModel):
    """The operator's per-agent settings (``tool_config["http_request"]``)."""

    model_config = ConfigDict(extra="forbid")

    allowed_hosts: list[str] = Field(default_factory=list, max_length=200)
    auth_secret: str | None = None
    auth_header: str = "Authorization"
    auth_scheme: str | None = "Bearer"
    max_bytes: int = Field(default=100_000, ge=1, le=MAX_CONFIG_BYTES)
    timeout_s: float = Field(default=10.0, gt=0, le=MAX_CONFIG_TIMEOUT_S)

    @field_validator("auth_header")
    @classmethod
    def _header_name(cls, name: str) -> str:
        if not _TOKEN.match(name) or name.lower() in ("host", "content-length"):
            raise ValueError(f"{name!r} cannot carry the auth secret")
        return name


def load_config(ctx: ToolContext) -> HttpRequestConfig:
    try:
        config = HttpRequestConfig.model_validate(dict(ctx.tool_config))
    except ValidationError as exc:
        # An operator mistake: the model sees a clear error and the run goes on.
        problem = validation_message(exc).removeprefix("Invalid arguments: ")
        raise ToolError(f"http_request is misconfigured for this agent: {problem}") from None
    if not config.allowed_hosts:
        raise ToolError("http_request has no allowed hosts configured for this agent.")
    return config


async def reveal_auth_value(ctx: ToolContext, config: HttpRequestConfig) -> str | None:
    """The auth header value, read from the vault now (at the point of use), or None."""
    if not config.auth_secret:
        return None
    if ctx.secret is None:
        raise ToolError("http_request needs its auth secret, but the run has no vault access.")
    try:
        secret = await ctx.secret(config.auth_secret)
    except Exception:  # noqa: BLE001
        # The vault is another component; whatever went wrong there becomes a tool error
        # (the run goes on) and its details, which might describe the secret, stay out.
        raise ToolError(f"The auth secret {config.auth_secret!r} is not available.") from None
    return f"{config.auth_scheme} {secret}" if config.auth_scheme else secret


def _scrub(text: str, secrets: list[str]) -> str:
    # An upstream that echoes request headers back (many debugging endpoints do) would
    # otherwise put the credential into the model's context, the run events and the logs.
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def render_response(response: SafeResponse, secrets: list[str]) -> dict[str, Any]:
    content_type = response.content_type
    if not response.content or any(t in content_type.lower() for t in TEXT_TYPES):
        body = response.text
    elif not content_type:
        body = response.text  # untyped: show it; undecodable bytes become U+FFFD
    else:
        body = f"[{len(response.content)} bytes of {content_type}, not shown]"
    truncated = response.truncated or len(body) > MAX_BODY_CHARS
    return {
        "status": response.status_code,
        "content_type": content_type,
        "url": _scrub(response.url, secrets),
        "truncated": truncated,
        "body": _scrub(body[:MAX_BODY_CHARS], secrets),
    }


async def run(args: HttpRequestArgs, ctx: ToolContext) -> dict[str, Any]:
    config = load_config(ctx)
    headers = dict(args.headers)
    if any(name.lower() == config.auth_header.lower() for name in headers):
        raise ToolError(f"Header {config.auth_header!r} is set by the tool, not by the caller.")
    auth_value = await reveal_auth_value(ctx, config)
    secrets: list[str] = []
    if auth_value is not None:
        headers[config.auth_header] = auth_value
        secrets = sorted({auth_value, auth_value.split(" ", 1)[-1]}, key=len, reverse=True)
    response = await safe_request(
        args.method,
        args.url,
        allowed_hosts=config.allowed_hosts,
        headers=headers,
        json=args.json_body,
        timeout_s=config.timeout_s,
        max_bytes=config.max_bytes,
        sensitive_headers=(config.auth_header,),
    )
    return render_response(response, secrets)


http_request = register(
    ToolSpec(
        name="http_request",
        description=(
            "Send an HTTP GET or POST request to an allowed host and return the status, "
            "content type, final URL and (possibly truncated) body."
        ),
        args_model=HttpRequestArgs,
        run=run,
        # Above the largest per-agent timeout_s: the request's own deadline fires first and
        # gives the clearer message.
        timeout_s=MAX_CONFIG_TIMEOUT_S + 5,
        max_output_chars=MAX_BODY_CHARS + 2_000,
        takes_context=True,
    )
)
