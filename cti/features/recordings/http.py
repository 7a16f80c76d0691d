"""Call recordings over HTTP: pause and resume the live call's recording (its agent or a
supervisor), the recordings of a call, and each recording's audio with HTTP Range (seeking in
the browser's audio element: 206 with Content-Range, 416 for a range the file does not have).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from cti.features.auth.http import CurrentUser, Desk, current_token
from cti.features.auth.service import Principal, VerifiedToken, require_agent_access
from cti.features.recordings.model import RangeNotSatisfiable, parse_range
from cti.features.recordings.service import CallRecordings
from cti.platform.errors import Forbidden
from cti.platform.http_guards import CallIdPath, IdPath, IsoTime, error_responses
from cti.platform.provide import provide

router = APIRouter(tags=["recordings"], responses=error_responses(401, 403, 404, 422))

Recordings = Annotated[CallRecordings, Depends(provide(CallRecordings))]


class PauseOut(BaseModel):
    """The call's recording after the action: `paused` or `recording`."""

    call_id: str
    recording: Literal["paused", "recording"]


class PauseRecordOut(BaseModel):
    paused_at: IsoTime
    resumed_at: IsoTime | None
    by: str


class RecordingOut(BaseModel):
    """One segment of a call's recording (a transfer starts a new segment)."""

    id: int
    call_id: str
    segment: int
    name: str = Field(description="the PBX's recording name")
    format: str
    queue: str | None
    agent_id: str | None
    status: Literal["recording", "done", "failed", "deleted"]
    reason: str | None = Field(description="why it failed (status failed)")
    started_at: IsoTime
    ended_at: IsoTime | None
    duration_s: float | None
    deleted_at: IsoTime | None = Field(description="when retention deleted its file")
    pauses: list[PauseRecordOut]


# How long an audio link works: a review session's listening (seeking re-asks ranges with
# the same URL); the page asks a new one when it stops working. Never past the login's end.
AUDIO_LINK_TTL = timedelta(minutes=30)
_bearer = HTTPBearer(auto_error=False)


def audio_scope(recording_id: int) -> str:
    return f"recording-audio:{recording_id}"


class AudioLinkOut(BaseModel):
    """A URL an <audio> element can play (and seek: it asks byte ranges itself), with a key
    for this recording only, ended by the login's logout or expiry."""

    url: str
    expires_at: IsoTime


async def _listener(
    recording_id: IdPath, desk: Desk,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    key: Annotated[str | None, Query(max_length=2048, description="from POST .../audio-link")]
    = None,
) -> Principal:
    """The bearer token's user, or the user of the audio link's key for this recording."""
    if key is not None:
        return (await desk.auth.verify_scoped(key, audio_scope(recording_id))).principal
    return (await desk.auth.verify(credentials.credentials if credentials else None)).principal


Listener = Annotated[Principal, Depends(_listener)]


def _may_control(who: Principal, store: CallRecordings, call_id: str) -> None:
    require_agent_access(who, store.live_agent(call_id))


async def _may_hear(who: Principal, store: CallRecordings, call_id: str) -> None:
    """Supervisors; an agent for the calls they had (any segment's agent)."""
    agents = await store.agents_of_call(call_id)
    if not any(who.may_see_agent(a) for a in agents or {None}):
        raise Forbidden("an agent can hear only their own calls")


@router.post("/calls/{call_id}/recording/pause", responses=error_responses(502, 503, 504))
async def pause(call_id: CallIdPath, who: CurrentUser, store: Recordings) -> PauseOut:
    """Pause the live call's recording (kept as a pause on the call's record); pausing a
    paused recording changes nothing. 404 `not_recording` when the call is not recorded."""
    _may_control(who, store, call_id)
    await store.pause(call_id, who.agent_id or who.username)
    return PauseOut(call_id=call_id, recording="paused")


@router.post("/calls/{call_id}/recording/resume", responses=error_responses(502, 503, 504))
async def resume(call_id: CallIdPath, who: CurrentUser, store: Recordings) -> PauseOut:
    """Resume the live call's recording after a pause."""
    _may_control(who, store, call_id)
    await store.resume(call_id, who.agent_id or who.username)
    return PauseOut(call_id=call_id, recording="recording")


@router.get("/calls/{call_id}/recordings")
async def call_recordings(
    call_id: CallIdPath, who: CurrentUser, store: Recordings
) -> list[RecordingOut]:
    """The call's recording segments in order, with their pauses and status (`failed` with
    its reason; `deleted` once the retention period is over). Empty when not recorded."""
    rows = await store.of_call(call_id)
    if rows:
        await _may_hear(who, store, call_id)
    return [RecordingOut.model_validate(r) for r in rows]


_AUDIO = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/recordings/{recording_id}/audio",
    response_class=Response,
    responses={
        200: {"description": "The whole recording", "content": {"audio/wav": _AUDIO}},
        206: {"description": "The bytes the Range header asked (Content-Range says which)",
              "content": {"audio/wav": _AUDIO}},
        416: {"description": "The Range header names no byte range of the file",
              "content": {"audio/wav": _AUDIO}},
        **error_responses(502, 503, 504),
    },
)
async def recording_audio(
    recording_id: IdPath, who: Listener, store: Recordings,
    range_: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
) -> Response:
    """The recording's WAV (from the PBX's stored recordings), whole or the byte range asked
    by a `Range: bytes=a-b` header (206). Supervisors, and the agent of the call; with the
    bearer token, or `?key=` of an audio link (for the page's <audio> element)."""
    row = await store.get(recording_id)
    await _may_hear(who, store, row.call_id)
    data = await store.audio(recording_id)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'inline; filename="recording-{recording_id}.wav"',
        "Cache-Control": "private, no-store",
    }
    try:
        span = parse_range(range_, len(data))
    except RangeNotSatisfiable:
        return Response(status_code=416, media_type="audio/wav",
                        headers={**headers, "Content-Range": f"bytes */{len(data)}"})
    if span is None:
        return Response(data, media_type="audio/wav", headers=headers)
    first, last = span
    return Response(
        data[first:last + 1], status_code=206, media_type="audio/wav",
        headers={**headers, "Content-Range": f"bytes {first}-{last}/{len(data)}"},
    )


@router.post("/recordings/{recording_id}/audio-link")
async def audio_link(
    recording_id: IdPath, token: Annotated[VerifiedToken, Depends(current_token)],
    store: Recordings, desk: Desk,
) -> AudioLinkOut:
    """A link to the recording's audio for an <audio> element, which cannot send the bearer
    token: its key works for this recording only, for 30 minutes at most, and ends with the
    login (logout, deactivation). Same permission as the audio itself."""
    row = await store.get(recording_id)
    await _may_hear(token.principal, store, row.call_id)
    issued = desk.auth.tokens.issue_scoped(token, audio_scope(recording_id), AUDIO_LINK_TTL)
    return AudioLinkOut(url=f"/recordings/{recording_id}/audio?key={issued.token}",
                        expires_at=issued.expires_at.isoformat())
