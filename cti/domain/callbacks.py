"""A resolved complaint's call-back, as a pure state machine (docs/complaint_callbacks.md).

When a complaint is resolved the system calls the customer back through the owner agent: the
agent's phone first (only when the agent is Ready, i.e. available), the customer when the
agent answers. An attempt the agent or the customer does not take (busy, no answer, failed)
is retried after `retry_after`, up to `attempts` in all; then the call-back has failed. Every
step is a note for the order's history.

No clock is read: every function takes the instant, and `Callback.next_at` says when the
driver should come back with a `tick` (None: nothing to do until an attempt's outcome).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class CallbackStatus(StrEnum):
    WAITING = "waiting"  # for its time, or for the agent to be Ready
    CALLING = "calling"  # an attempt is under way
    CONNECTED = "connected"  # agent and customer talked: done
    FAILED = "failed"  # every attempt used up
    CANCELLED = "cancelled"  # the order was reopened


FINISHED = frozenset({CallbackStatus.CONNECTED, CallbackStatus.FAILED, CallbackStatus.CANCELLED})
RETRYABLE = frozenset({"agent_no_answer", "busy", "no_answer", "failed"})


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    attempts: int = 3  # attempts in all, the first included
    retry_after: timedelta = timedelta(minutes=10)
    # while the agent is not Ready, look again this often (an agent's "available" also wakes
    # the driver at once)
    agent_poll: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a call-back makes at least one attempt")


@dataclass(frozen=True, slots=True)
class Callback:
    order_id: int
    agent_id: str
    number: str
    status: CallbackStatus = CallbackStatus.WAITING
    attempts: int = 0
    next_at: datetime | None = None
    call_id: str | None = None
    waiting_noted: bool = False  # "waiting for the agent" said once per wait

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, slots=True)
class Dial:
    """Place the call: the agent's phone, then the customer's number."""

    order_id: int
    agent_id: str
    number: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Note:
    """A line for the order's history."""

    order_id: int
    text: str


Action = Dial | Note


class CallbackError(ValueError):
    """An input that does not fit the call-back as it is."""


def start(order_id: int, agent_id: str, number: str, at: datetime
          ) -> tuple[Callback, list[Action]]:
    cb = Callback(order_id, agent_id, number, next_at=at)
    return cb, [Note(order_id, f"call-back scheduled: agent {agent_id} first, then {number}")]


def tick(policy: CallbackPolicy, cb: Callback, at: datetime, *, agent_ready: bool
         ) -> tuple[Callback, list[Action]]:
    """Time passed (or the agent's state changed): dial when due and the agent is Ready."""
    if cb.status is not CallbackStatus.WAITING or cb.next_at is None or at < cb.next_at:
        return cb, []
    if not agent_ready:
        actions: list[Action] = []
        if not cb.waiting_noted:
            actions.append(Note(cb.order_id, f"call-back waits for agent {cb.agent_id} to be "
                                             "ready"))
        return replace(cb, next_at=at + policy.agent_poll, waiting_noted=True), actions
    attempt = cb.attempts + 1
    new = replace(cb, status=CallbackStatus.CALLING, attempts=attempt, next_at=None,
                  call_id=None, waiting_noted=False)
    return new, [
        Dial(cb.order_id, cb.agent_id, cb.number, attempt),
        Note(cb.order_id, f"call-back attempt {attempt} of {policy.attempts}: ringing agent "
                          f"{cb.agent_id}"),
    ]


def dialled(cb: Callback, call_id: str) -> Callback:
    """The attempt's call was placed (its outcome will name `call_id`)."""
    if cb.status is not CallbackStatus.CALLING:
        raise CallbackError(f"call-back of order {cb.order_id} is {cb.status.value}, not "
                            "calling")
    return replace(cb, call_id=call_id)


def not_placed(policy: CallbackPolicy, cb: Callback, reason: str, at: datetime
               ) -> tuple[Callback, list[Action]]:
    """The call could not even be placed (the agent got busy in between, say): the attempt
    does not count; look again later."""
    if cb.status is not CallbackStatus.CALLING:
        return cb, []
    new = replace(cb, status=CallbackStatus.WAITING, attempts=cb.attempts - 1,
                  next_at=at + policy.agent_poll, call_id=None)
    return new, [Note(cb.order_id, f"call-back not placed ({reason}); trying again later")]


def outcome(policy: CallbackPolicy, cb: Callback, result: str, at: datetime, cause: str = ""
            ) -> tuple[Callback, list[Action]]:
    """How the attempt went: "connected" ends the call-back; the others are retried while
    attempts remain."""
    if cb.status is not CallbackStatus.CALLING:
        return cb, []  # an outcome after a cancel, or twice: nothing more to do
    why = f"{result}{f' ({cause})' if cause else ''}"
    if result == "connected":
        return replace(cb, status=CallbackStatus.CONNECTED, next_at=None), [
            Note(cb.order_id, f"call-back attempt {cb.attempts}: connected, agent "
                              f"{cb.agent_id} with {cb.number}")]
    if result not in RETRYABLE:
        raise CallbackError(f"unknown call-back outcome {result!r}")
    if cb.attempts >= policy.attempts:
        return replace(cb, status=CallbackStatus.FAILED, next_at=None, call_id=None), [
            Note(cb.order_id, f"call-back attempt {cb.attempts}: {why}; gave up after "
                              f"{cb.attempts} attempts")]
    retry = at + policy.retry_after
    return replace(cb, status=CallbackStatus.WAITING, next_at=retry, call_id=None), [
        Note(cb.order_id, f"call-back attempt {cb.attempts}: {why}; next attempt at "
                          f"{retry.isoformat(timespec='seconds')}")]


def cancel(cb: Callback, reason: str) -> tuple[Callback, list[Action]]:
    if cb.finished:
        return cb, []
    return replace(cb, status=CallbackStatus.CANCELLED, next_at=None), [
        Note(cb.order_id, f"call-back cancelled: {reason}")]


# ----- the customer's side of a dial, and queue call-backs (docs/queue_callbacks.md) ----------

# Q.850 causes of a customer who did not take the call.
BUSY_CAUSES = frozenset({17})
NO_ANSWER_CAUSES = frozenset({18, 19, 21})


def outcome_of(cause: int | None) -> str:
    """A customer's dialled channel that ended unanswered: busy, no_answer or failed."""
    if cause in BUSY_CAUSES:
        return "busy"
    if cause in NO_ANSWER_CAUSES or cause is None or cause == 0:
        return "no_answer"
    return "failed"


@dataclass(frozen=True, slots=True)
class QueueCallbackPolicy:
    """A caller called back who does not answer is dialled again `retry_after` later, at their
    place in the queue, `attempts` in all (settings queue_callback_attempts/_retry_s)."""

    attempts: int = 3
    retry_after: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a call-back makes at least one attempt")


@dataclass(frozen=True, slots=True)
class QueueNext:
    """What follows an attempt: "done" (answered), "retry" at `at`, or "missed" (given up);
    `attempts` is the count that stands (an attempt the agent left does not count)."""

    what: str
    attempts: int
    at: datetime | None = None


def after_queue_attempt(policy: QueueCallbackPolicy, attempts: int, outcome: str,
                        at: datetime) -> QueueNext:
    """`attempts` made so far, the last one's `outcome` ("answered", "agent_left" or one of
    RETRYABLE), at `at`."""
    if outcome == "answered":
        return QueueNext("done", attempts)
    if outcome == "agent_left":  # the agent hung up before the caller answered: again now
        return QueueNext("retry", max(attempts - 1, 0), at)
    if outcome not in RETRYABLE:
        raise CallbackError(f"unknown call-back outcome {outcome!r}")
    if attempts >= policy.attempts:
        return QueueNext("missed", attempts)
    return QueueNext("retry", attempts, at + policy.retry_after)
