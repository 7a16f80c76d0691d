"""The IVR's audit facts as domain events, and back: the runner's audit sink publishes them
(`AuditPublisher`), the procedure audit and the agent's card subscribe."""

from __future__ import annotations

from cti.events import Bus, IvrNoted, ProcedureEnded, ProcedureStarted, ProcedureStepped
from cti.features.procedures.audit import AuditEntry

AuditEvent = ProcedureStarted | ProcedureStepped | ProcedureEnded | IvrNoted
AUDIT_EVENTS = (ProcedureStarted, ProcedureStepped, ProcedureEnded, IvrNoted)


def audit_event(entry: AuditEntry) -> AuditEvent:
    a = entry.audit
    detail = dict(a.detail)
    if a.run_id and a.procedure:
        if a.kind == "procedure_started":
            return ProcedureStarted(entry.call_id, entry.at, entry.mono, a.run_id, a.procedure,
                                    detail)
        if a.kind == "procedure_ended":
            return ProcedureEnded(entry.call_id, entry.at, entry.mono, a.run_id, a.procedure,
                                  detail)
        if a.kind not in ("departure", "callback_requested"):
            return ProcedureStepped(entry.call_id, entry.at, entry.mono, a.run_id, a.procedure,
                                    a.kind, detail)
    return IvrNoted(entry.call_id, entry.at, entry.mono, a.kind, a.run_id, a.procedure, detail)


class AuditPublisher:
    """The IVR runner's audit sink: every fact goes on the bus."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def submit(self, entry: AuditEntry) -> None:
        self.bus.publish(audit_event(entry))
