"""A small asyncio ARI client: REST over aiohttp, events over one WebSocket, with reconnect.

Why our own (see README): the Python ARI libraries are untyped, unmaintained or lack reconnect;
the service needs ~25 REST calls and ~20 event types, typed, with timeouts and resync on reconnect.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from cti.platform.ari.events import AriEvent, parse_event
from cti.platform.errors import (
    ChannelGone,
    TelephonyAuthError,
    TelephonyError,
    TelephonyTimeout,
    TelephonyUnavailable,
)
from cti.platform.log import get_logger
from cti.platform.settings import AriSettings

log = get_logger(__name__)

EventHandler = Callable[[AriEvent], Awaitable[None]]
ConnectHandler = Callable[[int], Awaitable[None]]
DisconnectHandler = Callable[[], Awaitable[None]]


# Half of a routed call's events are ChannelVarset (26: dialling, PJSIP, our own variables),
# and Dial six more; none of these is read, and parsing and dispatching them cost a fifth of
# the service's CPU at 20 calls/s, with Asterisk's own JSON encoding of each on top.
UNUSED_EVENT_TYPES = (
    "ChannelVarset", "ChannelConnectedLine", "ChannelDialplan", "ChannelCallerId",
    "ChannelUserevent", "ChannelToneDetected", "Dial",
)


# Asterisk's http.conf allows 100 sessions by default (`sessionlimit`): both lanes fit in it.
CONNECTIONS, URGENT_CONNECTIONS = 64, 24


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
        self._on_disconnect: DisconnectHandler | None = None
        token = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode()
        self._basic = f"Basic {token}"
        self._base = settings.url.rstrip("/") + "/"
        # aiohttp: about a fifth of httpx's CPU per request, which bounds calls per second.
        self._http: aiohttp.ClientSession | None = None
        # A lane of its own for the requests a caller's timing hangs on (a prompt after a
        # wait, a procedure's hang-up): under load Asterisk holds an `answer` for seconds
        # (chan_pjsip's serializer), the 64 connections fill with them, and a prompt due
        # after a 5 s wait queued behind them (p50 1.1 s at 300 calls: docs/sizing.md).
        self._urgent_http: aiohttp.ClientSession | None = None
        self._ws: ClientConnection | None = None
        self._stopping = False
        self.connected = asyncio.Event()
        self.generation = 0  # increments on every successful connect
        # Asked before every request that changes something on the PBX (not a GET): in a
        # cluster, whether this node still drives it (ActiveRole.may_drive); None: always.
        self.gate: Callable[[], Awaitable[bool]] | None = None

    def set_handlers(
        self, on_event: EventHandler, on_connect: ConnectHandler | None,
        on_disconnect: DisconnectHandler | None = None,
    ) -> None:
        """`on_disconnect`: after a connected socket was lost (not after a failed attempt)."""
        self._on_event = on_event
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect

    # ------------------------------------------------------------------ REST
    def _session(self, urgent: bool = False) -> aiohttp.ClientSession:
        # Made on first use: a ClientSession belongs to the running event loop.
        if urgent:
            if self._urgent_http is None or self._urgent_http.closed:
                self._urgent_http = self._new_session(URGENT_CONNECTIONS)
            return self._urgent_http
        if self._http is None or self._http.closed:
            self._http = self._new_session(CONNECTIONS)
        return self._http

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            headers={"Authorization": self._basic},
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout),
            connector=aiohttp.TCPConnector(limit=limit),
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
        urgent: bool = False,
    ) -> Any:
        """`urgent`: on the timed lane (prompts, playback stops, hang-ups), which the other
        requests' queue never delays."""
        body = await self.request_bytes(
            method, path, params=params, json_body=json_body, timeout=timeout, urgent=urgent
        )
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return body.decode(errors="replace")

    async def request_bytes(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
        urgent: bool = False,
    ) -> bytes:
        """The response body as it came (a recording's file), after the same error mapping."""
        clean: dict[str, str | int | float] = {}
        for k, v in (params or {}).items():
            if v is not None:
                clean[k] = ("true" if v else "false") if isinstance(v, bool) else v
        where = f"ARI {method} /{path.lstrip('/')}"
        if self.gate is not None and method != "GET" and not await self.gate():
            raise TelephonyUnavailable(
                f"{where} not sent: this node does not hold the active lease (another node "
                "drives the PBX)")
        try:
            for attempt in (1, 2):
                try:
                    async with self._session(urgent).request(
                        method, self._base + path.lstrip("/"), params=clean or None,
                        json=json_body,
                        timeout=aiohttp.ClientTimeout(
                            total=timeout or self.settings.request_timeout
                        ),
                    ) as resp:
                        status, body = resp.status, await resp.read()
                    break
                except aiohttp.ServerDisconnectedError:
                    # Asterisk closed an idle keep-alive connection as we reused it: the
                    # request never reached it, so sending it once more is safe.
                    if attempt == 2:
                        raise
        except TimeoutError:
            raise TelephonyTimeout(
                f"{where} did not answer within {timeout or self.settings.request_timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise TelephonyUnavailable(
                f"cannot reach ARI at {self.settings.url}: {exc.__class__.__name__}: {exc}"
            ) from None
        if status == 401:
            raise TelephonyAuthError(
                f"ARI at {self.settings.url} rejected user {self.settings.username!r} "
                "(check ari.username / ari.password)"
            )
        if status == 404:
            raise ChannelGone(f"{where}: {_reason(body)}")
        if status >= 400:
            raise TelephonyError(f"{where} failed with {status}: {_reason(body)}")
        return body

    # ---------------------------------------------------------------- events
    async def run(self) -> None:
        """Keep the event WebSocket connected until `close()`; never returns otherwise."""
        delay = self.settings.reconnect_initial
        url = _ws_url(self.settings.url, self.settings.app)
        while not self._stopping:
            try:
                async with connect(
                    url,
                    additional_headers={"Authorization": self._basic},
                    open_timeout=self.settings.request_timeout,
                    ping_interval=5,
                    ping_timeout=5,
                    max_size=2**22,
                ) as ws:
                    self._ws = ws
                    self.generation += 1
                    delay = self.settings.reconnect_initial
                    log.info("ari.connected", url=url, generation=self.generation)
                    await self._filter_events()
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
                was_connected = self.connected.is_set()
                self.connected.clear()
            if self._stopping:
                break
            if was_connected and self._on_disconnect is not None:
                try:
                    await self._on_disconnect()
                except Exception:  # the reconnect loop must go on whatever a handler does
                    log.exception("ari.disconnect_handler_failed")
            # jitter avoids every service instance hammering a restarting Asterisk at once
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, self.settings.reconnect_max)

    async def _filter_events(self) -> None:
        """Ask Asterisk not to send event types nobody here reads (Asterisk 13.26/16.3+)."""
        body = {"disallowed": [{"type": t} for t in UNUSED_EVENT_TYPES]}
        try:
            await self.request(
                "PUT", f"applications/{self.settings.app}/eventFilter", json_body=body
            )
        except TelephonyError as exc:  # an older Asterisk: every event comes, and is ignored
            log.warning("ari.event_filter_unavailable", error=exc.message)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                data = json.loads(raw)
            except ValueError:
                log.warning("ari.bad_frame", size=len(raw))
                continue
            if isinstance(data, dict):
                data["pbx"] = self.settings.id  # which Asterisk, for a process driving several
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
            try:
                await self._ws.close()
            except Exception as exc:  # closing anyway: note it, nothing to recover
                log.debug("ari.ws_close_failed", error=f"{exc.__class__.__name__}: {exc}")
        for session in (self._http, self._urgent_http):
            if session is not None:
                await session.close()


def _reason(body: bytes) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "message" in data:
            return str(data["message"])
    except ValueError:
        pass
    return body.decode(errors="replace").strip()[:200] or "no reason given"


async def probe(settings: AriSettings) -> str:
    """Check URL and credentials; return the Asterisk version or raise a Telephony* error."""
    client = AriClient(settings)
    try:
        info = await client.request("GET", "asterisk/info")
        return str(info.get("system", {}).get("version", "unknown"))
    finally:
        await client.close()
