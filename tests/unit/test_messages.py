"""The follow-up messages' pure core: the retry schedule (injected instants), the templates'
placeholders and languages, which event sends what to whom; and the templates file's checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.domain.messages import (
    Attempt,
    Channel,
    Contact,
    OrderFacts,
    OutboxStatus,
    RetryPolicy,
    TemplateError,
    Templates,
    Text,
    after_attempt,
    check_template,
    customer_drafts,
    customer_kind,
    pick_language,
    placeholders,
    render,
    staff_drafts,
)
from cti.features.messages.templates import load_templates
from cti.platform.errors import ConfigError
from cti.platform.settings import REPO_ROOT

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
POLICY = RetryPolicy(timedelta(seconds=30), 2.0, timedelta(minutes=30), timedelta(days=3))


@pytest.mark.parametrize(("failures", "seconds"), [
    (0, 0), (1, 30), (2, 60), (3, 120), (4, 240), (6, 960), (7, 1800), (8, 1800), (500, 1800),
])
def test_backoff_doubles_from_30_s_up_to_30_min(failures: int, seconds: int) -> None:
    assert POLICY.delay(failures) == timedelta(seconds=seconds)


@given(st.integers(min_value=1, max_value=200))
def test_backoff_never_shrinks_and_never_passes_the_longest(failures: int) -> None:
    assert POLICY.delay(failures) <= POLICY.delay(failures + 1) <= POLICY.longest


def test_a_failure_is_tried_again_at_the_backoff_instant() -> None:
    now = T0 + timedelta(minutes=5)
    out = after_attempt(POLICY, Attempt(T0, 2), now, error="connection refused")
    assert out.status is OutboxStatus.PENDING
    assert out.attempts == 3
    assert out.next_attempt_at == now + timedelta(seconds=120)
    assert out.last_error == "connection refused"


def test_a_success_is_sent_with_its_instant() -> None:
    now = T0 + timedelta(minutes=1)
    out = after_attempt(POLICY, Attempt(T0, 4), now, error=None)
    assert (out.status, out.attempts, out.sent_at, out.next_attempt_at) == (
        OutboxStatus.SENT, 5, now, None)


def test_a_permanent_refusal_fails_at_once() -> None:
    out = after_attempt(POLICY, Attempt(T0, 0), T0, error="550 no such user", permanent=True)
    assert out.status is OutboxStatus.FAILED
    assert out.next_attempt_at is None


def test_the_outbox_gives_up_only_after_give_up_after() -> None:
    almost = T0 + timedelta(days=3) - timedelta(minutes=31)
    assert after_attempt(POLICY, Attempt(T0, 20), almost, error="down").status is (
        OutboxStatus.PENDING)
    late = T0 + timedelta(days=3) - timedelta(minutes=29)
    out = after_attempt(POLICY, Attempt(T0, 21), late, error="down")
    assert out.status is OutboxStatus.FAILED
    assert out.last_error.startswith("gave up: down")


@given(st.lists(st.integers(min_value=0, max_value=3600), min_size=1, max_size=40))
def test_retries_are_strictly_later_and_end_within_the_give_up_window(gaps: list[int]) -> None:
    """Whatever the failures' timing, each next attempt is after the failure, and no attempt is
    planned past created_at + give_up_after."""
    now, attempts = T0, 0
    for gap in gaps:
        out = after_attempt(POLICY, Attempt(T0, attempts), now, error="down")
        attempts = out.attempts
        if out.status is OutboxStatus.FAILED:
            assert now + POLICY.delay(attempts) - T0 > POLICY.give_up_after
            return
        assert out.next_attempt_at is not None
        assert now < out.next_attempt_at <= T0 + POLICY.give_up_after
        now = out.next_attempt_at + timedelta(seconds=gap)


def test_placeholders_are_read_and_checked_per_message() -> None:
    assert placeholders("工单 {order_id} 已受理 {company}") == {"order_id", "company"}
    check_template("order_escalated", "{rule} {reason} {target}")
    with pytest.raises(TemplateError, match=r"\{rule\}"):
        check_template("order_created", "{rule}")
    with pytest.raises(TemplateError, match="plain name"):
        check_template("order_created", "{0}")
    with pytest.raises(TemplateError):
        check_template("order_created", "unclosed {order_id")
    with pytest.raises(TemplateError, match="unknown message"):
        check_template("nonsense", "x")


def test_render_fills_values_and_leaves_missing_ones_empty() -> None:
    assert render("{a}-{b}", {"a": 1}) == "1-"


@pytest.mark.parametrize(("preferred", "default", "chosen"), [
    ("en", "zh", "en"), ("zh", "en", "zh"), (None, "en", "en"), ("fr", "zh", "zh"),
    (None, "de", "zh"),
])
def test_language_is_the_customers_else_the_centers(
    preferred: str | None, default: str, chosen: str
) -> None:
    assert pick_language(preferred, default) == chosen


@pytest.mark.parametrize(("old", "new", "kind"), [
    ("new", "in_progress", "order_progress"), ("in_progress", "waiting_customer",
                                               "order_progress"),
    ("in_progress", "resolved", "order_resolved"), ("resolved", "closed", None),
    ("new", "assigned", None), ("closed", "in_progress", "order_progress"),
])
def test_which_status_change_the_customer_hears_of(old: str, new: str, kind: str | None) -> None:
    assert customer_kind(old, new) == kind


TEMPLATES = Templates({
    "order_created": {
        Channel.EMAIL: {"zh": Text("{customer_name}您好,工单 {order_id}", "{company}受理"),
                        "en": Text("Dear {customer_name}, order {order_id}", "{company}")},
        Channel.SMS: {"zh": Text("工单{order_id}"), "en": Text("order {order_id}")},
    },
    "order_escalated": {Channel.EMAIL: {"zh": Text("{order_id}:{reason}", "升级 {rule}"),
                                        "en": Text("{order_id}: {reason}", "up {rule}")}},
})
FACTS = OrderFacts(7, "complaint", "critical", "assigned", "2026-03-01 16:00 UTC", "", "王")
COMPANY = {"zh": "示例科技", "en": "Example Tech"}


def test_the_customer_gets_email_and_sms_in_their_language() -> None:
    drafts = customer_drafts(TEMPLATES, "order_created",
                             Contact("w@example.com", "+8613800138000", "en"), FACTS,
                             company=COMPANY, default_language="zh", key="created:7")
    assert [(d.channel, d.to, d.language, d.subject, d.body) for d in drafts] == [
        (Channel.EMAIL, "w@example.com", "en", "Example Tech", "Dear 王, order 7"),
        (Channel.SMS, "+8613800138000", "en", "", "order 7"),
    ]
    assert len({d.key for d in drafts}) == 2


def test_no_address_no_message_and_chinese_by_default() -> None:
    drafts = customer_drafts(TEMPLATES, "order_created", Contact(phone="+8613800138000"), FACTS,
                             company=COMPANY, default_language="zh", key="k")
    assert [(d.channel, d.body) for d in drafts] == [(Channel.SMS, "工单7")]
    assert customer_drafts(TEMPLATES, "order_resolved", Contact("a@b.c"), FACTS,
                           company=COMPANY, default_language="zh", key="k") == []


def test_the_duty_manager_gets_one_email_per_address() -> None:
    drafts = staff_drafts(TEMPLATES, "order_escalated", ["dm@example.com", "dm@example.com",
                                                          "b@example.com"], FACTS,
                          company=COMPANY, language="zh", key="escalated:7:critical",
                          extra={"rule": "critical_complaint", "reason": "severity critical"})
    assert [(d.to, d.subject, d.body) for d in drafts] == [
        ("dm@example.com", "升级 critical_complaint", "7:severity critical"),
        ("b@example.com", "升级 critical_complaint", "7:severity critical"),
    ]


def test_the_shipped_templates_load_with_zh_and_en_for_every_message() -> None:
    templates = load_templates(REPO_ROOT / "config" / "messages.yaml")
    for kind, channels in templates.texts.items():
        for channel, texts in channels.items():
            assert set(texts) == {"zh", "en"}, (kind, channel)
    assert templates.get("order_escalated", Channel.EMAIL, "zh") is not None


@pytest.mark.parametrize(("text", "reason"), [
    ("templates:\n  order_created:\n    sms:\n      zh: {body: '{rule}'}\n      en: {body: x}\n",
     "unknown placeholder"),
    ("templates:\n  order_created:\n    sms:\n      zh: {body: x}\n", "missing: ['en']"),
    ("templates:\n  order_created:\n    email:\n      zh: {body: x}\n      en: {body: x}\n",
     "needs a subject"),
    ("templates:\n  nonsense:\n    sms:\n      zh: {body: x}\n      en: {body: x}\n",
     "unknown message"),
    ("templates:\n  order_created:\n    fax: {}\n", "fax"),
])
def test_a_broken_templates_file_is_refused_with_file_and_reason(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "messages.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_templates(path)
    assert f"{path}:" in err.value.message
    assert reason in err.value.message
