"""The agent desk's parts, built once per service: users and tokens, customers and lookup,
the WebSocket hub and the screen pop, plus the call-side ports the desk drives.

`cti.features.desk.http.install_agent_desk(app, desk)` exposes it over HTTP.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.events import Bus
from cti.features.auth.revocation import TokenRevocations
from cti.features.auth.service import AuthService, Tokens, UserDirectory
from cti.features.auth.settings import AuthSettings
from cti.features.auth.throttle import LoginThrottle
from cti.features.calls.registry import CallRegistry
from cti.features.crm.external import ExternalCrm, ExternalCrmSettings
from cti.features.crm.service import CrmLookup
from cti.features.crm.storage import CustomerRepository
from cti.features.desk.hub import AgentHub
from cti.features.desk.screen_pop import CompanyNames, ScreenPop
from cti.platform.bus import InProcessBus
from cti.platform.clock import Clock, SystemClock
from cti.platform.log import get_logger
from cti.platform.ports import Telephony
from cti.platform.provide import ServiceMissing

log = get_logger(__name__)

__all__ = ["AgentDesk", "ServiceMissing"]

DeskState = Literal["available", "paused", "logged_out"]


class AgentStateControl(Protocol):
    """What the desk asks of the ACD when an agent clicks available / pause / log out.
    The ACD answers with AgentStateChanged events (to the screen pop), not with a return value."""

    async def request_agent_state(
        self, agent_id: str, state: DeskState, reason: str | None = None
    ) -> None: ...


class ProcedureControl(Protocol):
    """The scripted procedures (silent, quiet, noisy line, dialect, volume up) and the hang-up
    that must go through a running procedure (docs/phrases.md#row-6b: never a direct hang-up)."""

    async def start_procedure(self, call_id: str, name: str, agent_id: str) -> None: ...

    async def request_hangup(self, call_id: str, agent_id: str) -> bool:
        """True when a procedure took over the hang-up; False: hang up directly."""
        ...

    async def agent_command(self, call_id: str, command: str, agent_id: str | None = None) -> None:
        """A command for the running procedure, e.g. "resume" ends the hold (row 6a)."""
        ...


class TransferControl(Protocol):
    """One-click transfer. `kind`: blind or attended; `target_type`: agent, queue or number."""

    async def transfer(
        self, call_id: str, *, agent_id: str, target_type: str, target: str, kind: str
    ) -> dict[str, Any]: ...

    async def complete(self, call_id: str, agent_id: str) -> dict[str, Any]:
        """Attended: hand the call to the consulted colleague."""
        ...

    async def cancel(self, call_id: str, agent_id: str) -> dict[str, Any]:
        """Attended: drop the colleague, back to the caller."""
        ...


@dataclass
class AgentDesk:
    sessions: async_sessionmaker[AsyncSession]
    auth: AuthService
    customers: CustomerRepository
    crm: CrmLookup
    hub: AgentHub
    screen_pop: ScreenPop
    clock: Clock
    bus: Bus
    telephony: Telephony | None = None
    calls: CallRegistry | None = None
    agent_states: AgentStateControl | None = None
    procedures: ProcedureControl | None = None
    transfers: TransferControl | None = None
    external_crm: ExternalCrm | None = None
    auth_settings: AuthSettings = field(default_factory=AuthSettings)

    @classmethod
    def build(
        cls,
        sessions: async_sessionmaker[AsyncSession],
        *,
        token_secret: str | None = None,
        company: CompanyNames | None = None,
        external_crm: ExternalCrmSettings | None = None,
        default_region: str = "CN",
        clock: Clock | None = None,
        telephony: Telephony | None = None,
        calls: CallRegistry | None = None,
        bus: Bus | None = None,
        agent_states: AgentStateControl | None = None,
        procedures: ProcedureControl | None = None,
        transfers: TransferControl | None = None,
        auth_settings: AuthSettings | None = None,
    ) -> AgentDesk:
        clock = clock or SystemClock()
        if not token_secret:
            # Tokens then die with the process; fine for a demo, not for several instances.
            log.warning("auth.ephemeral_secret", hint="set a shared token secret")
            token_secret = secrets.token_urlsafe(32)
        auth_settings = auth_settings or AuthSettings()
        auth = AuthService(
            UserDirectory(sessions, clock=clock),
            Tokens(token_secret, clock=clock),
            TokenRevocations(sessions, clock, cache_s=auth_settings.revocation_cache_s),
            throttle=LoginThrottle(auth_settings.login_throttle.limits()),
            clock=clock,
        )
        customers = CustomerRepository(sessions, clock)
        external = ExternalCrm(external_crm, clock=clock) if external_crm else None
        crm = CrmLookup(customers, external, default_region=default_region)
        hub = AgentHub(clock)
        bus = bus or InProcessBus()
        pop = ScreenPop(hub, crm, company or CompanyNames("示例科技", "Example Tech"), bus)
        return cls(
            sessions=sessions, auth=auth, customers=customers, crm=crm, hub=hub, screen_pop=pop,
            clock=clock, bus=bus, telephony=telephony, calls=calls, external_crm=external,
            agent_states=agent_states, procedures=procedures, transfers=transfers,
            auth_settings=auth_settings,
        )

    async def aclose(self) -> None:
        await self.bus.drain()
        await self.screen_pop.drain()
        await self.auth.revocations.aclose()
        if self.external_crm is not None:
            await self.external_crm.aclose()
