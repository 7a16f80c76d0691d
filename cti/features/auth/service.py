"""Users, passwords and tokens for the agent desk.

Passwords: argon2id (argon2-cffi), verified off the event loop (a hash costs tens of ms).
Tokens: JWT (PyJWT, HS256). Chosen over itsdangerous because the claims we need (`exp`, `iat`,
`sub`) have standard meanings and are checked by the library, the token is readable by the page
(its role and agent id decide which screen to show) and any other service can verify it with the
shared secret and a stock JWT library. Each token has an id (`jti`, ended by logout) and its
user's epoch (`ep`, ended for all of the user's tokens by deactivation): see revocation.py.
Logins are throttled per user name and client address (throttle.py) before argon2 runs.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.features.auth.revocation import TokenRef, TokenRevocations, Watch
from cti.features.auth.throttle import LoginThrottle, LoginThrottled
from cti.platform.clock import Clock, SystemClock
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.users import UserRow
from cti.platform.errors import Conflict, CtiError, Forbidden, NotFound, Unauthorized
from cti.platform.log import get_logger

log = get_logger(__name__)

TOKEN_ALGORITHM = "HS256"
DEFAULT_TOKEN_TTL = timedelta(hours=12)  # one shift
SCOPED_AUDIENCE = "cti-scoped"  # scoped keys (issue_scoped) are never bearer tokens


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# Each role may do what the roles below it may do (an admin can supervise; a supervisor can
# watch agents' topics) — except controlling calls, which is tied to the agent id, not the role.
_RANK = {Role.AGENT: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}


def role_allows(role: Role, needed: Role) -> bool:
    return _RANK[role] >= _RANK[needed]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the API, as the token says."""

    user_id: int
    username: str
    role: Role
    agent_id: str | None
    display_name: str
    language: str

    def may(self, needed: Role) -> bool:
        return role_allows(self.role, needed)

    def owns_agent(self, agent_id: str | None) -> bool:
        """True when this user is the agent `agent_id` (agents act only on their own calls)."""
        return agent_id is not None and self.agent_id == agent_id

    def may_see_agent(self, agent_id: str | None) -> bool:
        return self.owns_agent(agent_id) or self.may(Role.SUPERVISOR)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "username": self.username,
            "role": self.role.value,
            "agent_id": self.agent_id,
            "display_name": self.display_name,
            "language": self.language,
        }


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime
    principal: Principal


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and expiry are good (Tokens.decode); from AuthService.verify,
    also not revoked."""

    principal: Principal
    ref: TokenRef


class TooManyLogins(CtiError):
    """Login refused without checking the password: too many recent failures."""

    error_id = "too_many_attempts"
    http_status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Tokens:
    """Signs and verifies bearer tokens. The secret must be shared by all service instances."""

    def __init__(
        self, secret: str, *, ttl: timedelta = DEFAULT_TOKEN_TTL, clock: Clock | None = None
    ) -> None:
        if len(secret.encode()) < 32:  # RFC 7518 3.2: an HS256 key has at least 256 bits
            raise ValueError("token secret must be at least 32 bytes")
        self._secret = secret
        self._ttl = ttl
        self._clock = clock or SystemClock()

    def issue(self, who: Principal, *, epoch: int = 0) -> IssuedToken:
        now = self._clock.now()
        expires = now + self._ttl
        claims = {
            "jti": secrets.token_urlsafe(16),
            "ep": epoch,
            "sub": str(who.user_id),
            "usr": who.username,
            "role": who.role.value,
            "agent": who.agent_id,
            "name": who.display_name,
            "lang": who.language,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        return IssuedToken(jwt.encode(claims, self._secret, TOKEN_ALGORITHM), expires, who)

    def issue_scoped(self, verified: VerifiedToken, scope: str, ttl: timedelta) -> IssuedToken:
        """A short-lived token for one thing (`scope`, e.g. one recording's audio) that a page
        may put in a URL where it cannot send a header (an <audio> element's src, which asks
        byte ranges itself). It carries the login token's id and epoch, so logging out or a
        deactivation ends it too; it expires with the login token at the latest; it is no
        bearer token (its audience differs) and fits no other scope."""
        who, ref = verified.principal, verified.ref
        now = self._clock.now()
        expires = min(now + ttl, ref.expires_at)
        claims = {
            "aud": SCOPED_AUDIENCE, "scope": scope, "jti": ref.jti, "ep": ref.epoch,
            "texp": int(ref.expires_at.timestamp()), "sub": str(who.user_id),
            "usr": who.username, "role": who.role.value, "agent": who.agent_id,
            "name": who.display_name, "lang": who.language,
            "iat": int(now.timestamp()), "exp": int(expires.timestamp()),
        }
        return IssuedToken(jwt.encode(claims, self._secret, TOKEN_ALGORITHM), expires, who)

    def decode_scoped(self, token: str, scope: str) -> VerifiedToken:
        """The login behind a scoped token; Unauthorized when forged, expired or for another
        scope. Revocation is not checked here: see AuthService.verify_scoped."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[TOKEN_ALGORITHM], audience=SCOPED_AUDIENCE,
                options={"require": ["exp", "sub", "jti", "scope", "texp"],
                         "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid key: {exc}") from None
        if claims["scope"] != scope:
            raise Unauthorized("this key is for something else")
        if int(claims["exp"]) <= int(self._clock.now().timestamp()):
            raise Unauthorized("key expired; ask for a new one")
        return self._verified(claims, expires=int(claims["texp"]))

    def verify(self, token: str) -> Principal:
        """The principal the token names; Unauthorized when forged, malformed or expired.
        Revocation is not checked here: see AuthService.check."""
        return self.decode(token).principal

    def decode(self, token: str) -> VerifiedToken:
        try:
            # A token without an id could not be logged out: such tokens (issued before ids
            # existed) are refused, and their users log in once more.
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[TOKEN_ALGORITHM],
                options={"require": ["exp", "iat", "sub", "jti"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        # Expiry is checked against the injected clock, not the library's own time.time().
        if int(claims["exp"]) <= int(self._clock.now().timestamp()):
            raise Unauthorized("token expired; log in again")
        return self._verified(claims, expires=int(claims["exp"]))

    @staticmethod
    def _verified(claims: dict[str, Any], *, expires: int) -> VerifiedToken:
        try:
            who = Principal(
                user_id=int(claims["sub"]),
                username=str(claims.get("usr", "")),
                role=Role(claims["role"]),
                agent_id=claims.get("agent"),
                display_name=str(claims.get("name", "")),
                language=str(claims.get("lang", "zh")),
            )
            ref = TokenRef(
                jti=str(claims["jti"]),
                user_id=who.user_id,
                epoch=int(claims.get("ep", 0)),
                expires_at=datetime.fromtimestamp(expires, UTC),
            )
        except (KeyError, ValueError, TypeError):
            raise Unauthorized("invalid token: bad claims") from None
        return VerifiedToken(who, ref)


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password: str
    role: Role
    agent_id: str | None = None
    display_name: str = ""
    language: str = "zh"


def _principal(row: UserRow) -> Principal:
    return Principal(
        user_id=row.id,
        username=row.username,
        role=Role(row.role),
        agent_id=row.agent_id,
        display_name=row.display_name,
        language=row.language,
    )


class UserDirectory:
    """The users table: create, authenticate, list."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        hasher: PasswordHasher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # docs/storage.md
        self._hasher = hasher or PasswordHasher()
        self._clock = clock or SystemClock()
        # Verified against when the user does not exist, so both paths cost the same time.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))

    def hash_password(self, password: str) -> str:
        return self._hasher.hash(password)

    async def create(self, new: NewUser, *, replace_password: bool = False) -> Principal:
        """Add a user; Conflict if the username or agent id is taken (unless `replace_password`
        and the same user exists: then its password, role and names are updated — for seeding)."""
        if not new.username.strip():
            raise ValueError("username must not be empty")
        if len(new.password) < 6:
            raise ValueError("password must be at least 6 characters")
        if new.role is Role.AGENT and not new.agent_id:
            raise ValueError("an agent needs an agent id")
        password_hash = await asyncio.to_thread(self._hasher.hash, new.password)
        async with self._sessions() as db:
            existing = await db.scalar(select(UserRow).where(UserRow.username == new.username))
            if existing is not None and not replace_password:
                raise Conflict(f"user {new.username!r} exists")
            row = existing or UserRow(username=new.username, created_at=self._clock.now())
            row.password_hash = password_hash
            row.role = new.role.value
            row.agent_id = new.agent_id or None
            row.display_name = new.display_name or new.username
            row.language = new.language
            row.active = True
            db.add(row)
            try:
                await db.commit()
            except IntegrityError:
                raise Conflict(f"agent id {new.agent_id!r} belongs to another user") from None
            return _principal(row)

    async def authenticate(self, username: str, password: str) -> Principal:
        return (await self.authenticate_for_token(username, password))[0]

    async def authenticate_for_token(self, username: str, password: str) -> tuple[Principal, int]:
        """The user and their current token epoch; Unauthorized when the password is wrong."""
        async with self._reads() as db:
            row = await db.scalar(select(UserRow).where(UserRow.username == username))
        stored = row.password_hash if row is not None and row.active else self._dummy_hash
        ok = await asyncio.to_thread(self._verify, stored, password)
        if row is None or not row.active or not ok:
            raise Unauthorized("wrong username or password")
        return _principal(row), row.token_epoch

    async def set_active(self, username: str, active: bool) -> tuple[Principal, int]:
        """Activate or deactivate a user; deactivating also ends all their tokens (the epoch
        moves on, so a later re-activation does not bring old tokens back).
        Returns the user and their new token epoch."""
        async with self._sessions() as db:
            # locked: two deactivations at once each move the epoch on (PostgreSQL's read
            # committed would let both read the same epoch; SQLite serializes the transactions)
            row = await db.scalar(
                select(UserRow).where(UserRow.username == username).with_for_update())
            if row is None:
                raise NotFound(f"no user {username!r}")
            if not active:
                row.token_epoch += 1
            row.active = active
            await db.commit()
            return _principal(row), row.token_epoch

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def get(self, username: str) -> Principal:
        async with self._reads() as db:
            row = await db.scalar(select(UserRow).where(UserRow.username == username))
        if row is None:
            raise NotFound(f"no user {username!r}")
        return _principal(row)

    async def list(self) -> list[Principal]:
        async with self._reads() as db:
            rows = (await db.scalars(select(UserRow).order_by(UserRow.username))).all()
        return [_principal(r) for r in rows]


class AuthService:
    """Login (password -> token), token checks for HTTP requests and WebSockets, logout and
    deactivation (which end tokens before they expire)."""

    def __init__(
        self,
        users: UserDirectory,
        tokens: Tokens,
        revocations: TokenRevocations,
        *,
        throttle: LoginThrottle | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.revocations = revocations
        self.throttle = throttle or LoginThrottle()
        self._clock = clock or SystemClock()

    async def login(self, username: str, password: str, address: str | None = None) -> IssuedToken:
        """A token for the user; TooManyLogins (before any password check) while throttled."""
        try:
            attempt = self.throttle.begin(username, address, self._clock.monotonic())
        except LoginThrottled as exc:
            log.warning("login.throttled", username=username, address=address,
                        limited=exc.key, retry_after_s=exc.retry_after_s)
            raise TooManyLogins(
                f"too many failed logins; try again in {exc.retry_after_s} s", exc.retry_after_s
            ) from None
        try:
            who, epoch = await self.users.authenticate_for_token(username, password)
        except Unauthorized:
            log.info("login.failed", username=username, address=address)
            raise
        self.throttle.succeeded(attempt)
        log.info("login", username=username, role=who.role.value, agent_id=who.agent_id)
        return self.tokens.issue(who, epoch=epoch)

    async def verify(self, token: str | None) -> VerifiedToken:
        """Signature, expiry and revocation; Unauthorized when any fails."""
        if not token:
            raise Unauthorized("not logged in: a bearer token is required")
        verified = self.tokens.decode(token)
        reason = await self.revocations.reason_revoked(verified.ref)
        if reason is not None:
            raise Unauthorized(reason)
        return verified

    async def verify_scoped(self, token: str, scope: str) -> VerifiedToken:
        """A scoped key's login: signature, expiry, scope, and the login not revoked."""
        verified = self.tokens.decode_scoped(token, scope)
        reason = await self.revocations.reason_revoked(verified.ref)
        if reason is not None:
            raise Unauthorized(reason)
        return verified

    async def check(self, token: str | None) -> Principal:
        return (await self.verify(token)).principal

    async def still_valid(self, verified: VerifiedToken) -> str | None:
        """Why an already verified token is no longer good (expired, revoked), or None."""
        if verified.ref.expires_at <= self._clock.now():
            return "token expired; log in again"
        return await self.revocations.reason_revoked(verified.ref)

    async def logout(self, verified: VerifiedToken) -> None:
        await self.revocations.revoke(verified.ref)
        log.info("logout", username=verified.principal.username, jti=verified.ref.jti)

    async def set_active(self, username: str, active: bool) -> Principal:
        """(De)activate a user; deactivation ends all their tokens and open sockets here now
        (on other instances within the revocation cache time)."""
        who, epoch = await self.users.set_active(username, active)
        self.revocations.user_changed(who.user_id, active=active, epoch=epoch)
        log.info("user.active" if active else "user.deactivated", username=username)
        return who

    def watch(self, verified: VerifiedToken) -> Watch:
        return self.revocations.watch(verified.ref)

    def unwatch(self, watch: Watch) -> None:
        self.revocations.unwatch(watch)


def require(who: Principal, needed: Role) -> None:
    if not who.may(needed):
        raise Forbidden(f"needs the {needed.value} role (you are {who.role.value})")


def require_agent_access(who: Principal, agent_id: str | None) -> None:
    """An agent may act only on their own calls and topic; supervisors and admins on any."""
    if not who.may_see_agent(agent_id):
        raise Forbidden("an agent can see and control only their own calls")
