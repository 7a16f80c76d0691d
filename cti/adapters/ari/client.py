"""A small asyncio ARI client: REST over httpx, events over one WebSocket, with reconnect.

Why our own (see README): the Python ARI libraries are untyped, unmaintained or lack reconnect;
the service needs ~25 REST calls and ~20 event types, typed, with timeouts and resync on reconnect.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from cti.adapters.ari.events import AriEvent, parse_event
from cti.errors import (
    ChannelGone,
    TelephonyAuthError,
    TelephonyError,
    TelephonyTimeout,
    TelephonyUnavailable,
)
from cti.log import get_logger
from cti.settings import AriSettings

log = get_logger(__name__)

EventHandler = Callable[[AriEvent], Awaitable[None]]
ConnectHandler = Callable[[int], Awaitable[None]]


def _ws_url(base: str, app: str) -> str:
    parts = urlsplit(base.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = f"app={app}&subscribeAll=false"
    return urlunsplit((scheme, parts.netloc, parts.path + "/events", query, ""))


class AriClient:
    """REST calls and the Stasis event stream of one ARI application.

    `run()` keeps the WebSocket up: it reconnects with jittered exponential backoff and calls
    `on_connect(generation)` after every (re)connect so the service can resynchronise.
    """

    def __init__(
        self,
        settings: AriSettings,
        on_event: EventHandler | None = None,
        on_connect: ConnectHandler | None = None,
    ) -> None:
        self.settings = settings
        self._on_event = on_event
        self._on_connect = on_connect
        self._auth = (settings.username, settings.password)
        self._http = httpx.AsyncClient(
            base_url=settings.url.rstrip("/") + "/",
            auth=self._auth,
            timeout=settings.request_timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._ws: ClientConnection | None = None
        self._stopping = False
        self.connected = asyncio.Event()
        self.generation = 0  # increments on every successful connect

    def set_handlers(self, on_event: EventHandler, on_connect: ConnectHandler | None) -> None:
        self._on_event = on_event
        self._on_connect = on_connect

    # ------------------------------------------------------------------ REST
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        for k, v in clean.items():
            if isinstance(v, bool):
                clean[k] = "true" if v else "false"
        try:
            resp = await self._http.request(
                method,
                path.lstrip("/"),
                params=clean,
                json=json_body,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException:
            raise TelephonyTimeout(
                f"ARI {method} /{path.lstrip('/')} did not answer within "
                f"{timeout or self.settings.request_timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise TelephonyUnavailable(
                f"cannot reach ARI at {self.settings.url}: {exc.__class__.__name__}: {exc}"
            ) from None
        if resp.status_code == 401:
            raise TelephonyAuthError(
                f"ARI at {self.settings.url} rejected user {self.settings.username!r} "
                "(check ari.username / ari.password)"
            )
        if resp.status_code == 404:
            raise ChannelGone(f"ARI {method} /{path.lstrip('/')}: {_reason(resp)}")
        if resp.status_code >= 400:
            raise TelephonyError(
                f"ARI {method} /{path.lstrip('/')} failed with {resp.status_code}: {_reason(resp)}"
            )
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    # ---------------------------------------------------------------- events
    async def run(self) -> None:
        """Keep the event WebSocket connected until `close()`; never returns otherwise."""
        delay = self.settings.reconnect_initial
        url = _ws_url(self.settings.url, self.settings.app)
        token = base64.b64encode(f"{self._auth[0]}:{self._auth[1]}".encode()).decode()
        while not self._stopping:
            try:
                async with connect(
                    url,
                    additional_headers={"Authorization": f"Basic {token}"},
                    open_timeout=self.settings.request_timeout,
                    ping_interval=5,
                    ping_timeout=5,
                    max_size=2**22,
                ) as ws:
                    self._ws = ws
                    self.generation += 1
                    delay = self.settings.reconnect_initial
                    log.info("ari.connected", url=url, generation=self.generation)
                    # Resync before reading events: they queue on the socket meanwhile, and
                    # `connected` means "the registry matches the PBX".
                    if self._on_connect is not None:
                        await self._on_connect(self.generation)
                    self.connected.set()
                    await self._read(ws)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 401:
                    log.error("ari.auth_rejected", user=self.settings.username)
                else:
                    log.warning("ari.ws_rejected", status=status)
            except (OSError, ConnectionClosed, TimeoutError, InvalidURI) as exc:
                if not self._stopping:
                    log.warning("ari.disconnected", error=f"{exc.__class__.__name__}: {exc}")
            except websockets.exceptions.WebSocketException as exc:
                log.warning("ari.ws_error", error=str(exc))
            finally:
                self._ws = None
                self.connected.clear()
            if self._stopping:
                break
            # jitter avoids every service instance hammering a restarting Asterisk at once
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self.settings.reconnect_max)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                data = json.loads(raw)
            except ValueError:
                log.warning("ari.bad_frame", size=len(raw))
                continue
            event = parse_event(data)
            if self._on_event is not None:
                try:
                    await self._on_event(event)
                except Exception:  # one bad handler must not drop the socket
                    log.exception("ari.handler_failed", event_type=event.type)

    async def drop_connection(self) -> None:
        """Close the current WebSocket (tests and operators); `run()` reconnects."""
        if self._ws is not None:
            await self._ws.close()

    async def close(self) -> None:
        self._stopping = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        await self._http.aclose()


def _reason(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict) and "message" in body:
            return str(body["message"])
    except ValueError:
        pass
    return resp.text.strip()[:200] or resp.reason_phrase


async def probe(settings: AriSettings) -> str:
    """Check URL and credentials; return the Asterisk version or raise a Telephony* error."""
    client = AriClient(settings)
    try:
        info = await client.request("GET", "asterisk/info")
        return str(info.get("system", {}).get("version", "unknown"))
    finally:
        await client.close()
