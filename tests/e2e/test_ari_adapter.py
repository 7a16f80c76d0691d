"""The ARI adapter against the real sandbox Asterisk: errors, resilience, round trips."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from cti.cli import app
from cti.domain.calls import CallState
from cti.platform.ari.client import AriClient, probe
from cti.platform.ari.telephony import AriTelephony
from cti.platform.errors import ChannelGone, TelephonyAuthError
from cti.platform.settings import AriSettings
from tests.e2e.conftest import RunningService, wait_until
from tests.e2e.pbx import Pbx, run_sipp

pytestmark = pytest.mark.e2e


async def test_wrong_password_is_an_auth_error(pbx: Pbx) -> None:
    with pytest.raises(TelephonyAuthError, match="rejected user 'cti'"):
        await probe(AriSettings(url=pbx.ari_url, username="cti", password="wrong"))
    assert (await probe(AriSettings(url=pbx.ari_url))).startswith("22.")


def test_check_config_with_wrong_password_prints_one_line(pbx: Pbx) -> None:
    result = CliRunner().invoke(
        app, ["check-config", "--ari"],
        env={"CTI_ARI__URL": pbx.ari_url, "CTI_ARI__PASSWORD": "wrong"},
    )
    assert result.exit_code != 0
    assert result.output.strip() == (
        f"error: ARI at {pbx.ari_url} rejected user 'cti' (check ari.username / ari.password)"
    )


async def test_operation_on_a_missing_channel_is_channel_gone(pbx: Pbx) -> None:
    client = AriClient(AriSettings(url=pbx.ari_url))
    try:
        with pytest.raises(ChannelGone):
            await AriTelephony(client).answer("no-such-channel")
    finally:
        await client.close()


# One backend: the ARI adapter is the subject; the call log on both backends is proven by
# tests/service/test_call_repository.py.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_asterisk_restart_mid_call_service_reconnects_and_closes_the_lost_call(
    pbx: Pbx, cti: RunningService
) -> None:
    service = cti.service
    sipp = asyncio.create_task(run_sipp(
        pbx, "caller_wait_bye", pcap=pbx.media("speech"), max_wait_s=60, timeout=90,
    ))
    await wait_until(lambda: len(service.registry) == 1, what="call arrived")
    call_id = service.registry.sessions()[0].call.id
    await wait_until(
        lambda: (s := service.registry.get(call_id)) is None or s.call.answered_at is not None,
        what="answered",
    )
    generation = service.ari.generation
    # Asterisk goes away (and the call with it), then comes back.
    await asyncio.to_thread(pbx._script, "down")
    await asyncio.to_thread(pbx._script, "up")
    await wait_until(
        lambda: (r := service.resync.last) is not None and r.generation > generation,
        timeout=30, what="reconnect and resync",
    )
    await wait_until(lambda: service.registry.get(call_id) is None, what="lost call closed")
    row = await service.calls_repo.get(call_id)
    assert row is not None
    assert row.state is CallState.ENDED
    assert row.ended_at is not None
    # Asterisk hung the caller up on its way down.
    first = await sipp
    assert first.first("received", "BYE") is not None, first.describe()

    # The service works again: a new call is answered and greeted.
    result = await run_sipp(
        pbx, "caller_hangup", pcap=pbx.media("speech"), variables={"talk_ms": 3000}, timeout=30
    )
    assert result.ok, result.describe()
    await wait_until(lambda: len(service.registry) == 0, what="second call closed")
    rows = [c for c in await service.calls_repo.recent(5) if c.id != call_id]
    assert rows
    assert rows[0].answered_at is not None
    assert rows[0].hangup_cause == 16
