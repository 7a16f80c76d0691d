"""The login throttle's arithmetic: per user, per address, sliding window, reset on success."""

from __future__ import annotations

import pytest

from cti.features.auth import throttle as throttle_module
from cti.features.auth.settings import AuthSettings
from cti.features.auth.throttle import LoginThrottle, LoginThrottled, ThrottleLimits
from cti.platform.settings import load_settings

LIMITS = ThrottleLimits(window_s=300.0, per_user=5, per_address=20)


def fail(t: LoginThrottle, user: str, address: str | None, now: float, times: int = 1) -> None:
    for _ in range(times):
        t.begin(user, address, now)  # counted; never handed back: a failure


def test_the_sixth_attempt_for_a_user_within_the_window_is_refused_with_the_wait() -> None:
    t = LoginThrottle(LIMITS)
    for i in range(5):
        fail(t, "agent1001", f"10.0.0.{i}", now=10.0 * i)  # five addresses: per user
    with pytest.raises(LoginThrottled) as refused:
        t.begin("agent1001", "10.0.0.9", now=45.0)
    # the oldest failure (t=0) leaves the window at 300
    assert refused.value.retry_after_s == 255
    assert "agent1001" in refused.value.key


def test_a_user_may_try_again_once_the_oldest_failure_left_the_window() -> None:
    t = LoginThrottle(LIMITS)
    for i in range(5):
        fail(t, "agent1001", None, now=float(i))
    with pytest.raises(LoginThrottled):
        t.begin("agent1001", None, now=299.9)
    t.begin("agent1001", None, now=300.0)  # the failure at 0 is out: 4 left, so one more try
    with pytest.raises(LoginThrottled) as refused:
        t.begin("agent1001", None, now=300.5)  # that try failed too: blocked until 1 + 300
    assert refused.value.retry_after_s == 1


def test_refused_attempts_do_not_extend_the_block() -> None:
    t = LoginThrottle(LIMITS)
    fail(t, "u", None, now=0.0, times=5)
    for now in (10.0, 100.0, 200.0):
        with pytest.raises(LoginThrottled):
            t.begin("u", None, now)
    t.begin("u", None, now=300.0)


def test_user_names_differing_in_case_or_blanks_share_a_count() -> None:
    t = LoginThrottle(LIMITS)
    for name in ("Agent1001", "agent1001 ", " AGENT1001", "agent1001", "aGent1001"):
        fail(t, name, None, now=1.0)
    with pytest.raises(LoginThrottled):
        t.begin("agent1001", None, now=2.0)


def test_success_resets_the_users_count_but_not_the_addresses() -> None:
    t = LoginThrottle(ThrottleLimits(300.0, per_user=5, per_address=6))
    fail(t, "agent1001", "10.0.0.1", now=0.0, times=4)
    t.succeeded(t.begin("agent1001", "10.0.0.1", now=1.0))
    fail(t, "agent1001", "10.0.0.2", now=2.0, times=4)  # four more for the user: allowed
    t.begin("agent1001", "10.0.0.2", now=3.0)
    # the address kept its 4 failures (the success took only its own attempt back)
    fail(t, "other", "10.0.0.1", now=4.0, times=2)
    with pytest.raises(LoginThrottled) as refused:
        t.begin("third", "10.0.0.1", now=5.0)
    assert "10.0.0.1" in refused.value.key


def test_the_twenty_first_failure_from_one_address_is_refused_for_any_user() -> None:
    t = LoginThrottle(LIMITS)
    for i in range(20):
        fail(t, f"user{i}", "192.0.2.7", now=float(i))
    with pytest.raises(LoginThrottled) as refused:
        t.begin("agent1001", "192.0.2.7", now=30.0)
    assert refused.value.retry_after_s == 270
    t.begin("agent1001", "192.0.2.8", now=30.0)  # another address is not blocked


def test_the_longer_of_two_blocks_is_the_one_reported() -> None:
    t = LoginThrottle(ThrottleLimits(100.0, per_user=2, per_address=2))
    fail(t, "a", "x", now=0.0)
    fail(t, "b", "x", now=50.0)
    fail(t, "a", "y", now=60.0)
    with pytest.raises(LoginThrottled) as refused:
        t.begin("a", "x", now=70.0)  # user a free at 100, address x free at 100
    assert refused.value.retry_after_s == 30
    fail(t, "c", "x", now=100.0)  # x: failures at 50, 100 -> free at 150
    fail(t, "a", "y", now=110.0)  # user a: failures at 60, 110 -> free at 160
    with pytest.raises(LoginThrottled) as refused:
        t.begin("a", "x", now=120.0)
    assert refused.value.retry_after_s == 40
    assert "'a'" in refused.value.key


def test_retry_after_is_at_least_one_second() -> None:
    t = LoginThrottle(ThrottleLimits(10.0, per_user=1, per_address=100))
    fail(t, "u", None, now=0.0)
    with pytest.raises(LoginThrottled) as refused:
        t.begin("u", None, now=9.99)
    assert refused.value.retry_after_s == 1


def test_a_spray_of_user_names_is_bounded_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle_module, "MAX_KEYS", 50)
    t = LoginThrottle(LIMITS)
    for i in range(500):
        fail(t, f"guess{i}", None, now=0.0)
    assert t.tracked()[0] == 50


def test_limits_are_settings_with_defaults_and_environment_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = AuthSettings().login_throttle.limits()
    assert defaults == ThrottleLimits(300.0, 5, 20)
    monkeypatch.setenv("CTI_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_USER", "3")
    monkeypatch.setenv("CTI_AUTH__LOGIN_THROTTLE__WINDOW_S", "60")
    settings = load_settings()
    assert settings.auth.login_throttle.limits() == ThrottleLimits(60.0, 3, 20)
