"""Is the caller there? What the driver keeps of the caller's recent audio, per call, and how a
procedure's hang-up is judged against it (`ConfirmCallerAbsent` -> `CallerPresence`).

Pure: times are the caller's (monotonic seconds), given by whoever feeds it. The judgement uses
only what was already received, so it answers at once and never delays a hang-up.

Evidence kinds (a procedure's hang-up names those that count, `HangupNode.present_if`):
  talk    TALK_DETECT says the caller is talking, or talking started or stopped in the window
          (talking that started more than TALK_STALE_S ago and never stopped is not counted:
          a phone that stops sending audio mid-word leaves TALK_DETECT "talking" for good)
  quiet   a classifier window of quiet speech in the window
  normal  a classifier window of normal speech in the window
  noisy   a classifier window of sound that is not silence (noise, or speech drowned in it)
  key     a DTMF key in the window
A classifier window received at t covers the audio just before t.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from cti.domain.ivr import commands as c
from cti.domain.ivr import events as e
from cti.domain.ivr.flow import Evidence

ANY_SOUND: tuple[Evidence, ...] = ("talk", "quiet", "normal", "noisy", "key")
CLEAR_SPEECH: tuple[Evidence, ...] = ("normal",)
KEEP_S = 30.0  # what is older than this is forgotten (the window is at most 10 s)
TALK_STALE_S = 30.0


@dataclass
class CallerAudioMemory:
    """The caller's recent audio as the driver heard it."""

    windows: deque[tuple[float, str]] = field(default_factory=deque)
    talking: bool = False
    talk_started_at: float | None = None
    talk_stopped_at: float | None = None
    key_at: float | None = None

    def note(self, at: float, event: e.Event) -> None:
        match event:
            case e.AudioClassified(kind=kind):
                self.windows.append((at, kind))
                while self.windows and at - self.windows[0][0] > KEEP_S:
                    self.windows.popleft()
            case e.SpeechStarted():
                self.talking, self.talk_started_at = True, at
            case e.SpeechStopped():
                self.talking, self.talk_stopped_at = False, at
            case e.Dtmf():
                self.key_at = at
            case _:
                pass

    def judge(self, at: float, check: c.ConfirmCallerAbsent) -> e.CallerPresence:
        """Whether what was heard in the last `check.window_s` seconds shows the caller there."""
        window = check.window_s

        def recent(t: float | None) -> bool:
            return t is not None and at - t <= window

        kinds = Counter(kind for t, kind in self.windows if recent(t))
        found: list[str] = []
        talking = self.talking and self.talk_started_at is not None and (
            at - self.talk_started_at <= TALK_STALE_S
        )
        if talking or recent(self.talk_started_at) or recent(self.talk_stopped_at):
            found.append("talk")
        found.extend(k for k in ("quiet", "normal", "noisy") if kinds[k])
        if recent(self.key_at):
            found.append("key")
        counted = [k for k in found if k in check.present_if]
        evidence: dict[str, Any] = {
            "window_s": window,
            "windows": dict(sorted(kinds.items())),
            "talking": self.talking,
            "found": found,
            "counted": counted,
        }
        known = bool(kinds) or bool(counted)  # nothing heard at all: no audio to judge by
        return e.CallerPresence(check.check, bool(counted), known, evidence)
