"""Load IVR flows from YAML (ivr_flows/*.yaml), validated, with file:line:col errors.

Checks beyond the schema: every node named exists, every phrase is in the phrase library,
every queue is known (when the routing rules are given), every node is reachable from
`start`, no loop made only of immediate nodes, business hours defined where a branch needs
them, no forbidden phrase anywhere in the file, and no dead air (`dead_ends`): every place a
procedure can end early has a next step that acts. `FlowStore.reload()` keeps the flows in
force when the new files are wrong.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cti.domain.forbidden import ForbiddenList
from cti.domain.ivr.flow import (
    BRANCH_CASES,
    IMMEDIATE,
    BranchNode,
    EndNode,
    Flow,
    LanguageNode,
    ListenNode,
    MenuNode,
    MohNode,
    Node,
    PlayNode,
    RecordNode,
    RouteNode,
    WaitNode,
)
from cti.domain.ivr.procedures import direct_hangups
from cti.platform.errors import ConfigError
from cti.platform.yaml_source import load_yaml, position_of, validate_yaml


@dataclass(frozen=True, slots=True)
class FlowRefs:
    """What flows may refer to."""

    phrases: Collection[str]
    languages: Collection[str] = ("zh", "en")
    queues: Collection[str] | None = None  # None: queues are not checked here
    forbidden: ForbiddenList | None = None


def _at(source: str, tree: Any, *loc: str | int) -> str:
    pos = position_of(tree, list(loc))
    return f"{source}:{pos[0]}:{pos[1]}" if pos else source


def check_flow(flow: Flow, refs: FlowRefs, source: str, tree: Any = None) -> list[str]:
    """Cross-reference errors of one validated flow, each "file:line:col: path: reason"."""
    errors: list[str] = []

    def add(loc: tuple[str, ...], reason: str) -> None:
        errors.append(f"{_at(source, tree, *loc)}: {'.'.join(loc)}: {reason}")

    nodes = flow.nodes
    if flow.start not in nodes:
        add(("start",), f"no node named {flow.start!r}")
    if flow.agent_hangup is not None and flow.agent_hangup not in nodes:
        add(("agent_hangup",), f"no node named {flow.agent_hangup!r}")
    for node_id, node in nodes.items():
        here = ("nodes", node_id)
        for key, target in _edges(node):
            if target not in nodes:
                add((*here, *key), f"no node named {target!r}")
        for attr, phrase in _phrases(node):
            if phrase not in refs.phrases:
                add((*here, attr), f"no phrase {phrase!r} in the phrase library")
        if isinstance(node, BranchNode):
            wanted = BRANCH_CASES[node.test]
            if set(node.cases) != wanted:
                add((*here, "cases"), f"{node.test} needs the cases {', '.join(sorted(wanted))}")
            if node.test == "business_hours" and flow.business_hours is None:
                add(here, "a branch on business_hours needs `business_hours:` in the flow")
        if isinstance(node, LanguageNode) and node.language not in refs.languages:
            add((*here, "language"), f"{node.language!r} is not a language of the library")
        queues = refs.queues
        if isinstance(node, RouteNode) and queues is not None and node.queue not in queues:
            add((*here, "queue"), f"unknown queue {node.queue!r}")
        if isinstance(node, EndNode) and flow.kind != "procedure":
            add(here, "`end` is only for procedures")
    if errors:
        return errors
    reached = _reachable(flow)
    for node_id in nodes:
        if node_id not in reached:
            add(("nodes", node_id), f"unreachable from start {flow.start!r}")
    loop = _immediate_loop(flow)
    if loop:
        add(("nodes", loop[0]), f"loop without a prompt or wait: {' -> '.join(loop)}")
    if flow.kind == "procedure":
        for bad in direct_hangups(flow):
            add(("nodes",), f"direct hang-up at {bad}: a goodbye prompt, then a wait of >= 3 s")
    for loc, reason in dead_ends(flow):
        add(loc, reason)
    return errors


# What the caller meets on a node the call rests at after a procedure: a prompt, a menu, a
# timed wait, the queue (the ACD: music, announcements, an agent), a recording with its limit.
ACTING = "a prompt (play), a menu, a wait with seconds, a queue (route) or a recording"


def _acts(flow: Flow, node_id: str, seen: frozenset[str] = frozenset()) -> str | None:
    """None if entering `node_id` makes something happen for the caller at once (through
    immediate nodes); else the node where nothing would (`kind` id)."""
    node = flow.nodes[node_id]
    if isinstance(node, PlayNode | MenuNode | RouteNode | RecordNode):
        return None
    if isinstance(node, WaitNode) and node.seconds is not None:
        return None
    if isinstance(node, IMMEDIATE) and node_id not in seen:
        for target in node.targets():
            bad = _acts(flow, target, seen | {node_id})
            if bad:
                return bad
        return None
    return f"{node.type} {node_id!r}"


def dead_ends(flow: Flow) -> list[tuple[tuple[str, ...], str]]:
    """Where a procedure could end early (the caller spoke or pressed a key, the agent ended
    it, the caller was found there before its hang-up) and leave the caller with nothing:

    flows: a `listen` node needs `then:`, leading to something that acts, for a call with no
    agent on it; a `wait` without `seconds` waits on nothing once a procedure has ended on it.
    procedures: a node that does not move on by itself (music, a wait without seconds) must
    name its way out in `on:`."""
    out: list[tuple[tuple[str, ...], str]] = []
    for node_id, node in flow.nodes.items():
        here = ("nodes", node_id)
        if flow.kind == "procedure":
            if _waits_on_nothing(node):
                out.append((here, f"{node.type} without `on:` in a procedure: nothing ends it, "
                                  "the caller would be left waiting (dead air)"))
            continue
        if isinstance(node, ListenNode):
            if node.then is None:
                out.append((here, "a listen node needs `then:`: where the call goes when a "
                                  "procedure on it ends early (the caller spoke or pressed a "
                                  "key, the agent ended it, the caller was found there before "
                                  "its hang-up) and no agent is on the call; without it the "
                                  f"caller hears nothing (dead air). Lead it to {ACTING}"))
            else:
                bad = _acts(flow, node.then)
                if bad:
                    out.append(((*here, "then"), f"leads to {bad}, where the caller would hear "
                                                 f"nothing (dead air); lead it to {ACTING}"))
        elif isinstance(node, WaitNode) and node.seconds is None:
            out.append((here, "a wait without `seconds` in a flow waits on nothing once a "
                              "procedure has ended on it (dead air); give it `seconds` and "
                              "`next`, or use a listen node with `then:`"))
    return out


def _waits_on_nothing(node: Node) -> bool:
    stuck = isinstance(node, MohNode | ListenNode) or (
        isinstance(node, WaitNode) and node.seconds is None
    )
    return stuck and not node.on


def _edges(node: Any) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    for attr in ("next", "on_fail", "then"):
        value = getattr(node, attr, None)
        if value is not None:
            out.append(((attr,), value))
    for attr in ("options", "cases", "on"):
        mapping: Mapping[str, str] = getattr(node, attr, None) or {}
        out.extend(((attr, key), target) for key, target in mapping.items())
    return out


def _phrases(node: Any) -> list[tuple[str, str]]:
    out = []
    if isinstance(node, PlayNode):
        out.append(("phrase", node.phrase))
    if isinstance(node, MenuNode):
        out.append(("prompt", node.prompt))
        if node.invalid_prompt:
            out.append(("invalid_prompt", node.invalid_prompt))
    return out


def _reachable(flow: Flow) -> set[str]:
    seen = set()
    todo = [flow.start]
    if flow.agent_hangup:
        todo.append(flow.agent_hangup)
    while todo:
        node_id = todo.pop()
        if node_id in seen or node_id not in flow.nodes:
            continue
        seen.add(node_id)
        todo.extend(flow.nodes[node_id].targets())
    return seen


def _immediate_loop(flow: Flow) -> list[str] | None:
    """A cycle made only of immediate nodes (branch, language, volume, callback), if any."""

    def walk(path: list[str]) -> list[str] | None:
        node = flow.nodes[path[-1]]
        if not isinstance(node, IMMEDIATE):
            return None
        for target in node.targets():
            if target in path:
                return [*path, target]
            found = walk([*path, target])
            if found:
                return found
        return None

    for node_id in flow.nodes:
        found = walk([node_id])
        if found:
            return found
    return None


def load_flow_file(path: Path, refs: FlowRefs) -> Flow:
    tree = load_yaml(path)
    flow = validate_yaml(Flow, tree, str(path))
    errors = check_flow(flow, refs, str(path), tree)
    if refs.forbidden is not None:
        from cti.features.phrases.library import scan_yaml

        errors.extend(v.message() for v in scan_yaml(path, refs.forbidden, tree))
    if errors:
        raise ConfigError("\n".join(errors))
    return flow


def load_flows(flows_dir: Path, refs: FlowRefs) -> dict[str, Flow]:
    """Every *.yaml in flows_dir; all errors of all files in one ConfigError."""
    if not flows_dir.is_dir():
        raise ConfigError(f"{flows_dir}: flows directory not found")
    flows: dict[str, Flow] = {}
    origin: dict[str, Path] = {}
    errors: list[str] = []
    for path in sorted(flows_dir.glob("*.yaml")):
        try:
            flow = load_flow_file(path, refs)
        except ConfigError as exc:
            errors.append(exc.message)
            continue
        if flow.name in flows:
            errors.append(f"{path}:1:1: flow name {flow.name!r} is already {origin[flow.name]}")
            continue
        flows[flow.name] = flow
        origin[flow.name] = path
    if errors:
        raise ConfigError("\n".join(errors))
    if not flows:
        raise ConfigError(f"{flows_dir}: no flow files (*.yaml)")
    return flows


@dataclass
class FlowStore:
    """The flows in force. A reload that fails keeps them and reports why."""

    flows_dir: Path
    refs: FlowRefs
    flows: dict[str, Flow] = field(default_factory=dict)
    last_error: str | None = None

    def load(self) -> dict[str, Flow]:
        self.flows = load_flows(self.flows_dir, self.refs)
        self.last_error = None
        return self.flows

    def reload(self) -> bool:
        """True if the new flows are in force; False (old flows kept, `last_error` set) if not."""
        try:
            new = load_flows(self.flows_dir, self.refs)
        except ConfigError as exc:
            self.last_error = f"flows not reloaded, previous flows stay in force:\n{exc.message}"
            return False
        self.flows = new
        self.last_error = None
        return True
