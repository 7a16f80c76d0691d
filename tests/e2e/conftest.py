"""e2e fixtures: one sandbox Asterisk for the session, and a CTI service per test."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cti.platform.ari.events import AriEvent
from cti.platform.settings import AriSettings, Settings
from cti.runtime import Service
from tests.e2e.pbx import Pbx

DATA = Path(__file__).resolve().parent / "data"
REPO_FLOWS = Path(__file__).resolve().parents[2] / "ivr_flows"

# The e2e modules that run `alone` (scripts/test runs them after the others, one at a time):
# they time waits on the line to +-250 ms or less (a loaded machine moves a hang-up by more),
# or render and install the prompts into the sounds directory every instance plays from.
# The others run on pytest-xdist workers, each with sandbox Asterisk instances of its own.
ALONE = {
    "test_waits_heard_e2e.py",  # every wait heard to one 20 ms frame
    "test_procedures_e2e.py",  # the procedures' 5 s waits +-250 ms; installs the prompts
    "test_node_takeover_e2e.py",  # the takeover's timings +-250 ms; installs the prompts
    "test_restart_resume_e2e.py",  # the procedure's deadline kept over a kill -9; installs
    "test_cluster_outages_e2e.py",  # installs the prompts
    "test_scripted_calls_figures_e2e.py",  # waits and talk times within half a second
    "test_agent_desk_e2e.py",  # the noisy line's goodbye -> hang-up +-250 ms
    "test_queue_announcements_e2e.py",  # the announcement ends within 0.2 s of the bridge
}


@pytest.hookimpl(tryfirst=True)  # before -m selects on the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == DATA.parent and item.path.name in ALONE:
            item.add_marker(pytest.mark.alone)


@pytest.fixture(scope="session")
def pbx() -> Iterator[Pbx]:
    with Pbx(os.environ.get("CTI_E2E_PBX", "e2e-core")) as instance:
        yield instance


@dataclass
class EventLog:
    """Every ARI event the service received, with the monotonic time it arrived."""

    events: list[tuple[float, AriEvent]] = field(default_factory=list)

    async def record(self, event: AriEvent) -> None:
        self.events.append((time.monotonic(), event))

    def of_type(self, type_: str) -> list[tuple[float, AriEvent]]:
        return [(t, e) for t, e in self.events if e.type == type_]

    async def wait_for(
        self, predicate: Callable[[AriEvent], bool], timeout: float = 10.0
    ) -> tuple[float, AriEvent]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, e in self.events:
                if predicate(e):
                    return t, e
            await asyncio.sleep(0.02)
        raise AssertionError(f"no matching event within {timeout} s; got {self.types()}")

    def types(self) -> list[str]:
        return [e.type for _, e in self.events]


def service_settings(pbx: Pbx, database_url: str, **extra: object) -> Settings:
    return Settings(
        database_url=database_url,
        ari=AriSettings(
            url=pbx.ari_url,
            username=pbx.ari_user,
            password=pbx.ari_password,
            app=pbx.app,
            reconnect_initial=0.1,
            reconnect_max=1.0,
        ),
        sounds_dir=pbx.sounds_dir,
        **{"inbound_flow": "agent_greeting", **extra},  # type: ignore[arg-type]
    )


@dataclass
class RunningService:
    service: Service
    log: EventLog


@pytest.fixture
async def cti(pbx: Pbx, database_url: str) -> AsyncIterator[RunningService]:
    service = Service.build(service_settings(pbx, database_url))
    log = EventLog()
    service.dispatcher.listen(log.record)
    await service.start()
    try:
        yield RunningService(service, log)
    finally:
        await service.stop()


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def call_of(service: Service, caller: str) -> str | None:
    """The call id (the caller's channel id) of the call from `caller`, once it arrived."""
    for session in service.registry.sessions():
        if session.call.caller_number == caller:
            return session.call.id
    return None


async def call_from(service: Service, caller: str, timeout: float = 10.0) -> str:
    await wait_until(lambda: call_of(service, caller) is not None, timeout,
                     what=f"call from {caller}")
    call_id = call_of(service, caller)
    assert call_id is not None
    return call_id


def flows_dir(
    tmp: Path, repo: Sequence[str] = ("agent_greeting",),
    data: Sequence[str] | None = ("routing_direct",),
) -> Path:
    """A flows directory of the test's own: product flows `repo` (ivr_flows/) and test flows
    `data` (tests/e2e/data/flows/; None: all of them)."""
    flows = tmp / "flows"
    flows.mkdir()
    for name in repo:
        shutil.copy(REPO_FLOWS / f"{name}.yaml", flows)
    paths = (DATA / "flows").glob("*.yaml") if data is None else (
        DATA / "flows" / f"{name}.yaml" for name in data
    )
    for path in paths:
        shutil.copy(path, flows)
    return flows
