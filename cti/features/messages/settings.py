"""Settings of the follow-up messages (`messages:` in the settings file; docs/messages.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

_REPO = Path(__file__).resolve().parents[3]


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    from_address: str = Field(min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    # `starttls`: upgrade a plain connection (port 587); `tls`: TLS from the start (port 465).
    security: str = Field(default="none", pattern=r"^(none|starttls|tls)$")
    timeout_s: float = Field(default=10, gt=0, le=120)


class SmsGatewaySettings(BaseModel):
    """A generic HTTP SMS gateway: each message is a JSON POST of
    `{"to": "+86...", "text": "...", "sender": sender_id}` to `url`, authenticated by a bearer
    token or basic auth; any 2xx is accepted. 4xx (other than 408/429) refuses the message for
    good, anything else is tried again."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    token: str | None = None
    username: str | None = None
    password: str | None = None
    sender_id: str | None = Field(default=None, max_length=32)
    timeout_s: float = Field(default=10, gt=0, le=120)


class RetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_s: float = Field(default=30, gt=0, le=3600)
    factor: float = Field(default=2, ge=1, le=10)
    longest_s: float = Field(default=1800, gt=0, le=86400)
    give_up_after_h: float = Field(default=72, gt=0, le=24 * 30)


class MessagesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    templates_file: Path = _REPO / "config" / "messages.yaml"
    smtp: SmtpSettings | None = None  # None: no e-mail is sent (nor queued)
    sms: SmsGatewaySettings | None = None  # None: no SMS
    # Escalation target (config/work_orders.yaml `escalation_targets`) -> who gets the e-mail.
    escalation_emails: dict[str, list[str]] = Field(default_factory=dict)
    retry: RetrySettings = RetrySettings()
