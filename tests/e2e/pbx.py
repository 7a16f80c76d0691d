"""Helpers for the e2e tests: a sandbox Asterisk instance (scripts/pbx) and SIPp calls in it.

    with Pbx("e2e-calls") as pbx:                 # own ports, own dirs; stopped at the end
        async with await register_agent(pbx, "1001", ring_ms=500) as phone:
            result = await run_sipp(pbx, "caller_wait_bye", service="4000",
                                    pcap=pbx.media("speech"), max_wait_s=30, timeout=40)
        assert result.ok and result.first("received", "BYE") is not None

SIPp runs inside the chroot (scripts/pbx sipp), so every file it reads or writes lives under
the chroot: the helpers copy scenarios and captures into a per-instance work directory there
and translate paths. Every process started here is stopped by its owner's exit (or, as a last
resort, at interpreter exit).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

from tests.e2e import media

REPO_ROOT = Path(__file__).resolve().parents[2]
PBX_SCRIPT = REPO_ROOT / "scripts" / "pbx"
SCENARIO_DIR = Path(__file__).resolve().parent / "sipp"
PBX_ROOT = Path(os.environ.get("CTI_PBX_ROOT", "/var/cache/cti/pbx-root"))
CUSTOM_SOUNDS = "/usr/local/share/asterisk/sounds/custom"  # inside the chroot: sound:custom/NAME
DEFAULT_CALLER = "+8613800000001"
AgentMode = Literal["answer", "noanswer", "busy", "answer_bye"]


class PbxError(RuntimeError):
    """scripts/pbx or sipp could not do what a test asked; the message carries their output."""


# --- ports -----------------------------------------------------------------------------------

_handed_out: set[int] = set()


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tcp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(kind: Literal["udp", "tcp"] = "udp", count: int = 1, align: int = 1) -> int:
    """A port P (P % align == 0) with P..P+count-1 free, from 30000-32767: below the kernel's
    ephemeral range and above the sandbox instances' RTP ranges. Never the same twice per run."""
    check = _udp_free if kind == "udp" else _tcp_free
    start = 30000 + (os.getpid() * 37) % 2000
    for offset in range(0, 2768, align):
        base = 30000 + (start - 30000 + offset) % 2768
        base -= base % align
        ports = range(base, base + count)
        if base + count <= 32768 and not _handed_out & set(ports) and all(map(check, ports)):
            _handed_out.update(ports)
            return base
    raise PbxError(f"no {count} free {kind} ports in 30000-32767")


# --- the Asterisk instance -------------------------------------------------------------------


@dataclass(eq=False)
class Pbx:
    """One sandbox Asterisk instance, started by `up()` (or `with`) and stopped by `down()`.

    Ports default to free ones. An instance that was already running when `up()` ran (for
    example the developer's "main") is used as it is and left running.
    """

    name: str = "e2e"
    http_port: int | None = None
    sip_port: int | None = None
    rtp_start: int | None = None
    rtp_size: int = 400
    ari_user: str = "cti"
    ari_password: str = "cti-secret"
    app: str = "cti"
    # Asterisk's systemname (= the PBX id in the CTI's settings): channel ids start with it.
    systemname: str | None = None
    # Other instances trunked with this one, id -> SIP port (see pbx_pair).
    trunks: dict[str, int] = field(default_factory=dict)
    started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        # Two test runs on one machine (two checkouts), or two pytest-xdist workers of one run
        # (PYTEST_XDIST_WORKER: gw0, gw1, ...), must not share an instance: each would take the
        # other's calls (an instance already up is used as it is).
        if self.name != "main":
            suffixes = (os.environ.get("CTI_E2E_INSTANCE_SUFFIX"),
                        os.environ.get("PYTEST_XDIST_WORKER"))
            self.name = "-".join([self.name, *filter(None, suffixes)])
        if self.name != "main":
            self.http_port = self.http_port or free_port("tcp")
            self.sip_port = self.sip_port or free_port("udp")
            if self.rtp_start is None:
                # a block of its own in 21000-29999, chosen by name (up() moves on if taken)
                block = zlib.crc32(self.name.encode()) % (9000 // self.rtp_size)
                self.rtp_start = 21000 + block * self.rtp_size
        else:
            self.http_port = self.http_port or 8088
            self.sip_port = self.sip_port or 5060
            self.rtp_start = self.rtp_start or 10000

    # -- addresses and settings
    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/ari"

    @property
    def sip_address(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    @property
    def sounds_dir(self) -> Path:
        """Host path of sound:custom/ (the CTI writes prompts here)."""
        return PBX_ROOT / CUSTOM_SOUNDS.lstrip("/")

    def cti_env(self) -> dict[str, str]:
        """Environment for a CTI service (cti.platform.settings) talking to this instance."""
        return {
            "CTI_ARI__URL": self.ari_url,
            "CTI_ARI__USERNAME": self.ari_user,
            "CTI_ARI__PASSWORD": self.ari_password,
            "CTI_ARI__APP": self.app,
            "CTI_SOUNDS_DIR": str(self.sounds_dir),
        }

    def env(self) -> dict[str, str]:
        """Environment for scripts/pbx naming this instance."""
        assert self.rtp_start is not None
        env = dict(os.environ)
        env.update(
            CTI_PBX_ROOT=str(PBX_ROOT),
            CTI_PBX_INSTANCE=self.name,
            CTI_PBX_HTTP_PORT=str(self.http_port),
            CTI_PBX_SIP_PORT=str(self.sip_port),
            CTI_PBX_RTP_START=str(self.rtp_start),
            CTI_PBX_RTP_END=str(self.rtp_start + self.rtp_size - 1),
            CTI_ARI_USER=self.ari_user,
            CTI_ARI_PASSWORD=self.ari_password,
            CTI_ARI_APP=self.app,
            CTI_PBX_SYSTEMNAME=self.systemname or "",
            CTI_PBX_TRUNKS=" ".join(f"{peer}:{port}" for peer, port in self.trunks.items()),
        )
        return env

    def asterisk_setting(self) -> dict[str, str]:
        """This instance as an entry of the CTI's `asterisks:` setting (needs a systemname)."""
        assert self.systemname, "an entry of asterisks: needs the instance's systemname (its id)"
        return {"id": self.systemname, "url": self.ari_url, "username": self.ari_user,
                "password": self.ari_password, "app": self.app}

    # -- work directory inside the chroot
    @property
    def workdir(self) -> Path:
        """Host path of this instance's scratch directory inside the chroot."""
        path = PBX_ROOT / "tmp" / "cti-e2e" / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def inside(self, host_path: Path) -> str:
        """The chroot's name for a host path under the chroot."""
        try:
            return "/" + str(host_path.resolve().relative_to(PBX_ROOT.resolve()))
        except ValueError:
            raise PbxError(f"{host_path} is not inside the chroot {PBX_ROOT}") from None

    def stage(self, host_path: Path) -> str:
        """Make a host file visible to sipp (copy it into the work dir unless it is there)."""
        if host_path.resolve().is_relative_to(PBX_ROOT.resolve()):
            return self.inside(host_path)
        target = self.workdir / host_path.name
        # copy, then rename: a sipp starting at the same moment never reads half a file
        partial = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}")
        shutil.copyfile(host_path, partial)
        os.replace(partial, target)
        return self.inside(target)

    def media(self, name: str, codec: media.Codec = "pcmu") -> Path:
        """Host path of a standard capture (silence, speech, speech-quiet, speech-noisy, noise,
        hiss; dtmf-0 .. dtmf-9, dtmf-star, dtmf-pound), made once per chroot."""
        cache = PBX_ROOT / "tmp" / "cti-e2e" / "media"
        if not cache.exists():
            # made aside and renamed: a parallel test run never sees half-written captures
            fresh = cache.with_name(f"media.{os.getpid()}")
            media.write_pcaps(fresh)
            try:
                fresh.rename(cache)
            except OSError:  # another run got there first
                shutil.rmtree(fresh, ignore_errors=True)
        path = cache / (f"{name}.pcap" if name.startswith("dtmf-") else f"{name}-{codec}.pcap")
        if not path.exists():
            raise PbxError(f"no standard capture {path.name} (see media.write_pcaps)")
        return path

    # -- lifecycle
    def _script(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(PBX_SCRIPT), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise PbxError(
                f"scripts/pbx {' '.join(args)} (instance {self.name}) exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        return done

    def is_running(self) -> bool:
        return self._script("status", check=False).returncode == 0

    def _adopt_running_settings(self) -> None:
        """A running instance keeps the ports it was started with: read them back."""
        env_file = PBX_ROOT / "etc" / f"asterisk-{self.name}" / "instance.env"
        values = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
        )
        self.http_port = int(values["HTTP_PORT"])
        self.sip_port = int(values["SIP_PORT"])
        self.rtp_start = int(values["RTP_START"])

    def up(self) -> Pbx:
        if self.is_running():
            if self.name != "main":
                self._adopt_running_settings()
            return self
        for _ in range(9000 // self.rtp_size):
            done = self._script("up", check=False)
            if done.returncode == 0:
                break
            if "overlap" not in done.stderr or self.rtp_start is None:
                raise PbxError(
                    f"scripts/pbx up (instance {self.name}) exited {done.returncode}:\n"
                    f"{done.stdout}{done.stderr}"
                )
            # another running instance has this RTP block: take the next one
            self.rtp_start = 21000 + (self.rtp_start - 21000 + self.rtp_size) % (
                9000 // self.rtp_size * self.rtp_size
            )
        else:
            raise PbxError(f"no free RTP block for instance {self.name}")
        self.started = True
        _live_instances.add(self)
        return self

    def down(self) -> None:
        """Stop the instance if this object started it (leaves someone else's running)."""
        if self.started:
            self._script("down")
            self.started = False
        _live_instances.discard(self)

    def cli(self, command: str) -> str:
        return self._script("cli", command).stdout

    def crash(self) -> None:
        """SIGKILL the instance's Asterisk (a PBX that goes away without a word: no BYE, no
        StasisEnd), then let `down()` clean up after it."""
        pid_file = PBX_ROOT / "run" / f"asterisk-{self.name}" / "asterisk.pid"
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.02)
        self.down()

    def __enter__(self) -> Pbx:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()


_live_instances: set[Pbx] = set()


def pbx_pair(name: str = "e2e-pair", ids: tuple[str, str] = ("pbxa", "pbxb")) -> tuple[Pbx, Pbx]:
    """Two instances trunked together (not started): systemnames `ids`, each a trunk endpoint
    on the other, so `PJSIP/<agent>@<id>` on one rings an agent registered on the other."""
    a = Pbx(f"{name}-a", systemname=ids[0])
    b = Pbx(f"{name}-b", systemname=ids[1])
    assert a.sip_port is not None
    assert b.sip_port is not None
    a.trunks = {ids[1]: b.sip_port}
    b.trunks = {ids[0]: a.sip_port}
    return a, b


# --- SIPp ------------------------------------------------------------------------------------

_TRACE_HEADER = re.compile(
    r"^-{20,} (\S+)\n(UDP|TCP) message (sent|received) \[\d+\] bytes ?:\n\n", re.M
)


@dataclass(frozen=True)
class SipMessage:
    at: datetime  # UTC, as sipp stamped it
    direction: Literal["sent", "received"]
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def method_or_status(self) -> str:
        """'INVITE', 'BYE', ... for requests; '200', '603', ... for responses."""
        parts = self.first_line.split()
        if not parts:
            return ""
        return parts[1] if parts[0].startswith("SIP/") else parts[0]


def parse_message_trace(text: str) -> list[SipMessage]:
    """The messages of a sipp -trace_msg file, in order."""
    heads = list(_TRACE_HEADER.finditer(text))
    messages = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        direction: Literal["sent", "received"] = "sent" if head.group(3) == "sent" else "received"
        at = datetime.fromisoformat(head.group(1))
        messages.append(SipMessage(at, direction, text[head.end() : end].strip("\n")))
    return messages


@dataclass
class SippResult:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    trace: Path  # host path of the -trace_msg file
    errors: Path  # host path of the -trace_err file
    started_at: float  # time.monotonic() at start
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Every call of the scenario succeeded (sipp exit code 0)."""
        return self.returncode == 0 and not self.timed_out

    def messages(self) -> list[SipMessage]:
        return (
            parse_message_trace(self.trace.read_text(errors="replace"))
            if self.trace.exists()
            else []
        )

    def first(self, direction: Literal["sent", "received"], what: str) -> SipMessage | None:
        """The first message sent/received whose method or status code is `what`."""
        return next(
            (m for m in self.messages() if m.direction == direction and m.method_or_status == what),
            None,
        )

    def describe(self) -> str:
        """Exit code, the SIP exchange and sipp's unexpected-message log: for assert messages."""
        flow = "\n".join(
            f"  {m.at:%H:%M:%S.%f} {m.direction:8} {m.first_line}" for m in self.messages()
        )
        errors = self.errors.read_text(errors="replace")[-2000:] if self.errors.exists() else ""
        return (
            f"sipp exit {self.returncode} (timed out: {self.timed_out}) "
            f"after {self.duration_s:.1f} s\n"
            f"{flow}\n{errors}{self.stderr[-2000:]}"
        )


def _scenario_path(scenario: str | Path) -> Path:
    path = Path(scenario)
    if path.suffix != ".xml":
        path = SCENARIO_DIR / f"{scenario}.xml"
    if not path.exists():
        names = sorted(p.stem for p in SCENARIO_DIR.glob("*.xml"))
        raise PbxError(f"no sipp scenario {scenario!r}; the shipped ones: {', '.join(names)}")
    return path


_live_processes: set[asyncio.subprocess.Process] = set()


async def _stop(proc: asyncio.subprocess.Process, grace_s: float = 3.0) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _sipp_args(
    pbx: Pbx,
    scenario: Path,
    tag: str,
    *,
    keys: Mapping[str, str],
    variables: Mapping[str, int | str],
    sip_port: int,
    media_port: int,
    extra: Sequence[str],
) -> tuple[list[str], Path, Path]:
    staged = pbx.stage(scenario)
    trace, errors = pbx.workdir / f"{tag}.messages.log", pbx.workdir / f"{tag}.errors.log"
    for stale in (trace, errors):
        stale.unlink(missing_ok=True)
    args = ["-sf", staged, "-p", str(sip_port), "-mp", str(media_port), "-nostdin"]
    args += ["-trace_msg", "-message_file", pbx.inside(trace)]
    args += ["-trace_err", "-error_file", pbx.inside(errors)]
    for key, value in keys.items():
        args += ["-key", key, value]
    for name, number in variables.items():
        args += ["-set", name, str(number)]
    return [*args, *extra], trace, errors


async def run_sipp(
    pbx: Pbx,
    scenario: str | Path,
    *,
    service: str = "4000",
    pcap: Path | None = None,
    dtmf_pcap: Path | None = None,
    caller: str = DEFAULT_CALLER,
    caller_name: str = "E2E Caller",
    keys: Mapping[str, str] | None = None,
    variables: Mapping[str, int | str] | None = None,
    calls: int = 1,
    rate: float = 10.0,
    max_wait_s: float | None = None,
    timeout: float = 60.0,
    extra_args: Sequence[str] = (),
) -> SippResult:
    """Run a sipp scenario (a name in tests/e2e/sipp/ or an XML path) against `pbx`.

    pcap/dtmf_pcap: host paths of RTP captures, passed as the [pcap]/[dtmf_pcap] keys.
    variables: -set globals, e.g. {"talk_ms": 5000, "dtmf_delay_ms": 2000}.
    max_wait_s: how long each expected message may take (sipp -recv_timeout), e.g. the far
    end's BYE; a call that waits longer fails. timeout: wall clock for the whole run, after
    which sipp is stopped and the result says timed_out.
    """
    path = _scenario_path(scenario)
    all_keys: dict[str, str] = {"caller": caller, "caller_name": caller_name, **(keys or {})}
    if pcap is not None:
        all_keys["pcap"] = pbx.stage(pcap)
    if dtmf_pcap is not None:
        all_keys["dtmf_pcap"] = pbx.stage(dtmf_pcap)
    extra = ["-s", service, "-m", str(calls), "-r", f"{rate:g}", *extra_args]
    if max_wait_s is not None:
        extra += ["-recv_timeout", str(round(max_wait_s * 1000))]
    sip_port, media_port = free_port("udp"), free_port("udp", count=4, align=2)
    tag = f"{path.stem}-{sip_port}"
    args, trace, errors = _sipp_args(
        pbx,
        path,
        tag,
        keys=all_keys,
        variables=variables or {},
        sip_port=sip_port,
        media_port=media_port,
        extra=[*extra, pbx.sip_address],
    )
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(PBX_SCRIPT),
        "sipp",
        *args,
        env=pbx.env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _live_processes.add(proc)
    timed_out = False
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        timed_out = True
        await _stop(proc)
        out, err = b"", b""
    finally:
        await _stop(proc)
        _live_processes.discard(proc)
    return SippResult(
        returncode=None if timed_out else proc.returncode,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        trace=trace,
        errors=errors,
        started_at=started,
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
    )


@dataclass
class AgentPhone:
    """A registered agent softphone (sipp) that answers, ignores or refuses calls."""

    pbx: Pbx
    agent: str
    mode: AgentMode
    process: asyncio.subprocess.Process
    trace: Path
    errors: Path

    def messages(self) -> list[SipMessage]:
        return (
            parse_message_trace(self.trace.read_text(errors="replace"))
            if self.trace.exists()
            else []
        )

    def invites(self) -> list[SipMessage]:
        return [
            m
            for m in self.messages()
            if m.direction == "received" and m.method_or_status == "INVITE"
        ]

    async def stop(self, unregister: bool = True) -> None:
        """Stop the phone and remove its registration (so the PBX does not dial a dead port;
        `unregister=False`: its PBX is gone, nobody to tell)."""
        if self.process.returncode is None:
            await _stop(self.process)
        _live_processes.discard(self.process)
        if not unregister:
            return
        result = await run_sipp(
            self.pbx,
            "agent_unregister",
            keys={"agent": self.agent},
            extra_args=["-au", self.agent, "-ap", f"agent-{self.agent}"],
            timeout=10,
        )
        if not result.ok:
            raise PbxError(f"unregistering agent {self.agent} failed: {result.describe()}")

    async def __aenter__(self) -> AgentPhone:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def register_agent(
    pbx: Pbx,
    agent: str = "1001",
    *,
    mode: AgentMode = "answer",
    ring_ms: int = 1000,
    password: str | None = None,
    timeout: float = 10.0,
    pcap: Path | None = None,
    talk_ms: int = 5000,
) -> AgentPhone:
    """Start agent `agent`'s phone: REGISTER (digest auth), then answer each call after ring_ms
    and echo its audio ("answer"; "answer_bye": and hang up first after talk_ms), ring until
    cancelled ("noanswer"), or refuse 486 ("busy").
    Returns once the registration is accepted; stop it with `await phone.stop()` or `async with`."""
    scenario = _scenario_path("agent_register")
    # with a pcap, an answering phone sends that audio instead of echoing the caller's
    playing = pcap is not None and mode == "answer"
    ooc = pbx.stage(_scenario_path("agent_answer_play" if playing else f"agent_{mode}"))
    sip_port, media_port = free_port("udp"), free_port("udp", count=4, align=2)
    args, trace, errors = _sipp_args(
        pbx,
        scenario,
        f"agent-{agent}-{sip_port}",
        keys={"agent": agent, **({"pcap": pbx.stage(pcap)} if playing and pcap else {})},
        # ring_ms exists only in agent_answer.xml (sipp refuses to -set an undeclared global)
        variables={
            "hold_ms": 24 * 3600 * 1000,
            **({"ring_ms": ring_ms} if mode in ("answer", "answer_bye") else {}),
            **({"talk_ms": talk_ms} if mode == "answer_bye" else {}),
        },
        sip_port=sip_port,
        media_port=media_port,
        extra=[
            "-oocsf",
            ooc,
            *(() if playing else ("-rtp_echo",)),
            "-au",
            agent,
            "-ap",
            password or f"agent-{agent}",
            "-m",
            "1",
            "-l",
            "1",
            pbx.sip_address,
        ],
    )
    proc = await asyncio.create_subprocess_exec(
        str(PBX_SCRIPT),
        "sipp",
        *args,
        env=pbx.env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _live_processes.add(proc)
    phone = AgentPhone(pbx, agent, mode, proc, trace, errors)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m.direction == "received" and m.method_or_status == "200" for m in phone.messages()):
            return phone
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    await _stop(proc)
    _live_processes.discard(proc)
    stderr = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
    flow = "\n".join(f"  {m.direction} {m.first_line}" for m in phone.messages())
    raise PbxError(
        f"agent {agent} did not register within {timeout} s (sipp exit {proc.returncode}):\n"
        f"{flow}\n{stderr}"
    )


@atexit.register
def _stop_leftovers() -> None:
    """Last resort if a test forgot to stop something: no sipp or Asterisk outlives the run."""
    for proc in list(_live_processes):
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    for pbx in list(_live_instances):
        with contextlib.suppress(Exception):
            pbx.down()
