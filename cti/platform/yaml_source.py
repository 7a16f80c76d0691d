"""YAML 1.2 loading that keeps line/column, so every config error can say where it is.

ruamel.yaml is used because PyYAML (YAML 1.1) turns keys like `on:` into True.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from cti.platform.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file (round-trip mode keeps positions); raise ConfigError with file:line:col."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: {exc.problem or exc.context}") from None
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. duplicate keys)
        raise ConfigError(f"{source}: {exc}") from None


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: expected a mapping at the top level")
    return to_plain(data)  # type: ignore[no-any-return]


def to_plain(node: Any) -> Any:
    """Strip ruamel's round-trip types into dicts/lists/scalars for pydantic."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    return node


def position_of(root: Any, loc: Sequence[int | str]) -> tuple[int, int] | None:
    """1-based (line, column) of the node at `loc` in a ruamel tree, or of its closest parent."""
    node = root
    best: tuple[int, int] | None = (1, 1)
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.key(key)
            best = (line + 1, col + 1)
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line, col = node.lc.item(key)
            best = (line + 1, col + 1)
            node = node[key]
        else:
            break
    return best


def validate_yaml(model: type[M], data: Any, source: str) -> M:
    """Validate a ruamel tree with a pydantic model; errors name file:line:column and reason."""
    try:
        return model.model_validate(to_plain(data) if data is not None else {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err["loc"]
            pos = position_of(data, [p for p in loc if isinstance(p, int | str)])
            where = f"{source}:{pos[0]}:{pos[1]}" if pos else source
            path = ".".join(str(p) for p in loc)
            lines.append(f"{where}: {path}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
