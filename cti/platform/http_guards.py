"""App-wide HTTP guards, installed on the app by `install_http_guards(app, settings)`:

- request bodies are bounded (`http.max_body_bytes`): 413 from the Content-Length, or as soon as
  a streamed (chunked) body passes the limit, before it is read whole;
- JSON bodies are parsed strictly: NaN, Infinity and numbers that overflow to infinity (1e999)
  are not JSON (RFC 8259) and answer 422, whatever the route;
- a 422 never echoes the request back at length: each error's input and texts are cut, and
  the number of errors is capped;
- every response carries a Content-Security-Policy and the other browser hardening headers;
- /metrics needs `Authorization: Bearer <http.metrics_token>` when that is set.

Also the HTTP vocabulary shared by the features' routes: the error bodies (`ErrorOut`, and
`error_responses` to declare them in the OpenAPI document) and bounded ids (`IdPath`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cti.platform.log import get_logger
from cti.platform.settings import HttpSettings

log = get_logger(__name__)

# Our database ids are INTEGER columns: 64-bit on SQLite but 32-bit on PostgreSQL. A number
# outside 1..2**31-1 is no id of ours on either backend: 422 here, never a driver's overflow
# (500) below. Ids in the range that do not exist are 404.
MAX_ID = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdField = Annotated[int, Field(ge=1, le=MAX_ID)]
# Call ids (the caller's Asterisk channel id, "1733012345.42") and agent ids are stored as
# VARCHAR(64).
MAX_KEY = 64
CallIdPath = Annotated[str, Path(min_length=1, max_length=MAX_KEY)]
AgentIdPath = Annotated[str, Path(min_length=1, max_length=MAX_KEY)]
# A time as the services write it (datetime.isoformat(), "2026-01-05T09:30:00+00:00"), kept
# as that text in answers and shown as a date-time in the OpenAPI document.
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]

# What a 422 may echo back: each text this long at most, this many errors at most.
MAX_ECHO_CHARS = 200
MAX_ERRORS = 20
MAX_CTX_ITEMS = 5
MAX_LOC_ITEMS = 10

# The pages (agent_ui) load their scripts, styles and JsSIP from this origin and talk to the
# API and the desk socket here; the softphone's SIP socket goes to the PBX (another origin:
# ws:/wss:); the supervisor page plays voicemails from blob: URLs, and the reports page shows
# the report's chart images (fetched with the bearer token) from blob: URLs.
PAGE_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self' ws: wss:",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
# FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from their CDN and start them with an
# inline script (allowed by its hash, computed per response); ReDoc injects its styles and runs
# a worker from a blob: URL.
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_POLICY = "; ".join((
    "default-src 'self'",
    f"script-src 'self' {DOCS_CDN} {{hashes}}",
    f"style-src 'self' 'unsafe-inline' {DOCS_CDN} https://fonts.googleapis.com",
    "font-src 'self' https://fonts.gstatic.com",
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
    "worker-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)


# ----- error bodies -------------------------------------------------------------------------


class ErrorOut(BaseModel):
    """An error the service raises on purpose: a stable id and the reason."""

    error: str = Field(description="stable id, e.g. not_found, forbidden, service_unavailable")
    detail: str


class InvalidField(BaseModel):
    """One reason a request was refused (FastAPI's validation error, its input cut short)."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class InvalidRequestOut(BaseModel):
    detail: list[InvalidField]


_DESCRIPTIONS = {
    401: "Not logged in (no or bad bearer token)",
    403: "Logged in, but not allowed",
    404: "No such thing",
    409: "Not in the state this needs",
    413: "Request body too large",
    429: "Too many failed attempts: wait the Retry-After seconds",
    422: "The request is invalid",
    502: "The PBX refused or failed the operation",
    503: "The PBX (or a service this needs) is not available",
    504: "The PBX or the external CRM did not answer in time",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route or router: these error statuses with their bodies. A 422 is
    a validation error (FastAPI's shape) or one of ours (ConfigError's {error, detail})."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model: Any = InvalidRequestOut | ErrorOut if code == 422 else ErrorOut
        out[code] = {"model": model, "description": _DESCRIPTIONS[code]}
    return out


def _on_the_utc_time_line(t: datetime) -> datetime:
    if t.tzinfo is not None:
        try:
            t.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59-23:00 is past the last UTC instant
            raise ValueError("time out of range (past the last UTC instant)") from None
    return t


# A time query parameter the database can compare: one whose zone puts it past year 9999
# in UTC is a 422, not a 500 from the conversion deep in the storage layer.
QueryTime = Annotated[datetime, AfterValidator(_on_the_utc_time_line)]


def invalid(loc: tuple[str | int, ...], msg: str, kind: str, value: Any = None) -> Exception:
    """A 422 of the same shape as FastAPI's own, for checks a route makes itself."""
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": value}])


# ----- 422: bounded echo --------------------------------------------------------------------


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + "…"


def _bounded_input(value: Any) -> Any:
    """The input as is when its JSON is short; else the start of its JSON text."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return _cut(value)
    try:
        encoded = jsonable_encoder(value)
        text = json.dumps(encoded, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:  # not JSON-able: show its type only
        log.info("http.validation_input_not_json", kind=type(value).__name__, error=str(exc))
        return f"<{type(value).__name__}>"
    return encoded if len(text) <= MAX_ECHO_CHARS else _cut(text)


def _bounded_ctx(ctx: Any) -> dict[str, Any] | None:
    if not isinstance(ctx, dict):
        return None
    return {_cut(str(k)): _bounded_input(v if isinstance(v, int | float | bool) else str(v))
            for k, v in list(ctx.items())[:MAX_CTX_ITEMS]}


def bounded_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's validation errors, each with its input and texts cut to MAX_ECHO_CHARS, at most
    MAX_ERRORS of them (then one more saying how many were left out)."""
    out: list[dict[str, Any]] = []
    for err in errors[:MAX_ERRORS]:
        item: dict[str, Any] = dict(err) if isinstance(err, dict) else {"msg": str(err)}
        loc = item.get("loc", ())
        bounded: dict[str, Any] = {
            "type": _cut(str(item.get("type", "value_error"))),
            "loc": [p if isinstance(p, int) else _cut(str(p)) for p in list(loc)[:MAX_LOC_ITEMS]],
            "msg": _cut(str(item.get("msg", ""))),
        }
        if "input" in item:
            bounded["input"] = _bounded_input(item["input"])
        ctx = _bounded_ctx(item.get("ctx"))
        if ctx is not None:
            bounded["ctx"] = ctx
        out.append(bounded)
    if len(errors) > MAX_ERRORS:
        out.append({"type": "too_many_errors", "loc": [],
                    "msg": f"{len(errors) - MAX_ERRORS} more errors not shown"})
    return out


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": bounded_errors(errors)}, status_code=422)


# ----- body size --------------------------------------------------------------------------


class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` when a streamed body passes the limit. An HTTPException, so the
    route's body parsing lets it through (FastAPI turns other read errors into 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")
        self.limit = limit


def _too_large(limit: int) -> dict[str, str]:
    return {"error": "body_too_large", "detail": f"request body exceeds {limit} bytes"}


def _too_large_body(limit: int) -> bytes:
    return json.dumps(_too_large(limit)).encode()


async def _body_too_large(_request: Request, exc: Exception) -> JSONResponse:
    limit = exc.limit if isinstance(exc, BodyTooLarge) else 0
    # the rest of the body is left unread: the connection closes after this answer
    return JSONResponse(_too_large(limit), status_code=413, headers={"Connection": "close"})


async def _send_json(send: Send, status: int, body: bytes,
                     extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *extra,
    ]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a body over `limit` bytes: at once from its Content-Length, else counted as the
    app reads it (chunked uploads), without reading it whole first."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                body = json.dumps({"error": "bad_request", "detail": "bad Content-Length"})
                await _send_json(send, 400, body.encode())
                return
            if int(declared) > self.limit:
                await _send_json(send, 413, _too_large_body(self.limit),
                                 [(b"connection", b"close")])
                return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # read outside a route (by a middleware): answer here, unless an answer has begun
            if started:
                raise
            await _send_json(send, 413, _too_large_body(self.limit), [(b"connection", b"close")])


# ----- strict JSON ------------------------------------------------------------------------


class NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise NotJson(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NotJson(f"number {_cut(text)} is out of range")
    return value


def json_problem(body: bytes, *, declared: bool) -> tuple[tuple[str | int, ...], str] | None:
    """Where and why `body` is not strict JSON, or None when it is. A body declared JSON (by
    its Content-Type) must parse: malformed, not UTF-8, nested past the parser, digits past
    Python's limit — all 422 here (FastAPI would answer some of them 400). A body without a
    type is only refused for non-finite numbers (it may be something else, e.g. a CSV)."""
    try:
        json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except NotJson as exc:
        return ("body",), str(exc)
    except json.JSONDecodeError as exc:
        return (("body", exc.pos), exc.msg) if declared else None
    except UnicodeDecodeError as exc:
        return (("body", exc.start), "not UTF-8") if declared else None
    except RecursionError:
        return (("body",), "nested too deeply") if declared else None
    except ValueError as exc:  # e.g. an integer of more digits than sys.get_int_max_str_digits
        return (("body",), _cut(str(exc))) if declared else None
    return None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


class StrictJson:
    """422 for a JSON body that is not strict JSON: NaN/Infinity (Python's json module, which
    Starlette uses, accepts them) and whatever does not parse. Only JSON bodies (and untyped
    ones) are read here; the BodyLimit outside bounds them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type = Headers(scope=scope).get("content-type")
        if content_type is not None and not _is_json(content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = json_problem(body, declared=content_type is not None) if body else None
        if problem is not None:
            loc, reason = problem
            detail = bounded_errors([{"type": "json_invalid", "loc": loc,
                                      "msg": "JSON decode error", "input": {},
                                      "ctx": {"error": reason}}])
            await _send_json(send, 422, json.dumps({"detail": detail}).encode())
            return
        whole: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


# ----- /metrics token ---------------------------------------------------------------------


class MetricsToken:
    """GET /metrics with `Authorization: Bearer <token>` only (401 otherwise)."""

    def __init__(self, app: ASGIApp, token: str, path: str = "/metrics") -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == self.path:
            given = Headers(scope=scope).get("authorization", "").encode()
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "unauthorized",
                                   "detail": "metrics need the bearer token (http.metrics_token)"})
                await _send_json(send, 401, body.encode(), [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


# ----- security headers -------------------------------------------------------------------


def _script_hashes(html: bytes) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.finditer(html)
    )


class SecurityHeaders:
    """CSP, nosniff, no-referrer, no framing, on every HTTP response (a route's own values win).
    The interactive API docs get a policy of their own (see DOCS_POLICY)."""

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str]) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.docs_paths:
            await self._docs(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _add_headers(message.get("headers", []), PAGE_POLICY)
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the (small) docs page to allow exactly its inline scripts by hash."""
        start: Message | None = None
        body: list[bytes] = []

        async def held(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
            if start is None:
                await send(message)
                return
            html = b"".join(body)
            policy = DOCS_POLICY.format(hashes=_script_hashes(html))
            start["headers"] = _add_headers(start.get("headers", []), policy)
            await send(start)
            await send({"type": "http.response.body", "body": html})

        await self.app(scope, receive, held)


def _add_headers(raw: Any, policy: str) -> list[tuple[bytes, bytes]]:
    headers = [(bytes(k), bytes(v)) for k, v in raw]
    present = {k.lower() for k, _ in headers}
    wanted = ((b"content-security-policy", policy.encode()), *COMMON_HEADERS)
    headers.extend((k, v) for k, v in wanted if k not in present)
    return headers


# ----- installing -------------------------------------------------------------------------


def install_http_guards(app: FastAPI, settings: HttpSettings) -> None:
    """Put the guards on `app` (before it serves its first request)."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    # add_middleware puts each one outside the ones before it: the request meets them from
    # the last to the first (headers on every answer, then the token, the size, the JSON).
    app.add_middleware(StrictJson)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.metrics_token:
        app.add_middleware(MetricsToken, token=settings.metrics_token)
    docs = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    app.add_middleware(SecurityHeaders, docs_paths=frozenset(p for p in docs if p))
