"""Service settings: defaults < YAML config file < environment (prefix CTI_).

No instance is created at import time; `load_settings()` builds one when asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cti.domain.ivr.config import DetectionSettings, ProcedureSettings
from cti.features.auth.settings import AuthSettings
from cti.features.crm.external import ExternalCrmSettings
from cti.features.messages.settings import MessagesSettings
from cti.platform.errors import ConfigError
from cti.platform.event_loop import LoopKind

REPO_ROOT = Path(__file__).resolve().parents[2]


class AriSettings(BaseModel):
    """One Asterisk server's ARI. `id` names the PBX in the record (CallArrived, and the call
    ids: set the Asterisk's `systemname` to it, docs/cluster.md); a setting, never derived from
    the host, so a PBX moved to another address keeps its calls' history."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default="pbx1", min_length=1, max_length=31, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    url: str = "http://127.0.0.1:8088/ari"
    username: str = "cti"
    password: str = "cti-secret"
    app: str = "cti"
    request_timeout: float = Field(default=5.0, gt=0)
    reconnect_initial: float = Field(default=0.2, gt=0)
    reconnect_max: float = Field(default=5.0, gt=0)
    # With several Asterisks: an event socket down this long means the PBX is lost (its calls
    # end in the record, its agents are paused as unreachable); a shorter blink is a reconnect.
    lost_after_s: float = Field(default=5.0, gt=0, le=600)


class CompanySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "示例科技"
    name_en: str = "Example Tech"
    default_agent_id: str = "001"
    language: str = "zh"


class FallbackFlows(BaseModel):
    """The IVR flow a caller continues in when the routing rules' fallback (a queue's max wait,
    or after hours) is a call-back offer or a voicemail; null hangs up instead."""

    model_config = ConfigDict(extra="forbid")

    callback: str | None = "queue_callback"
    voicemail: str | None = "queue_voicemail"


class HttpSettings(BaseModel):
    """The HTTP API's guards (cti.platform.http_guards)."""

    model_config = ConfigDict(extra="forbid")

    # A request body above this is refused with 413, from its Content-Length or, when streamed
    # (chunked), as soon as that many bytes have arrived.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # When set, GET /metrics needs `Authorization: Bearer <metrics_token>` (else 401); unset,
    # /metrics is open (bind the service to a private address then).
    metrics_token: str | None = Field(default=None, min_length=16)


class RecordingSettings(BaseModel):
    """Call recording (queues with `record: true`): how long recordings are kept, and how
    often the expired ones are deleted (from the PBX, and marked on their row)."""

    model_config = ConfigDict(extra="forbid")
    retention_days: float = Field(default=90, gt=0, le=36500)
    sweep_every_s: float = Field(default=3600, ge=1, le=86400)


class OutboundSettings(BaseModel):
    """Calls the agents place from the page and the system's call-backs
    (docs/outbound_calls.md)."""

    model_config = ConfigDict(extra="forbid")

    # What the PBX dials for the customer: your trunk in production, e.g.
    # "PJSIP/{number}@provider" ({number} E.164 with +, {digits} without). Only numbers that
    # parse as phone numbers reach it.
    dial: str = Field(default="PJSIP/{number}",
                      pattern=r"^[^{}]*\{(number|digits)\}[^{}]*$")
    # The center's caller id the customer sees ("" leaves the trunk's own).
    caller_id: str = Field(default="", max_length=64, pattern=r"^[+0-9A-Za-z <>\"._-]*$")
    # The queue whose rules apply to these calls (wrap-up, `record: true`); null: the
    # routing rules' default queue.
    queue: str | None = None
    agent_ring_s: int = Field(default=30, ge=5, le=120)
    customer_ring_s: int = Field(default=45, ge=5, le=180)


class HandoverSettings(BaseModel):
    """Reminders of shift-handover items nobody of the next shift acknowledged
    (docs/shift_handover.md)."""

    model_config = ConfigDict(extra="forbid")
    remind_after_min: float = Field(default=30, gt=0, le=24 * 60)
    remind_every_min: float = Field(default=30, gt=0, le=24 * 60)


class ClusterSettings(BaseModel):
    """Used only with `redis_url` (and a PostgreSQL `database_url`)."""

    model_config = ConfigDict(extra="forbid")

    # Unique per node; empty: host name and process id (a restarted node is then a new one).
    node_id: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    key_prefix: str = Field(default="cti:", max_length=64)
    lease_ttl_s: float = Field(default=2.0, gt=0, le=60)
    lease_margin_s: float = Field(default=0.4, gt=0, le=30)
    lease_renew_every_s: float = Field(default=0.5, gt=0, le=30)
    stream_maxlen: int = Field(default=20_000, ge=1000)  # entries, each up to 25 events
    # Where the other nodes reach this one's HTTP API (a standby forwards requests to the
    # active node); empty: http://<http_host or this host's name>:<http_port>.
    advertise_url: str = Field(default="", max_length=300, pattern=r"^(https?://[^\s/]+/?)?$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CTI_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    config_file: Path | None = None
    database_url: str = "sqlite+aiosqlite:///./cti.db"
    # Set (with a PostgreSQL database_url) to run several nodes as one (docs/cluster.md).
    redis_url: str | None = None
    cluster: ClusterSettings = ClusterSettings()
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    http: HttpSettings = HttpSettings()
    log_level: str = "info"
    log_json: bool = False
    # The event loop (cti/platform/event_loop.py): uvloop where installed, asyncio's own if not.
    event_loop: LoopKind = "auto"
    auto_migrate: bool = True  # `cti serve` brings the schema up to date before it starts
    ari: AriSettings = AriSettings()
    # Several Asterisk servers driven by this process, trunked together (docs/cluster.md,
    # "Several Asterisk servers"); empty: the one of `ari`. Set one or the other.
    asterisks: list[AriSettings] = Field(default_factory=list)
    company: CompanySettings = CompanySettings()
    # Caller-audio detection that starts the procedures, and the procedures' tunables.
    detection: DetectionSettings = DetectionSettings()
    procedures: ProcedureSettings = ProcedureSettings()
    # Where the PBX reads custom sounds from, as seen from this host (the sandbox chroot's dir).
    sounds_dir: Path = Path("/var/cache/cti/pbx-root/usr/local/share/asterisk/sounds/custom")
    phrases_dir: Path = REPO_ROOT / "scripts_lib"
    flows_dir: Path = REPO_ROOT / "ivr_flows"
    # The IVR flow (ivr_flows/<name>.yaml) every answered inbound call starts in, and the one
    # a call continues in when an agent answers it (the row 1 greeting with the agent's id).
    inbound_flow: str = "main_menu"
    agent_flow: str = "agent_greeting"
    fallback_flows: FallbackFlows = FallbackFlows()
    # Signs the agents' login tokens; set it (>= 32 characters) so tokens survive a restart.
    auth_secret: str | None = Field(default=None, min_length=32)
    # Login throttling, token revocation cache, desk-socket message limits.
    auth: AuthSettings = AuthSettings()
    # An external CRM looked up alongside the built-in customer store (None: built-in only).
    crm: ExternalCrmSettings | None = None
    rules_file: Path = REPO_ROOT / "config" / "routing.yaml"
    # Work order types, severities, SLAs, status flow, escalations (docs/work_orders.md).
    work_orders_file: Path = REPO_ROOT / "config" / "work_orders.yaml"
    recordings: RecordingSettings = RecordingSettings()
    # Quality review's evaluation forms, one YAML file each (docs/quality_review.md).
    evaluation_forms_dir: Path = REPO_ROOT / "config" / "evaluation_forms"
    # Follow-up e-mail and SMS (docs/messages.md).
    messages: MessagesSettings = MessagesSettings()
    # What the PBX dials for an agent's transfer to an outside number: through your trunk in
    # production, e.g. "PJSIP/{number}@provider" (the sandbox dials its own endpoints).
    transfer_dial: str = Field(default="PJSIP/{number}", pattern=r"^[^{}]*\{number\}[^{}]*$")
    outbound: OutboundSettings = OutboundSettings()
    # The key a waiting caller presses to leave the queue and be called back in their turn
    # (docs/queue_callbacks.md; dialled like outbound calls); null: no call-backs.
    queue_callback_key: str | None = Field(default=None, pattern=r"^[0-9*#]$")
    # A caller called back who does not answer (busy, no answer, failed) is dialled again this
    # many seconds later, at their place in the queue, this many attempts in all; then the
    # call-back is given up (CallbackMissed, the "call-back missed" message).
    queue_callback_attempts: int = Field(default=3, ge=1, le=10)
    queue_callback_retry_s: int = Field(default=300, ge=1, le=86400)
    handover: HandoverSettings = HandoverSettings()
    # Append every queue event to this file as it happens, in Asterisk's queue_log format
    # (docs/queue_log.md), e.g. /var/log/asterisk/queue_log for the reporting tools reading it.
    queue_log_file: Path | None = None

    def default_advertise_url(self) -> str:
        """This node's HTTP API as the others reach it, when `cluster.advertise_url` is unset."""
        import socket

        host = self.http_host
        if host in ("0.0.0.0", "::", ""):  # listening everywhere: the host's own name
            host = socket.gethostname()
        return f"http://{host}:{self.http_port}"

    @field_validator("asterisks")
    @classmethod
    def _distinct_pbx_ids(cls, value: list[AriSettings]) -> list[AriSettings]:
        seen: dict[str, int] = {}
        for i, pbx in enumerate(value):
            if pbx.id in seen:
                raise ValueError(
                    f"entries {seen[pbx.id]} and {i} have the same id {pbx.id!r}: each Asterisk "
                    "needs its own (it is its systemname and names it in the record)"
                )
            seen[pbx.id] = i
        urls = [p.url.rstrip("/") for p in value]
        for i, url in enumerate(urls):
            if url in urls[:i]:
                raise ValueError(f"entries {urls.index(url)} and {i} have the same url {url!r}")
        return value

    @model_validator(mode="after")
    def _ari_or_asterisks(self) -> Settings:
        if self.asterisks and "ari" in self.model_fields_set:
            raise ValueError(
                "set either ari (one Asterisk) or asterisks (several), not both"
            )
        return self

    def pbxs(self) -> list[AriSettings]:
        """The Asterisk servers this process drives: `asterisks`, or the one of `ari`."""
        return list(self.asterisks) or [self.ari]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (the YAML file's values, passed by load_settings) ranks below the environment.
        return (env_settings, init_settings)


def _format_validation(path: Path | None, tree: Any, exc: ValidationError) -> str:
    from cti.platform.yaml_source import position_of

    parts = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if isinstance(p, int | str)]
        dotted = ".".join(str(p) for p in loc) or "(root)"
        in_file = path is not None and isinstance(tree, dict) and loc and loc[0] in tree
        if in_file:
            line, col = position_of(tree, loc) or (1, 1)
            parts.append(f"{path}:{line}:{col}: {dotted}: {err['msg']}")
        else:
            env = "CTI_" + "__".join(str(p) for p in loc).upper()
            parts.append(f"setting {dotted} (environment {env}): {err['msg']}")
    return "\n".join(parts)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional YAML file plus the environment; raise ConfigError."""
    import os

    from cti.platform.yaml_source import load_yaml, to_plain

    env_file = os.environ.get("CTI_CONFIG_FILE")
    path = config_file or (Path(env_file) if env_file else None)
    tree: Any = None
    values: dict[str, Any] = {}
    if path is not None:
        tree = load_yaml(path)
        if tree is not None and not isinstance(tree, dict):
            raise ConfigError(f"{path}:1:1: expected a mapping of settings at the top level")
        values = to_plain(tree) if tree else {}
        values["config_file"] = path
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, tree, exc)) from None
