"""The sandbox PBX and its SIPp helpers work against a real Asterisk (no CTI involved)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.pbx import PBX_ROOT, Pbx, register_agent, run_sipp

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pbx() -> Iterator[Pbx]:
    with Pbx("sandbox-test") as instance:
        yield instance


def ari_get(pbx: Pbx, path: str) -> httpx.Response:
    return httpx.get(f"{pbx.ari_url}{path}", auth=(pbx.ari_user, pbx.ari_password), timeout=5)


def test_two_instances_run_side_by_side_and_stop_cleanly(pbx: Pbx) -> None:
    with Pbx("sandbox-second") as second:
        assert ari_get(pbx, "/asterisk/info").status_code == 200
        assert ari_get(second, "/asterisk/info").status_code == 200
        assert second.http_port != pbx.http_port
    assert not second.is_running()
    assert pbx.is_running()


async def test_call_to_the_stasis_app_without_subscriber_is_declined(pbx: Pbx) -> None:
    result = await run_sipp(
        pbx, "caller_wait_bye", pcap=pbx.media("speech"), max_wait_s=5, timeout=15
    )
    assert result.returncode == 1, result.describe()
    assert result.first("received", "603") is not None, result.describe()


async def test_far_end_hangup_arrives_as_bye_after_the_dialplan_wait(pbx: Pbx) -> None:
    result = await run_sipp(
        pbx,
        "caller_wait_bye",
        service="test-bye-2",
        pcap=pbx.media("noise"),
        max_wait_s=10,
        timeout=20,
    )
    assert result.ok, result.describe()
    answered, bye = result.first("received", "200"), result.first("received", "BYE")
    assert answered is not None
    assert bye is not None
    assert 1.8 <= (bye.at - answered.at).total_seconds() <= 3.0


async def test_caller_hangs_up_after_talk_ms(pbx: Pbx) -> None:
    result = await run_sipp(
        pbx,
        "caller_hangup",
        service="test-echo",
        pcap=pbx.media("speech", "pcma"),
        variables={"talk_ms": 1500},
        timeout=15,
    )
    assert result.ok, result.describe()
    answered, bye = result.first("received", "200"), result.first("sent", "BYE")
    assert answered is not None
    assert bye is not None
    assert 1.4 <= (bye.at - answered.at).total_seconds() <= 2.5


async def test_rfc4733_digit_reaches_the_dialplan_after_the_delay(pbx: Pbx) -> None:
    result = await run_sipp(
        pbx,
        "caller_dtmf_wait_bye",
        service="test-wait-digit",
        pcap=pbx.media("silence"),
        dtmf_pcap=pbx.media("dtmf-7"),
        variables={"dtmf_delay_ms": 1000},
        max_wait_s=10,
        timeout=20,
    )
    assert result.ok, result.describe()
    answered, bye = result.first("received", "200"), result.first("received", "BYE")
    assert answered is not None
    assert bye is not None
    # the dialplan hangs up on the digit: delay + key-down time, far less than its 10 s wait
    assert 1.0 <= (bye.at - answered.at).total_seconds() <= 2.5
    assert "DTMF 7 received" in _messages_log(pbx)


def _messages_log(pbx: Pbx) -> str:
    return (PBX_ROOT / f"var/log/asterisk-{pbx.name}/messages.log").read_text(errors="replace")


async def _originate(pbx: Pbx, endpoint: str, timeout_s: int = 5) -> str:
    async with httpx.AsyncClient(auth=(pbx.ari_user, pbx.ari_password), timeout=5) as ari:
        reply = await ari.post(
            f"{pbx.ari_url}/channels",
            params={
                "endpoint": endpoint,
                "context": "test-sources",
                "extension": "echo",
                "priority": "1",
                "timeout": str(timeout_s),
            },
        )
        reply.raise_for_status()
        return str(reply.json()["id"])


async def _channel_state(pbx: Pbx, channel_id: str) -> str | None:
    async with httpx.AsyncClient(auth=(pbx.ari_user, pbx.ari_password), timeout=5) as ari:
        reply = await ari.get(f"{pbx.ari_url}/channels/{channel_id}")
        return str(reply.json()["state"]) if reply.status_code == 200 else None


async def test_registered_agent_answers_after_its_ring_delay(pbx: Pbx) -> None:
    async with await register_agent(pbx, "1004", ring_ms=600) as phone:
        channel = await _originate(pbx, "PJSIP/1004")
        await asyncio.sleep(0.3)
        assert await _channel_state(pbx, channel) == "Ringing"
        await asyncio.sleep(0.8)
        assert await _channel_state(pbx, channel) == "Up"
        assert len(phone.invites()) == 1
        async with httpx.AsyncClient(auth=(pbx.ari_user, pbx.ari_password)) as ari:
            await ari.delete(f"{pbx.ari_url}/channels/{channel}")
    assert "1004" not in pbx.cli("pjsip show contacts")


async def test_agent_that_never_answers_is_cancelled_at_the_dial_timeout(pbx: Pbx) -> None:
    async with await register_agent(pbx, "1005", mode="noanswer") as phone:
        channel = await _originate(pbx, "PJSIP/1005", timeout_s=1)
        await asyncio.sleep(1.8)
        assert await _channel_state(pbx, channel) is None
        received = [m.method_or_status for m in phone.messages() if m.direction == "received"]
        assert "CANCEL" in received
