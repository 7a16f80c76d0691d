"""Secrets are written readable by their owner only: scripts/start's token secret (var/).

The step is run as scripts/start has it (the lines between its `# auth-secret:` markers), under
a permissive umask, on a fresh checkout and on one an older version left world-readable."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from cti.platform.settings import REPO_ROOT


def secret_step() -> str:
    lines = (REPO_ROOT / "scripts" / "start").read_text(encoding="utf-8").splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith("# auth-secret:"))
    end = lines.index("# auth-secret: end")
    return "\n".join(lines[begin:end])


def run_step(cwd: Path) -> None:
    script = f"set -euo pipefail\numask 022\nmkdir -p var\n{secret_step()}\n"
    subprocess.run(["bash", "-c", script], cwd=cwd, check=True, timeout=30)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_token_secret_is_written_0600(tmp_path: Path) -> None:
    run_step(tmp_path)
    secret = tmp_path / "var" / "auth_secret"
    assert mode(secret) == 0o600
    assert len(secret.read_text(encoding="utf-8")) >= 32  # Tokens needs 32 bytes


def test_a_world_readable_secret_is_made_0600_and_kept(tmp_path: Path) -> None:
    secret = tmp_path / "var" / "auth_secret"
    secret.parent.mkdir()
    secret.write_text("x" * 40, encoding="utf-8")
    secret.chmod(0o644)
    run_step(tmp_path)
    assert mode(secret) == 0o600
    assert secret.read_text(encoding="utf-8") == "x" * 40  # agents stay logged in
