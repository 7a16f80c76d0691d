"""The service's event loop (cti/platform/event_loop.py): uvloop where installed, asyncio's own
when asked, and a clear error when uvloop is asked for and missing."""

from __future__ import annotations

import sys

import pytest

from cti.platform import event_loop
from cti.platform.settings import Settings


async def _kind() -> str:
    return event_loop.loop_name()


def test_auto_runs_on_uvloop_where_it_is_installed() -> None:  # a dependency off Windows
    assert event_loop.run(_kind()) == "uvloop"
    assert event_loop.run(_kind(), "uvloop") == "uvloop"


def test_asyncio_runs_on_asyncios_own_loop() -> None:
    assert event_loop.run(_kind(), "asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert event_loop.run(_kind()) == "asyncio"
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        event_loop.run(_kind(), "uvloop")


def test_the_setting_takes_only_known_loops() -> None:
    assert Settings().event_loop == "auto"
    assert Settings(event_loop="asyncio").event_loop == "asyncio"
    with pytest.raises(ValueError, match="event_loop"):
        Settings(event_loop="trio")
