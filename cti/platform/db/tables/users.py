"""Users of the agent desk: agents, supervisors, administrators (password hashes, argon2),
and the login tokens ended before they expire (logout)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from cti.platform.db.base import Base, UtcDateTime


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # cti.features.auth.service.Role value
    # The agent id the PBX and the router know (e.g. "1001"); unique when set.
    agent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    language: Mapped[str] = mapped_column(String(8), default="zh")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Tokens carry the epoch they were issued in; raising it (deactivation) ends them all at
    # once, on every instance, without listing them.
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class RevokedTokenRow(Base):
    """A token ended by logout before its expiry, by its id (the JWT `jti`). Rows past
    `expires_at` are useless (the token is refused anyway) and are deleted."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime())
