"""Flow definitions: a flow is a named graph of nodes; YAML menus and built-in procedures alike.

Node kinds:
  play      say a phrase, then `next` (when the prompt has finished playing)
  wait      silence for `seconds` (from the end of the previous prompt), then `next`;
            without `seconds`, wait for one of the `on` triggers only
  menu      say `prompt`, collect one DTMF digit within `timeout` s; invalid or no input
            says `invalid_prompt` and repeats, at most `retries` times, then `on_fail`
  route     hand the call to a queue with a skill; then `next` or stay idle
  hangup    end the call; in a procedure, only once the caller's recent audio shows no one
            there (`present_if`: the evidence that counts; see cti.domain.ivr.presence)
  branch    choose by `test` (business_hours: open/closed, vip: yes/no) among `cases`
  language  switch the call's language, then `next`
  volume    raise the caller leg's TX gain by `step` (the agent sounds louder), then `next`
  moh       music on hold until one of the `on` triggers (e.g. agent:resume)
  callback  record a call-back request (audit), then `next`
  record    record the caller (a voicemail: beep, then until `#`, silence or `max_seconds`),
            then `next`; the recording is kept when the caller hangs up instead
  listen    conversation: caller audio is watched (silence, quiet, noise start procedures);
            `then`: where the call goes when a procedure on it ends without hanging up and no
            agent is on the call (with one, the caller and the agent simply talk on)
  end       (procedures) the procedure is over; the call goes on where it was

No dead air: a procedure that ends early (the caller spoke or pressed a key, the agent ended
it, the caller was found there before its hang-up) always hands the call to a defined step:
the agent, the listen node's `then`, the queue it was routed to, or the node it interrupted
(a menu or prompt again, a timed wait). The loader rejects flows where that step is missing.

`on` maps triggers to nodes: speech, dtmf, audio:quiet, audio:noisy, audio:normal,
agent:<command>.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What can show the caller is there before a procedure's hang-up (cti.domain.ivr.presence).
Evidence = Literal["talk", "quiet", "normal", "noisy", "key"]
TRIGGER = re.compile(r"^(speech|dtmf|audio:(quiet|noisy|normal|silent)|agent:[a-z_]+)$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on: dict[str, str] = Field(default_factory=dict)

    @field_validator("on")
    @classmethod
    def _triggers(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [t for t in value if not TRIGGER.match(t)]
        if bad:
            raise ValueError(
                f"unknown trigger(s) {', '.join(bad)} (speech, dtmf, audio:quiet|noisy|normal, "
                "agent:<command>)"
            )
        return value

    def targets(self) -> list[str]:
        return list(self.on.values())


class PlayNode(_Node):
    type: Literal["play"]
    phrase: str
    next: str

    def targets(self) -> list[str]:
        return [self.next, *self.on.values()]


class WaitNode(_Node):
    type: Literal["wait"]
    seconds: float | None = Field(default=None, gt=0)
    next: str | None = None

    def targets(self) -> list[str]:
        return [*([self.next] if self.next else []), *self.on.values()]


class MenuNode(_Node):
    type: Literal["menu"]
    prompt: str
    options: dict[str, str]
    timeout: float = Field(default=5.0, gt=0)
    retries: int = Field(default=2, ge=0, le=5)
    invalid_prompt: str | None = None
    on_fail: str

    @field_validator("options")
    @classmethod
    def _digits(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if k not in "0123456789*#" or len(k) != 1]
        if bad:
            raise ValueError(f"option keys must be single DTMF digits: {', '.join(bad)}")
        if not value:
            raise ValueError("a menu needs at least one option")
        return value

    def targets(self) -> list[str]:
        return [*self.options.values(), self.on_fail, *self.on.values()]


class RouteNode(_Node):
    type: Literal["route"]
    queue: str
    skill: str | None = None
    next: str | None = None

    def targets(self) -> list[str]:
        return [*([self.next] if self.next else []), *self.on.values()]


class HangupNode(_Node):
    type: Literal["hangup"]
    # In a procedure: what, heard in the last seconds, shows the caller is there and cancels
    # the hang-up (cti.domain.ivr.presence). Default: any sound at all.
    present_if: tuple[Evidence, ...] = ("talk", "quiet", "normal", "noisy", "key")


class BranchNode(_Node):
    type: Literal["branch"]
    test: Literal["business_hours", "vip"]
    cases: dict[str, str]

    def targets(self) -> list[str]:
        return list(self.cases.values())


class LanguageNode(_Node):
    type: Literal["language"]
    language: str
    next: str

    def targets(self) -> list[str]:
        return [self.next]


class VolumeNode(_Node):
    type: Literal["volume"]
    step: int = Field(default=3, ge=1, le=10)
    next: str

    def targets(self) -> list[str]:
        return [self.next]


class MohNode(_Node):
    type: Literal["moh"]
    moh_class: str | None = None


class CallbackNode(_Node):
    type: Literal["callback"]
    next: str

    def targets(self) -> list[str]:
        return [self.next]


class RecordNode(_Node):
    type: Literal["record"]
    # The mailbox the message is for; without one, the call's `mailbox` slot (the queue
    # fallback's) is used.
    mailbox: str | None = None
    max_seconds: float = Field(default=120.0, gt=0, le=3600)
    max_silence: float = Field(default=5.0, ge=0, le=60)  # 0: silence does not end it
    beep: bool = True
    terminate_on: Literal["none", "any", "*", "#"] = "#"
    next: str

    def targets(self) -> list[str]:
        return [self.next, *self.on.values()]


class ListenNode(_Node):
    type: Literal["listen"]
    # The next step when a procedure that ran on this conversation ends without hanging up and
    # no agent is on the call (the loader requires it in flows).
    then: str | None = None

    def targets(self) -> list[str]:
        return [*([self.then] if self.then else []), *self.on.values()]


class EndNode(_Node):
    type: Literal["end"]


Node = Annotated[
    PlayNode | WaitNode | MenuNode | RouteNode | HangupNode | BranchNode | LanguageNode
    | VolumeNode | MohNode | CallbackNode | RecordNode | ListenNode | EndNode,
    Field(discriminator="type"),
]

IMMEDIATE = (BranchNode, LanguageNode, VolumeNode, CallbackNode)
BRANCH_CASES = {"business_hours": {"open", "closed"}, "vip": {"yes", "no"}}


class BusinessHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "Asia/Shanghai"
    days: list[str] = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    open: time = time(9, 0)
    close: time = time(18, 0)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if d not in DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {', '.join(bad)} (use {', '.join(DAYS)})")
        return value

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone))
        return DAYS[local.weekday()] in self.days and self.open <= local.time() < self.close


class Flow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["menu", "procedure"] = "menu"
    description: str = ""
    start: str
    # Procedures: where an agent's hang-up request leads (the goodbye, then the timed wait).
    agent_hangup: str | None = None
    business_hours: BusinessHours | None = None
    nodes: dict[str, Node]
