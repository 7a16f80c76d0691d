"""Hostile YAML for the loader, reload and CLI tests."""

from __future__ import annotations


def alias_bomb(levels: int) -> str:
    """The "billion laughs": each level lists the previous one ten times, 10**levels strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


# 10**7 strings: without the limit, walking it takes seconds and hundreds of MB (bounded, so
# a test run without the protection fails instead of exhausting the machine).
BOMB = alias_bomb(7)
BOMB_ERROR = r":\d+:\d+: aliases expand to more than 100000 nodes"

# "中" is d6 d0 in GBK, invalid in UTF-8 at offset 13: the file a Windows editor may save.
GBK = "version: 1\n# 中文注释\n".encode("gbk")
GBK_ERROR = "not UTF-8 text (byte 0xd6 at offset 13); save it as UTF-8"
