"""What callers left when no agent was free, for supervisors: call-back requests and voicemails
(with each message's audio, streamed from the PBX's stored recording).
Call-back requests are kept by the procedure audit (the IVR stores them there).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from cti.features.auth.http import require_role
from cti.features.auth.service import Principal, Role
from cti.features.fallback.voicemail import Voicemails
from cti.features.procedures.audit import ProcedureAudit
from cti.platform.provide import provide

router = APIRouter(tags=["fallback"])


Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
Audit = Annotated[ProcedureAudit, Depends(provide(ProcedureAudit))]
Mailboxes = Annotated[Voicemails, Depends(provide(Voicemails))]
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get("/callbacks")
async def callbacks(who: Supervisor, audit: Audit, limit: Limit = 100) -> list[dict[str, Any]]:
    """Call-back requests, newest first: caller number, time, language, call id, queue, and
    `done_at` (null until a supervisor marks it done)."""
    await audit.flush()
    return await audit.callbacks(limit)


@router.post("/callbacks/{callback_id}/done")
async def callback_done(callback_id: int, who: Supervisor, audit: Audit) -> dict[str, Any]:
    """Mark a call-back request done; the answer is the request with its `done_at`."""
    await audit.flush()
    return await audit.callback_done(callback_id)


@router.get("/voicemails")
async def voicemails(
    who: Supervisor, store: Mailboxes, limit: Limit = 100, mailbox: str | None = None
) -> list[dict[str, Any]]:
    """Voicemails, newest first: mailbox, caller number, call id, recording, duration, time."""
    return await store.list(limit, mailbox)


@router.get("/voicemails/{voicemail_id}")
async def voicemail(voicemail_id: int, who: Supervisor, store: Mailboxes) -> dict[str, Any]:
    return await store.get(voicemail_id)


@router.get("/voicemails/{voicemail_id}/audio")
async def voicemail_audio(voicemail_id: int, who: Supervisor, store: Mailboxes) -> Response:
    """The message's audio (WAV), fetched from the PBX's stored recordings."""
    data, media_type = await store.audio(voicemail_id)
    return Response(
        data, media_type=media_type,
        headers={"Content-Disposition": f'inline; filename="voicemail-{voicemail_id}.wav"'},
    )
