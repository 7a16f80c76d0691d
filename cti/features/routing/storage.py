"""Stores routing decisions and agent-state events
(implements cti.features.routing.decision_log.DecisionSink)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.routing.decisions import Decision
from cti.domain.routing.events import AgentStateChanged, RoutingEvent
from cti.platform.db.base import read_sessions
from cti.platform.db.tables.routing import AgentStateEventRow, RoutingDecisionRow


class RoutingLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._reads = read_sessions(sessions)  # docs/storage.md

    async def record_decision(self, at: datetime, decision: Decision) -> None:
        await self.record_batch([(at, decision)])

    async def record_event(self, event: RoutingEvent) -> None:
        await self.record_batch([event])

    async def record_batch(self, items: Sequence[tuple[datetime, Decision] | RoutingEvent]) -> None:
        """Decisions and agent-state events in one transaction (the ACD writes in batches)."""
        rows: list[RoutingDecisionRow | AgentStateEventRow] = []
        for item in items:
            row = self._decision_row(*item) if isinstance(item, tuple) else self._event_row(item)
            if row is not None:
                rows.append(row)
        if rows:
            async with self._sessions.begin() as s:
                s.add_all(rows)

    @staticmethod
    def _decision_row(at: datetime, decision: Decision) -> RoutingDecisionRow | None:
        if decision.call_id is None:
            return None
        return RoutingDecisionRow(
            call_id=decision.call_id,
            at=at,
            seq=decision.seq,
            trigger=decision.trigger,
            outcome=decision.outcome,
            agent_id=decision.agent_id,
            queue=decision.queue,
            filter=decision.filter,
            waited_s=decision.waited_s,
            reason=decision.reason[:512],
            detail=decision.to_dict(),
        )

    @staticmethod
    def _event_row(event: RoutingEvent) -> AgentStateEventRow | None:
        if not isinstance(event, AgentStateChanged):
            return None
        return AgentStateEventRow(
            agent_id=event.agent_id,
            at=event.at,
            old_state=event.old,
            new_state=event.new,
            reason=event.reason,
            call_id=event.call_id,
        )

    async def last_agent_states(self) -> dict[str, tuple[str, str | None]]:
        """Each agent's last recorded state and reason: where a restarted service resumes."""
        latest = (
            select(func.max(AgentStateEventRow.id)).group_by(AgentStateEventRow.agent_id)
        ).scalar_subquery()
        stmt = select(
            AgentStateEventRow.agent_id, AgentStateEventRow.new_state, AgentStateEventRow.reason
        ).where(AgentStateEventRow.id.in_(latest))
        async with self._reads() as s:
            return {r.agent_id: (r.new_state, r.reason) for r in await s.execute(stmt)}

    async def decisions_for(self, call_id: str) -> list[dict[str, Any]]:
        async with self._reads() as s:
            rows = (
                await s.execute(
                    select(RoutingDecisionRow)
                    .where(RoutingDecisionRow.call_id == call_id)
                    .order_by(RoutingDecisionRow.id)
                )
            ).scalars()
            return [
                {**r.detail, "at": r.at.isoformat(), "router_time_s": r.detail["at"]} for r in rows
            ]
