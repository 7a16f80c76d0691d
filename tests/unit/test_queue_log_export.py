"""The queue_log from the kept events (`cti export queue-log`, SQLite through the real
migration) and the file the service appends to as events happen."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cti.cli import app
from cti.events import (
    AgentStateChanged,
    CallArrived,
    CallConnected,
    CallEnded,
    CallLeftQueue,
    CallOffered,
    CallQueued,
    DomainEvent,
    Envelope,
    OfferWithdrawn,
)
from cti.features.events import queue_log_file
from cti.features.events.queue_log_export import ExportStats, queue_log_export
from cti.features.events.queue_log_file import QueueLogFile
from cti.features.events.store import EventLog
from cti.features.routing.rules import load_rules
from cti.platform.bus import InProcessBus
from cti.platform.db.base import make_engine, make_sessionmaker
from cti.platform.db.migrate import upgrade_async

RULES = Path(__file__).resolve().parents[1] / "e2e" / "data" / "routing_rules.yaml"
T0 = datetime(2026, 3, 2, 1, 0, 0, tzinfo=UTC)
E0 = int(T0.timestamp())


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# A caller queued, one ring-no-answer, answered, completed; a caller who abandons; an agent
# who logs in and pauses. The first call entered its queue 10 minutes before the second.
EVENTS: list[DomainEvent] = [
    AgentStateChanged("1001", "logged_out", "available", t(-700)),
    CallArrived("c1", t(-601), "c1", "+8613800000001", "4000"),
    CallQueued("c1", "billing", 0, 1, t(-600)),
    CallOffered("c1", "1001", "billing", 1.0, {}, t(-599), "o1", "+8613800000001"),
    OfferWithdrawn("c1", "1001", "no_answer", t(-596), "o1"),
    CallOffered("c1", "1003", "billing", 4.0, {}, t(-596), "o2", "+8613800000001"),
    AgentStateChanged("1003", "reserved", "on_call", t(-595), None, "c1"),
    CallConnected("c1", "1003", "billing", 5.0, t(-595)),
    CallEnded("c1", t(5), 16, "Normal Clearing", "caller"),
    CallArrived("c2", t(10), "c2", "+8613800000002", "4000"),
    CallQueued("c2", "tech", 0, 1, t(12)),
    CallEnded("c2", t(20), 16, "Normal Clearing", "caller"),
    CallLeftQueue("c2", "tech", "abandoned", 8.0, t(20)),
    AgentStateChanged("1001", "available", "paused", t(30), "lunch"),
]


async def kept_events(url: str, events: Sequence[DomainEvent]) -> None:
    await upgrade_async(url)
    engine = make_engine(url)
    log = EventLog(make_sessionmaker(engine))
    await log.append([Envelope(i, e) for i, e in enumerate(events, start=1)])
    assert log.pending == 0
    await engine.dispose()


@pytest.fixture
async def db(database_url: str) -> str:
    """The events kept on each backend (the queue_log e2e test reads them from SQLite only)."""
    await kept_events(database_url, EVENTS)
    return database_url


async def test_a_window_gives_its_lines_with_what_came_before_it(db: str) -> None:
    engine = make_engine(db)
    log = EventLog(make_sessionmaker(engine))
    stats = ExportStats()
    lines = [str(line) async for line in queue_log_export(
        log, t(0), t(60), load_rules(RULES), stats=stats)]
    await engine.dispose()
    # c1 entered 600 s before the window: its end in the window still has its hold time,
    # talk time and place; its ENTERQUEUE and CONNECT are before the window, so not given.
    assert lines == [
        f"{E0 + 5}|c1|billing|Agent/1003|COMPLETECALLER|5|600|1",
        f"{E0 + 12}|c2|tech|NONE|ENTERQUEUE||+8613800000002|1",
        f"{E0 + 20}|c2|tech|NONE|ABANDON|1|1|8",
        f"{E0 + 30}|NONE|billing|Agent/1001|PAUSE|lunch",
    ]
    assert (stats.events, stats.lines, stats.unreadable) == (len(EVENTS), 4, 0)


async def test_a_window_reads_past_one_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cti.features.events import queue_log_export as module

    url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    await kept_events(url, EVENTS)
    monkeypatch.setattr(module, "PAGE", 3)
    engine = make_engine(url)
    lines = [line async for line in queue_log_export(
        EventLog(make_sessionmaker(engine)), t(-3600), t(60))]
    await engine.dispose()
    assert [line.event for line in lines] == [
        "ADDMEMBER", "ENTERQUEUE", "RINGNOANSWER", "CONNECT", "COMPLETECALLER", "ENTERQUEUE",
        "ABANDON", "PAUSE",
    ]


# ----- the command ----------------------------------------------------------------------------

runner = CliRunner()


def export(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["export", "queue-log", *args], env=env or {})
    return result.exit_code, result.stdout, result.stderr


def test_the_command_prints_the_lines(db: str) -> None:
    env = {"CTI_DATABASE_URL": db, "CTI_RULES_FILE": str(RULES)}
    code, out, err = export("--since", "2026-03-02T01:00:00+00:00",
                            "--until", "2026-03-02T01:01:00Z", env=env)
    assert code == 0, err
    assert out.splitlines()[0] == f"{E0 + 5}|c1|billing|Agent/1003|COMPLETECALLER|5|600|1"
    assert len(out.splitlines()) == 4


def test_the_command_writes_a_file(db: str, tmp_path: Path) -> None:
    env = {"CTI_DATABASE_URL": db, "CTI_RULES_FILE": str(RULES)}
    target = tmp_path / "queue_log"
    code, out, err = export("--since", "2026-03-02T00:00Z", "--until", "2026-03-02T02:00Z",
                            "--output", str(target), env=env)
    assert code == 0, err
    assert out == ""
    assert len(target.read_text().splitlines()) == 8
    assert err.strip() == f"8 lines ({len(EVENTS)} events) written to {target}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "error: --since 'yesterday': not a date or time"),
        (["--since", "2026-03-02", "--until", "2026-13-01"], "error: --until '2026-13-01'"),
        (["--since", "2026-03-02", "--until", "2026-03-01"],
         "error: --since '2026-03-02' is not before --until '2026-03-01'"),
    ],
)
def test_bad_times_are_one_line(args: list[str], message: str) -> None:
    code, out, err = export(*args)
    assert code == 2
    assert out == ""
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://nobody@127.0.0.1:1/none",  # nothing listens there
        "sqlite+aiosqlite:///{tmp}/never-migrated.db",  # no events table
    ],
)
def test_a_database_that_cannot_be_read_is_one_line(url: str, tmp_path: Path) -> None:
    url = url.format(tmp=tmp_path)
    code, out, err = export("--since", "2026-03-01", env={"CTI_DATABASE_URL": url})
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: reading events from {url}: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_an_output_that_cannot_be_written_is_one_line(db: str, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "queue_log"
    code, _out, err = export("--since", "2026-03-01", "--output", str(target),
                             env={"CTI_DATABASE_URL": db})
    assert code == 2
    assert err.strip() == f"error: {target}: cannot write: No such file or directory"


# ----- the file written as events happen --------------------------------------------------


async def test_the_service_appends_each_batch_as_it_happens(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_text("1772400000|old|billing|NONE|ENTERQUEUE||+1|1\n")  # appended to, kept
    bus = InProcessBus()
    writer = QueueLogFile.install(bus, path, lambda: load_rules(RULES))
    assert writer is not None
    for event in EVENTS[:3]:
        bus.publish(event)
    await bus.drain()
    assert path.read_text().splitlines()[1:] == [
        f"{E0 - 700}|NONE|billing|Agent/1001|ADDMEMBER|",
        f"{E0 - 600}|c1|billing|NONE|ENTERQUEUE||+8613800000001|1",
    ]
    for event in EVENTS[3:]:
        bus.publish(event)
    await bus.drain()
    await bus.aclose()
    assert len(path.read_text().splitlines()) == 1 + 8
    assert writer.written == 8


def test_no_setting_no_writer() -> None:
    assert QueueLogFile.install(InProcessBus(), None) is None


async def test_a_failed_write_is_kept_and_written_with_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_log_file, "RETRY_S", 0.0)
    path = tmp_path / "not-yet" / "queue_log"
    bus = InProcessBus()
    writer = QueueLogFile.install(bus, path)
    assert writer is not None
    bus.publish(EVENTS[1])
    bus.publish(EVENTS[2])  # ENTERQUEUE: the directory is missing
    await bus.drain()
    assert (writer.failures, writer.pending) == (1, 1)
    path.parent.mkdir()
    bus.publish(EVENTS[3])
    bus.publish(EVENTS[4])  # RINGNOANSWER, after the line kept
    await bus.drain()
    await bus.aclose()
    assert [line.split("|")[4] for line in path.read_text().splitlines()] == [
        "ENTERQUEUE", "RINGNOANSWER",
    ]
    assert (writer.pending, writer.written) == (0, 2)


async def test_a_write_error_does_not_stop_other_subscribers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_log_file, "RETRY_S", 0.0)
    bus = InProcessBus()
    QueueLogFile.install(bus, tmp_path / "no" / "such" / "dir")
    seen: list[DomainEvent] = []

    async def record(event: DomainEvent) -> None:
        seen.append(event)

    bus.subscribe("test.all", record)
    for event in EVENTS:
        bus.publish(event)
    await asyncio.wait_for(bus.drain(), 5)
    await bus.aclose()
    assert seen == EVENTS
