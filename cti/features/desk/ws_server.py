"""How uvicorn serves the desk socket: its message size cap, and UTF-8 errors answered properly.

uvicorn's websockets protocol decodes text messages itself; on bytes that are not UTF-8 it logs
a traceback at ERROR and closes with 1007 and no reason. This subclass checks first and closes
with 1007 and a reason the page can show, logged as one warning line: a client's bad input is
not a server fault.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from cti.features.auth.settings import AuthSettings
from cti.platform.log import get_logger

log = get_logger(__name__)

WS_INVALID_PAYLOAD = 1007


class DeskWebSocketProtocol(WebSocketsSansIOProtocol):
    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError as exc:
                log.warning("ws.invalid_utf8", client=self.client, byte=exc.start)
                self.frames = []
                self.conn.send_close(WS_INVALID_PAYLOAD, f"invalid UTF-8 at byte {exc.start}")
                self.handle_parser_exception()  # tells the app, sends the close, ends it
                return
        super().send_receive_event_to_app()


def uvicorn_ws_options(auth: AuthSettings) -> dict[str, Any]:
    """uvicorn.Config options: this protocol, and messages capped at the desk's limit by the
    protocol itself (1009 with a reason), so a big message is refused before it is buffered
    (uvicorn's default cap is 16 MiB)."""
    return {"ws": DeskWebSocketProtocol, "ws_max_size": auth.ws_max_message_bytes}
