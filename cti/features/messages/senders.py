"""The two ways out: e-mail over SMTP (aiosmtplib) and SMS through an HTTP gateway (aiohttp).

Each `send` returns on success and raises `SendFailed` otherwise, saying whether trying again
can help (a server down, a timeout, a 4xx temporary SMTP reply, a 5xx or 429 from the gateway)
or not (a recipient refused for good, a 4xx from the gateway): the outbox retries the first kind
and marks the second failed at once.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import aiohttp
import aiosmtplib

from cti.features.messages.settings import SmsGatewaySettings, SmtpSettings


class SendFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Sender(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None:
        """Deliver one message; SendFailed when it was not accepted."""
        ...


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, to: str, subject: str, body: str) -> None:
        s = self.settings
        message = EmailMessage()
        message["From"] = s.from_address
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=s.from_address.split("@", 1)[1])
        message.set_content(body)  # UTF-8, so Chinese text goes as it is
        try:
            await aiosmtplib.send(
                message, hostname=s.host, port=s.port, username=s.username,
                password=s.password, use_tls=s.security == "tls",
                start_tls=s.security == "starttls",
                timeout=s.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise SendFailed(f"recipient refused: {exc}",
                             permanent=all(500 <= c < 600 for c in codes)) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SendFailed(f"SMTP {exc.code}: {exc.message}",
                             permanent=500 <= exc.code < 600) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendFailed(f"SMTP {s.host}:{s.port}: {type(exc).__name__}: {exc}") from None


class HttpSmsGateway:
    def __init__(self, settings: SmsGatewaySettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def send(self, to: str, subject: str, body: str) -> None:
        s = self.settings
        headers = {"Authorization": f"Bearer {s.token}"} if s.token else {}
        auth = aiohttp.BasicAuth(s.username, s.password or "") if s.username else None
        payload: dict[str, str] = {"to": to, "text": body}
        if s.sender_id:
            payload["sender"] = s.sender_id
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=s.timeout_s)
            )
        try:
            async with self._session.post(s.url, json=payload, headers=headers,
                                          auth=auth) as response:
                if 200 <= response.status < 300:
                    return
                text = (await response.text())[:200]
                permanent = 400 <= response.status < 500 and response.status not in (408, 429)
                raise SendFailed(f"SMS gateway {response.status}: {text}", permanent=permanent)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SendFailed(f"SMS gateway {s.url}: {type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
