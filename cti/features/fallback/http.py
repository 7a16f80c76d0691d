"""What callers left when no agent was free, for supervisors: call-back requests and voicemails
(with each message's audio, streamed from the PBX's stored recording).
Call-back requests are kept by the procedure audit (the IVR stores them there).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from cti.features.auth.http import require_role
from cti.features.auth.service import Principal, Role
from cti.features.fallback.voicemail import Voicemails
from cti.features.procedures.audit import ProcedureAudit
from cti.platform.http_guards import MAX_KEY, IdPath, IsoTime, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["fallback"], responses=error_responses(401, 403, 422))


Supervisor = Annotated[Principal, Depends(require_role(Role.SUPERVISOR))]
Audit = Annotated[ProcedureAudit, Depends(provide(ProcedureAudit))]
Mailboxes = Annotated[Voicemails, Depends(provide(Voicemails))]
Limit = Annotated[int, Query(ge=1, le=1000)]


class CallbackOut(BaseModel):
    """A caller's request to be called back."""

    id: int
    call_id: str
    caller_number: str
    lang: str
    queue: str | None
    requested_at: IsoTime
    done_at: IsoTime | None = Field(description="null until a supervisor marks it done")


class VoicemailOut(BaseModel):
    id: int
    call_id: str
    caller_number: str
    mailbox: str
    queue: str | None
    lang: str
    recording: str = Field(description="the PBX's stored recording's name")
    format: str
    duration_s: float | None
    started_at: IsoTime
    recorded_at: IsoTime


@router.get("/callbacks")
async def callbacks(who: Supervisor, audit: Audit, limit: Limit = 100) -> list[CallbackOut]:
    """Call-back requests, newest first: caller number, time, language, call id, queue, and
    `done_at` (null until a supervisor marks it done)."""
    await audit.flush()
    return [CallbackOut.model_validate(c) for c in await audit.callbacks(limit)]


@router.post("/callbacks/{callback_id}/done", responses=error_responses(404))
async def callback_done(callback_id: IdPath, who: Supervisor, audit: Audit) -> CallbackOut:
    """Mark a call-back request done; the answer is the request with its `done_at`."""
    await audit.flush()
    return CallbackOut.model_validate(await audit.callback_done(callback_id))


@router.get("/voicemails")
async def voicemails(
    who: Supervisor, store: Mailboxes, limit: Limit = 100,
    mailbox: Annotated[str | None, Query(min_length=1, max_length=MAX_KEY)] = None,
) -> list[VoicemailOut]:
    """Voicemails, newest first: mailbox, caller number, call id, recording, duration, time."""
    return [VoicemailOut.model_validate(v) for v in await store.list(limit, mailbox)]


@router.get("/voicemails/{voicemail_id}", responses=error_responses(404))
async def voicemail(voicemail_id: IdPath, who: Supervisor, store: Mailboxes) -> VoicemailOut:
    return VoicemailOut.model_validate(await store.get(voicemail_id))


@router.get(
    "/voicemails/{voicemail_id}/audio",
    response_class=Response,
    responses={
        200: {"description": "The recording", "content": {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }},
        **error_responses(404, 502, 503, 504),
    },
)
async def voicemail_audio(voicemail_id: IdPath, who: Supervisor, store: Mailboxes) -> Response:
    """The message's audio (WAV), fetched from the PBX's stored recordings."""
    data, media_type = await store.audio(voicemail_id)
    return Response(
        data, media_type=media_type,
        headers={"Content-Disposition": f'inline; filename="voicemail-{voicemail_id}.wav"'},
    )
