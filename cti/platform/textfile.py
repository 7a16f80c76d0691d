"""Reading a text file an administrator gave us (config YAML, CSV): UTF-8 or a one-line error.

Every failure is a ConfigError naming the file and the reason, so each `cti` command prints one
`error: ...` line instead of a UnicodeDecodeError traceback.
"""

from __future__ import annotations

from pathlib import Path

from cti.platform.errors import ConfigError

# Generous for hand-written config (the demo's largest file is ~20 kB) and small enough that a
# wrong file (a log, a recording, /dev/zero) is refused before it is read whole or parsed.
MAX_CONFIG_BYTES = 2 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


def read_text_file(path: Path, *, max_bytes: int | None = MAX_CONFIG_BYTES) -> str:
    """The file's text (UTF-8, a BOM dropped); raise ConfigError naming the file and reason."""
    try:
        with path.open("rb") as f:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ConfigError(
            f"{path}: too large for a config file (over {_size(max_bytes)}); is it the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    nul = data.find(b"\x00")
    if nul >= 0:  # valid UTF-8 can still be binary; NUL never belongs in YAML or CSV
        raise ConfigError(f"{path}: not a text file (NUL byte at offset {nul})")
    return text[1:] if data.startswith(_BOM) else text


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n % (1024 * 1024) == 0 else f"{n} bytes"
