"""A standby node's API: every request goes on to the active node (docs/cluster.md, "Takeover").

The pages, their live sockets, `/health` and `/metrics` are served by whichever node the
browser or the monitor reached: the events arrive on every node over the shared stream. What
reads or changes the calls, the agents' states and the ACD is the active node's alone, so a
standby passes those requests on, unchanged, and returns the answer. While no node is active
(a takeover, a few seconds) the answer is 503 with `Retry-After` and the reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cti.platform.cluster.active import ActiveRole
from cti.platform.log import get_logger

log = get_logger(__name__)

FORWARDED_BY = b"x-cti-forwarded-by"
# Served by every node from what it has itself.
LOCAL_PREFIXES = ("/health", "/metrics", "/desk", "/docs", "/redoc", "/openapi.json")
# RFC 9110 §7.6.1 connection-specific fields, and the length (the body is sent whole).
_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
FORWARD_TIMEOUT_S = 30.0  # reports over long periods take a few seconds on the active node


def _forwardable(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k.lower() not in _HOP]


class ForwardToActive:
    """ASGI middleware: while this node is a standby, API requests are the active node's."""

    def __init__(self, app: ASGIApp, role: ActiveRole, client: httpx.AsyncClient) -> None:
        self.app = app
        self.role = role
        self.client = client  # the service's: closed when it stops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.role.state == "active"
            or scope["path"].startswith(LOCAL_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        if any(k.lower() == FORWARDED_BY for k, _ in headers):
            # Sent on by a node that took us for the active one: the lease moved meanwhile.
            await _unavailable(send, "this node is not the active node any more; retry")
            return
        active = await self.role.active()
        if active is None and self.role.lookup_error is not None:
            await _unavailable(send, "this standby cannot find the active node: Redis is "
                                     f"unreachable ({self.role.lookup_error}); retry, or use "
                                     "the active node's address")
            return
        if active is None or active.node_id == self.role.node_id:
            await _unavailable(send, "no node drives the PBX right now (a takeover is under "
                                     "way); retry in a moment")
            return
        body = await _read_body(receive)
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url = active.url.rstrip("/") + path.decode("latin-1") + (
            "?" + query.decode("latin-1") if query else "")
        client = scope.get("client")
        out_headers = [
            *_forwardable(headers),
            (FORWARDED_BY, self.role.node_id.encode()),
            (b"x-forwarded-for", (client[0] if client else "").encode()),
        ]
        try:
            response = await self.client.request(
                scope["method"], url, headers=out_headers, content=body)
        except httpx.HTTPError as exc:
            log.warning("cluster.forward_failed", url=url, error=str(exc) or type(exc).__name__)
            await _unavailable(send, f"the active node ({active.node_id}) did not answer; retry")
            return
        content = response.content
        reply = _forwardable(response.headers.raw)
        # httpx has already undone any content coding
        reply = [(k, v) for k, v in reply if k.lower() != b"content-encoding"]
        reply.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": reply})
        await send({"type": "http.response.body", "body": content})


def forward_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _unavailable(send: Send, detail: str) -> None:
    import json

    body = json.dumps({"error": "no_active_node", "detail": detail}).encode()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"retry-after", b"1"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
