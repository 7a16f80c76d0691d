"""A PostgreSQL server of a test's own (initdb + pg_ctl in a temporary directory, on a free
port), that the test may restart without touching the machine's shared one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("CTI_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """initdb with trust authentication (local only), run as the `postgres` user when the test
    runs as root (PostgreSQL refuses to run as root)."""

    def __init__(self, port: int) -> None:
        self.port = port
        # not pytest's tmp_path (0700): the postgres user must read it
        self.dir = Path(tempfile.mkdtemp(prefix="cti-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"

    def _as_pg(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)

    async def _run(self, *argv: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._as_pg(*argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {out.decode()[-2000:]}")

    async def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        await self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth=trust", "--no-sync", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                       "max_connections = 200\nshared_buffers = 32MB\n")
        await self._pg_ctl("start")

    async def _pg_ctl(self, action: str, *extra: str) -> None:
        await self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                        str(self.dir / "server.log"), "-w", "-t", "30", action, *extra)

    async def restart(self) -> None:
        """As an operator would: stop fast (sessions cut), start again, wait until it accepts."""
        await self._pg_ctl("restart", "-m", "fast")

    async def stop_server(self) -> None:
        await self._pg_ctl("stop", "-m", "fast")

    async def start_server(self) -> None:
        await self._pg_ctl("start")

    async def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                await self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
