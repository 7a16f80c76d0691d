"""Follow-up messages, pure: which messages an event calls for, their text from templates in the
recipient's language, and the outbox's retry schedule.

No I/O and no clock: the instants are passed in. The feature (cti/features/messages/) reads the
order and the customer's contact, asks `drafts_for` what to send, keeps the drafts in the outbox
and sends them; a failed send is tried again at `RetryPolicy.next_attempt`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENT = "sent"
    FAILED = "failed"  # refused for good (a bad address), or retried past give_up_after


LANGUAGES = ("zh", "en")

# What each template may say, by name: checked when the templates are loaded, so a typo in a
# placeholder is an error at load, not a KeyError on the day the message is sent.
ORDER_FIELDS = frozenset({
    "order_id", "type", "severity", "status", "due_at", "result", "company", "customer_name",
})
TEMPLATE_FIELDS: Mapping[str, frozenset[str]] = {
    "order_created": ORDER_FIELDS,
    "order_progress": ORDER_FIELDS,
    "order_resolved": ORDER_FIELDS,
    "order_escalated": ORDER_FIELDS | {"rule", "reason", "target", "team", "owner"},
    "callback_missed": ORDER_FIELDS | {"attempts"},
    "queue_callback_missed": frozenset({"company", "number", "queue", "attempts"}),
    "knowledge_gap": frozenset({"gap_id", "question", "asked_by", "company"}),
}
# Which status changes the customer is told about (progress), and which one is "resolved".
PROGRESS_STATUSES = frozenset({"in_progress", "waiting_customer"})
RESOLVED = "resolved"


class TemplateError(ValueError):
    """A template names a placeholder its message does not have, or is malformed."""


def placeholders(text: str) -> set[str]:
    """The `{names}` in a template; TemplateError on a malformed one (`{`, `{0}`, `{a.b}`)."""
    names: set[str] = set()
    try:
        for _literal, name, _spec, _conv in string.Formatter().parse(text):
            if name is None:
                continue
            if not name.isidentifier():
                raise TemplateError(f"placeholder {{{name}}} is not a plain name")
            names.add(name)
    except ValueError as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError(str(exc)) from None
    return names


def check_template(kind: str, text: str) -> None:
    allowed = TEMPLATE_FIELDS.get(kind)
    if allowed is None:
        raise TemplateError(f"unknown message {kind!r} (known: {', '.join(TEMPLATE_FIELDS)})")
    unknown = placeholders(text) - allowed
    if unknown:
        raise TemplateError(
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in sorted(unknown))} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


@dataclass(frozen=True, slots=True)
class Text:
    body: str
    subject: str = ""  # e-mail only


@dataclass(frozen=True, slots=True)
class Templates:
    """kind -> channel -> language -> text. Every kind given has zh and en (checked at load)."""

    texts: Mapping[str, Mapping[Channel, Mapping[str, Text]]]

    def get(self, kind: str, channel: Channel, language: str) -> Text | None:
        by_language = self.texts.get(kind, {}).get(channel)
        if not by_language:
            return None
        return by_language.get(language) or by_language.get("zh") or next(
            iter(by_language.values())
        )


def render(text: str, values: Mapping[str, object]) -> str:
    """The template with its placeholders filled (a missing value renders empty)."""
    return text.format_map(_Blank(values))


class _Blank(dict[str, object]):
    def __init__(self, values: Mapping[str, object]) -> None:
        super().__init__(values)

    def __missing__(self, key: str) -> str:
        return ""


# ----- who gets what ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach a customer: any of e-mail and SMS, in their language."""

    email: str | None = None
    phone: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """A message to put in the outbox."""

    kind: str
    channel: Channel
    to: str
    language: str
    subject: str
    body: str
    key: str  # one draft per key: the same event handled twice is not sent twice
    order_id: int | None = None


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What the templates say about an order, plain text."""

    order_id: int
    type: str
    severity: str
    status: str
    due_at: str
    result: str = ""
    customer_name: str = ""

    def values(self, company: str) -> dict[str, object]:
        return {
            "order_id": self.order_id, "type": self.type, "severity": self.severity,
            "status": self.status, "due_at": self.due_at, "result": self.result,
            "customer_name": self.customer_name, "company": company,
        }


def customer_kind(from_status: str | None, to_status: str | None) -> str | None:
    """The message a status change sends the customer: resolved, progress, or none (closing,
    assignment and the like are not news to the customer)."""
    if to_status == RESOLVED:
        return "order_resolved"
    if to_status in PROGRESS_STATUSES and from_status != to_status:
        return "order_progress"
    return None


def customer_drafts(
    templates: Templates, kind: str, contact: Contact, facts: OrderFacts, *,
    company: Mapping[str, str], default_language: str, key: str,
    extra: Mapping[str, object] | None = None,
) -> list[Draft]:
    """The customer's e-mail and SMS for `kind`, each where the contact has an address and the
    templates have a text, in the customer's language (else the default)."""
    language = pick_language(contact.language, default_language)
    values = {**facts.values(company.get(language, "")), **(extra or {})}
    return contact_drafts(templates, kind, contact, values, language=language, key=key,
                          order_id=facts.order_id)


def contact_drafts(
    templates: Templates, kind: str, contact: Contact, values: Mapping[str, object], *,
    language: str, key: str, order_id: int | None = None,
) -> list[Draft]:
    """The e-mail and SMS for `kind` to `contact`, where it has an address and the templates
    a text, in `language`, filled with `values`."""
    out: list[Draft] = []
    for channel, to in ((Channel.EMAIL, contact.email), (Channel.SMS, contact.phone)):
        text = templates.get(kind, channel, language)
        if not to or text is None:
            continue
        out.append(Draft(kind, channel, to, language, render(text.subject, values),
                         render(text.body, values), f"{key}:{channel}:{to}", order_id))
    return out


def staff_drafts(
    templates: Templates, kind: str, addresses: Sequence[str], facts: OrderFacts, *,
    company: Mapping[str, str], language: str, key: str, extra: Mapping[str, object],
) -> list[Draft]:
    """E-mails to staff (the duty manager) about an order, in the center's language."""
    values = {**facts.values(company.get(language, "")), **extra}
    return staff_mail(templates, kind, addresses, values, language=language, key=key,
                      order_id=facts.order_id)


def staff_mail(
    templates: Templates, kind: str, addresses: Sequence[str], values: Mapping[str, object], *,
    language: str, key: str, order_id: int | None = None,
) -> list[Draft]:
    """One e-mail per distinct address, from the `kind` template in `language`."""
    text = templates.get(kind, Channel.EMAIL, language)
    if text is None:
        return []
    subject, body = render(text.subject, values), render(text.body, values)
    return [Draft(kind, Channel.EMAIL, to, language, subject, body, f"{key}:email:{to}",
                  order_id) for to in dict.fromkeys(addresses)]


def pick_language(preferred: str | None, default: str) -> str:
    if preferred is not None and preferred in LANGUAGES:
        return preferred
    return default if default in LANGUAGES else "zh"


# ----- the retry schedule ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: `first` after the first failure, times `factor` each time, at most
    `longest`; a message still failing `give_up_after` its creation is marked failed (kept,
    visible in the outbox, never silently dropped)."""

    first: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    longest: timedelta = timedelta(minutes=30)
    give_up_after: timedelta = timedelta(days=3)

    def delay(self, failures: int) -> timedelta:
        """The wait after the `failures`-th failed attempt (1-based)."""
        if failures < 1:
            return timedelta(0)
        seconds = self.first.total_seconds() * self.factor ** min(failures - 1, 60)
        # compared as seconds: factor**60 overflows a timedelta
        return timedelta(seconds=min(seconds, self.longest.total_seconds()))

    def next_attempt(self, created_at: datetime, failures: int, now: datetime
                     ) -> datetime | None:
        """When to try again after a transient failure at `now`, or None: give up."""
        at = now + self.delay(failures)
        if at - created_at > self.give_up_after:
            return None
        return at


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt did to an outbox row."""

    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str = ""
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    created_at: datetime
    attempts: int  # before this one


def after_attempt(policy: RetryPolicy, row: Attempt, now: datetime, *, error: str | None,
                  permanent: bool = False) -> Outcome:
    """The row after an attempt at `now`: sent (error None), failed for good (a permanent
    refusal, or past the give-up time), or pending again at the next backoff instant."""
    attempts = row.attempts + 1
    if error is None:
        return Outcome(OutboxStatus.SENT, attempts, None, "", now)
    if permanent:
        return Outcome(OutboxStatus.FAILED, attempts, None, error[:500])
    at = policy.next_attempt(row.created_at, attempts, now)
    if at is None:
        return Outcome(OutboxStatus.FAILED, attempts, None, f"gave up: {error}"[:500])
    return Outcome(OutboxStatus.PENDING, attempts, at, error[:500])
