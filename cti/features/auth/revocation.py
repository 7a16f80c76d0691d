"""Which signed, unexpired tokens are no longer good: logged out (their id is in
`revoked_tokens`) or their user deactivated (the user's `token_epoch` moved past the token's,
or `active` is off).

The database is the truth shared by every instance. Each process keeps what it read for
`cache_s` seconds (by its injected clock), so a request does not query the database each time;
this process's own logouts and deactivations update that cache at once, and wake the open
sockets of the token or user (`watch`) so they are closed immediately. Changes made elsewhere
(another instance, the CLI) are seen within `cache_s`: at a request's next check, and for open
sockets by one refresh of every watched token each `cache_s` (two queries for them all, not two
per socket: 500 sockets checking on their own stalled the event loop ~0.5 s).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.platform.clock import Clock
from cti.platform.db.base import read_sessions
from cti.platform.db.health import db_unavailable, describe
from cti.platform.db.tables.users import RevokedTokenRow, UserRow
from cti.platform.errors import DatabaseUnavailable
from cti.platform.log import get_logger

log = get_logger(__name__)

# Past this many cached entries the stale ones are dropped (one entry per live token / user).
CACHE_PRUNE_AT = 10_000
MIN_REFRESH_S = 1.0
IN_CHUNK = 500  # ids per IN (...) query


@dataclass(frozen=True, slots=True)
class TokenRef:
    """What revocation needs to know of a verified token."""

    jti: str
    user_id: int
    epoch: int
    expires_at: datetime


@dataclass(slots=True)
class _UserState:
    active: bool
    epoch: int
    read_at: float


@dataclass(eq=False)
class Watch:
    """Set when the watched token may have been revoked: check it again."""

    token: TokenRef
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class TokenRevocations:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, *, cache_s: float = 10.0
    ) -> None:
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # docs/storage.md
        self._clock = clock
        self.cache_s = cache_s
        self._users: dict[int, _UserState] = {}
        self._revoked_here: dict[str, datetime] = {}  # jti -> expiry: logged out in this process
        self._jti_checked: dict[str, float] = {}  # jti -> when the DB last said "not revoked"
        self._watches: dict[int, set[Watch]] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def reason_revoked(self, token: TokenRef) -> str | None:
        """Why `token` is no longer good, or None when it still is."""
        if token.jti in self._revoked_here:
            return "token revoked: logged out"
        now = self._clock.monotonic()
        user = self._users.get(token.user_id)
        user_stale = user is None or now - user.read_at >= self.cache_s
        checked = self._jti_checked.get(token.jti)
        jti_stale = checked is None or now - checked >= self.cache_s
        if user_stale or jti_stale:
            try:
                user, revoked = await self._load(token, now)
            except Exception as exc:
                if not db_unavailable(exc):
                    raise
                if user is None or checked is None:
                    raise DatabaseUnavailable(
                        f"cannot check this token: the database is unreachable "
                        f"({describe(exc)}); retry") from None
                # Checked before and good then: a database restart must not log everyone
                # out. A revocation made meanwhile counts once the database answers.
                log.warning("auth.revocation_check_skipped", user_id=token.user_id,
                            error=describe(exc))
                revoked = False
            if revoked:
                self._revoked_here[token.jti] = token.expires_at
                return "token revoked: logged out"
        if user is None:
            return "token revoked: the user no longer exists"
        if not user.active:
            return "token revoked: the user is deactivated"
        if token.epoch != user.epoch:
            return "token revoked: all sessions of the user were ended"
        return None

    async def _load(self, token: TokenRef, now: float) -> tuple[_UserState | None, bool]:
        async with self._reads() as db:
            row = (
                await db.execute(
                    select(UserRow.active, UserRow.token_epoch).where(UserRow.id == token.user_id)
                )
            ).one_or_none()
            revoked = await db.scalar(
                select(RevokedTokenRow.jti).where(RevokedTokenRow.jti == token.jti)
            )
        self._prune(now)
        self._jti_checked[token.jti] = now
        if row is None:
            self._users.pop(token.user_id, None)
            return None, revoked is not None
        state = self._users[token.user_id] = _UserState(bool(row.active), row.token_epoch, now)
        return state, revoked is not None

    def _prune(self, now: float) -> None:
        if len(self._jti_checked) >= CACHE_PRUNE_AT:
            self._jti_checked = {
                k: t for k, t in self._jti_checked.items() if now - t < self.cache_s
            }
        if len(self._users) >= CACHE_PRUNE_AT:
            self._users = {k: u for k, u in self._users.items() if now - u.read_at < self.cache_s}
        if len(self._revoked_here) >= CACHE_PRUNE_AT:
            wall = self._clock.now()
            self._revoked_here = {k: e for k, e in self._revoked_here.items() if e > wall}

    async def revoke(self, token: TokenRef) -> None:
        """Logout: the token ends here now, and on other instances within `cache_s`."""
        self._revoked_here[token.jti] = token.expires_at
        self._wake(token.user_id, token.jti)
        now = self._clock.now()
        async with self._sessions() as db:
            # Expired rows are dead weight: an expired token is refused before this table.
            await db.execute(delete(RevokedTokenRow).where(RevokedTokenRow.expires_at <= now))
            db.add(RevokedTokenRow(
                jti=token.jti, user_id=token.user_id, expires_at=token.expires_at,
                revoked_at=now,
            ))
            try:
                await db.commit()
            except IntegrityError:
                # Logged out twice (two tabs): the first row stands.
                log.info("auth.revoke_repeated", jti=token.jti, user_id=token.user_id)

    def user_changed(self, user_id: int, *, active: bool, epoch: int) -> None:
        """The user's row was just changed in this process (deactivation): apply it now."""
        self._users[user_id] = _UserState(active, epoch, self._clock.monotonic())
        self._wake(user_id, None)

    def watch(self, token: TokenRef) -> Watch:
        w = Watch(token)
        self._watches.setdefault(token.user_id, set()).add(w)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh_loop(), name="auth-revocation-refresh"
            )
        return w

    async def _refresh_loop(self) -> None:
        while self._watches:
            await asyncio.sleep(max(self.cache_s, MIN_REFRESH_S))
            try:
                await self.refresh_watched()
            except Exception as exc:  # the next round tries again; the sockets stay as they are
                if not db_unavailable(exc):
                    log.exception("auth.revocation_refresh_failed")
                else:
                    log.warning("auth.revocation_refresh_failed", error=describe(exc))

    async def refresh_watched(self) -> None:
        """Read every watched token's user and revocation at once, renew the caches, and wake
        the sockets whose token is no longer good (revoked, user gone or deactivated, expired)."""
        watches = [w for ws in self._watches.values() for w in ws]
        if not watches:
            return
        now = self._clock.monotonic()
        user_ids = sorted(self._watches)
        jtis = sorted({w.token.jti for w in watches})
        users: dict[int, _UserState] = {}
        revoked: set[str] = set()
        async with self._reads() as db:
            for i in range(0, len(user_ids), IN_CHUNK):
                chunk = user_ids[i:i + IN_CHUNK]
                rows = await db.execute(
                    select(UserRow.id, UserRow.active, UserRow.token_epoch)
                    .where(UserRow.id.in_(chunk))
                )
                for row in rows:
                    users[row.id] = _UserState(bool(row.active), row.token_epoch, now)
            for i in range(0, len(jtis), IN_CHUNK):
                revoked.update(await db.scalars(
                    select(RevokedTokenRow.jti).where(RevokedTokenRow.jti.in_(jtis[i:i + IN_CHUNK]))
                ))
        for user_id in user_ids:
            if user_id in users:
                self._users[user_id] = users[user_id]
            else:
                self._users.pop(user_id, None)
        wall = self._clock.now()
        for w in watches:
            tok = w.token
            user = users.get(tok.user_id)
            if tok.jti in revoked:
                self._revoked_here[tok.jti] = tok.expires_at
            else:
                self._jti_checked[tok.jti] = now
            bad = (tok.jti in revoked or user is None or not user.active
                   or user.epoch != tok.epoch or tok.expires_at <= wall)
            if bad:
                w.changed.set()

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)

    def unwatch(self, w: Watch) -> None:
        watches = self._watches.get(w.token.user_id)
        if watches is not None:
            watches.discard(w)
            if not watches:
                del self._watches[w.token.user_id]

    def _wake(self, user_id: int, jti: str | None) -> None:
        for w in self._watches.get(user_id, ()):
            if jti is None or w.token.jti == jti:
                w.changed.set()
