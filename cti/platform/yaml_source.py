"""YAML 1.2 loading that keeps line/column, so every config error can say where it is.

ruamel.yaml is used because PyYAML (YAML 1.1) turns keys like `on:` into True. Every YAML file
the service reads (rules, flows, phrases, forbidden list, settings) goes through `parse_yaml`,
which refuses what could hang or exhaust the process: alias bombs ("billion laughs"), recursive
aliases, absurd nesting; `load_yaml` also refuses files too large or not UTF-8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from cti.platform.errors import ConfigError
from cti.platform.textfile import read_text_file

M = TypeVar("M", bound=BaseModel)

# Aliases stay allowed: admins share defaults with anchors and merge keys (`<<: *defaults`).
# What is capped is what an alias costs: every later walk (to_plain, pydantic, the phrase scan)
# copies an aliased subtree at each use, so a few hundred bytes of nested aliases would expand
# to 10^9 nodes. A real file uses a handful of aliases and expands by at most a few thousand.
MAX_ALIASES = 500
MAX_ALIAS_EXPANSION = 100_000  # nodes added by all aliases together
MAX_DEPTH = 100  # composing, constructing and walking recurse once (or more) per level


class YamlLimitError(MarkedYAMLError):
    """A document over one of the limits above; marked at the alias or node that crossed it."""


class _GuardedComposer(Composer):
    """ruamel's composer, counting aliases and their expanded size as it goes, so a bomb is
    refused after reading a few hundred events, before anything walks the expanded tree."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False  # re-using an anchor name is valid YAML; no stderr noise
        self._aliases = 0
        self._expanded = 0
        self._level = 0
        self._sizes: dict[int, int] = {}  # id(node) -> expanded size; nodes live in the tree

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is ruamel's own error
                self._check_alias(event.anchor, target, event.start_mark)
            return super().compose_node(parent, index)
        self._level += 1
        if self._level > MAX_DEPTH:
            raise YamlLimitError(
                problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=event.start_mark
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._level -= 1

    def _check_alias(self, name: str, target: Node, mark: Any) -> None:
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise YamlLimitError(
                problem=f"more than {MAX_ALIASES} aliases (*name); write the values out",
                problem_mark=mark,
            )
        # A mapping or sequence gets its end mark when it is complete: none yet means this
        # alias sits inside the very node it names, which would expand forever.
        if isinstance(target, MappingNode | SequenceNode) and target.end_mark is None:
            raise YamlLimitError(
                problem=f"recursive alias *{name}: it is inside the anchor &{name} it refers to",
                problem_mark=mark,
            )
        self._expanded += self._size(target)
        if self._expanded > MAX_ALIAS_EXPANSION:
            raise YamlLimitError(
                problem=f"aliases expand to more than {MAX_ALIAS_EXPANSION} nodes "
                "(nested aliases multiply: an alias bomb?)",
                problem_mark=mark,
            )

    def _size(self, node: Node) -> int:
        """Nodes in `node` with every alias inside expanded; memoized, so linear in the file."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._size(k) + self._size(v) for k, v in node.value)
        self._sizes[id(node)] = size
        return size


def load_yaml(path: Path) -> Any:
    """Parse a YAML file (round-trip mode keeps positions); raise ConfigError with file:line:col."""
    return parse_yaml(read_text_file(path), str(path))


def parse_yaml(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.Composer = _GuardedComposer
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
        if data is None:  # one clear line rather than one "Field required" per missing key
            raise ConfigError(
                f"{source}:1:1: no content (the file is empty or only comments)"
            ) from None
        lines = []
        for err in exc.errors():
            loc = err["loc"]
            pos = position_of(data, [p for p in loc if isinstance(p, int | str)])
            where = f"{source}:{pos[0]}:{pos[1]}" if pos else source
            path = ".".join(str(p) for p in loc)
            lines.append(f"{where}: {path}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
