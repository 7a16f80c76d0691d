"""CTI nodes as real processes (`python -m cti serve -c <file>`) for the cluster e2e tests and the
failover benchmark: started with a config file of their own, asked over HTTP, killed with
SIGKILL like a crashed host."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.pbx import Pbx, free_port

REDIS_URL = os.environ.get("CTI_TEST_REDIS", "redis://127.0.0.1:6379/0")
SECRET = "e2e-cluster-secret-" + "x" * 32


def cluster_prefix() -> str:
    """Every run its own keys in the shared Redis."""
    return f"cti-e2e-{uuid.uuid4().hex[:10]}:"


@dataclass
class Node:
    name: str
    dir: Path
    settings: dict[str, Any]
    port: int = field(default_factory=lambda: free_port("tcp"))
    proc: asyncio.subprocess.Process | None = None
    last_health: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.dir / f"node-{self.name}.log"

    async def start(self) -> None:
        config = self.dir / f"node-{self.name}.yaml"
        config.write_text(yaml.safe_dump({
            **self.settings, "http_port": self.port,
            "cluster": {**self.settings.get("cluster", {}), "node_id": self.name,
                        "advertise_url": self.url},
        }))
        out = self.log.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cti", "serve", "-c", str(config),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            out.close()

    async def health(self) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                r = await client.get(f"{self.url}/health")
        except httpx.HTTPError as exc:
            self.last_health = repr(exc)
            return None
        self.last_health = f"{r.status_code} {r.text}"
        return r.json() if r.status_code == 200 else None

    async def wait_role(self, role: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"node {self.name} ended ({self.proc.returncode}): "
                                     f"{self.tail()}")
            h = await self.health()
            if h is not None and h["cluster"]["role"] == role and (
                role != "active" or all(  # active: every Asterisk driven, its resync done
                    p["connected"] and p["last_resync"] is not None for p in h["pbxs"])
            ):
                return h
            await asyncio.sleep(0.02)
        raise AssertionError(f"node {self.name} not {role} after {timeout} s "
                             f"(health: {self.last_health}): {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease released, sockets dropped by the kernel."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def node_settings(
    pbx: Pbx | Sequence[Pbx], database_url: str, prefix: str, **extra: Any
) -> dict[str, Any]:
    """What every node of one cluster shares. Several instances (trunked, see pbx_pair): the
    nodes drive them all (`asterisks:`, ids = their systemnames)."""
    reconnect = {"reconnect_initial": 0.1, "reconnect_max": 1.0}
    if isinstance(pbx, Pbx):
        first = pbx
        pbx_settings: dict[str, Any] = {"ari": {
            "url": pbx.ari_url, "username": pbx.ari_user, "password": pbx.ari_password,
            "app": pbx.app, **reconnect}}
    else:
        first = pbx[0]
        pbx_settings = {"asterisks": [{**p.asterisk_setting(), **reconnect} for p in pbx]}
    return {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "auth_secret": SECRET,
        "auto_migrate": False,  # the test migrated it
        "cluster": {"key_prefix": prefix},
        **pbx_settings,
        "sounds_dir": str(first.sounds_dir),  # one chroot: every instance's sound:custom/
        **extra,
    }
