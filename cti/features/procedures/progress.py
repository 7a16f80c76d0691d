"""Procedure progress for the agent's page: the IVR's audit facts go to the audit store, and
those of a running procedure also to the call's agent (and supervisors) as they happen."""

from __future__ import annotations

from cti.features.calls.registry import CallRegistry
from cti.features.desk.screen_pop import ScreenPop
from cti.features.procedures.audit import AuditEntry, ProcedureAudit

# How a procedure ended, as the card shows it.
_ENDED = {"hangup": "done", "completed": "done", "caller_hangup": "done"}


class ProcedureProgress:
    def __init__(self, audit: ProcedureAudit, screen_pop: ScreenPop, registry: CallRegistry):
        self.audit = audit
        self.screen_pop = screen_pop
        self.registry = registry

    def submit(self, entry: AuditEntry) -> None:
        self.audit.submit(entry)
        fact = entry.audit
        if fact.procedure is None:
            return
        if fact.kind == "procedure_ended":
            status = _ENDED.get(str(fact.detail.get("reason", "")), "cancelled")
        else:
            status = "running"
        session = self.registry.get(entry.call_id)
        agent = session.call.agent_id if session is not None else None
        reserved = {"call_id", "agent_id", "name", "step", "status", "type", "key"}
        info = {
            k: v for k, v in fact.detail.items()
            if k not in reserved and isinstance(v, str | int | float | bool)
        }
        self.screen_pop.procedure_progress(
            entry.call_id, agent, fact.procedure, fact.kind, status, **info
        )
