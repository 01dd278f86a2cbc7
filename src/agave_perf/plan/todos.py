"""``plan todos``: every ``[PERF-TODO]`` comment in a source tree, grouped by component.

The convention (for Rust, TOML, shell, Markdown — any text file)::

    // [PERF-TODO](rpc) cache encoded accounts per slot
    # [PERF-TODO rpc: cache encoded accounts per slot]
    // [PERF-TODO] no component: grouped under the file's top-level directory (crate)

Components are free words (``rpc``, ``accounts-db``, ...), ideally the plan's.
The scan reads each file once as bytes and only decodes the few that contain the
marker, skipping ``target/`` and ``.git/``; binary files (a NUL byte) are ignored.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.errors import UsageError

MARKER = b"[PERF-TODO"
SKIP_DIRS = frozenset({"target", ".git"})
_UPTO_NEXT = r"(?:(?!\[PERF-TODO).)*"
_TODO = re.compile(
    rf"\[PERF-TODO(?:\]\((?P<c1>[^)\s]+)\)(?P<t1>{_UPTO_NEXT})"
    rf"|\s+(?P<c2>[\w./-]+):\s*(?P<t2>[^\]]*)\]?(?P<rest>{_UPTO_NEXT})"
    rf"|\](?P<t3>{_UPTO_NEXT}))"
)
_CLOSERS = ("*/", "-->", "#}", "*)")


@dataclass(frozen=True)
class Todo:
    """One PERF-TODO: where, for which component, saying what."""

    file: str
    line: int
    component: str
    text: str

    def to_json(self) -> dict[str, Any]:
        """Return the todo as plain JSON data."""
        return dict(self.__dict__)


@dataclass
class TodoReport:
    """Every PERF-TODO of a tree, grouped by component."""

    root: str
    todos: list[Todo]
    files_scanned: int
    bytes_scanned: int
    seconds: float
    by_component: dict[str, list[Todo]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        groups: dict[str, list[Todo]] = {}
        for todo in sorted(self.todos, key=lambda t: (t.component, t.file, t.line)):
            groups.setdefault(todo.component, []).append(todo)
        self.by_component = groups

    def to_json(self) -> dict[str, Any]:
        """Return the report as plain JSON data."""
        return {
            "root": self.root,
            "count": len(self.todos),
            "files_scanned": self.files_scanned,
            "bytes_scanned": self.bytes_scanned,
            "seconds": round(self.seconds, 3),
            "by_component": {c: [t.to_json() for t in ts] for c, ts in self.by_component.items()},
        }

    def __rich__(self) -> RenderableType:
        table = Table(title=Text(f"[PERF-TODO] in {self.root}"), title_justify="left")
        for col in ("component", "where", "text"):
            table.add_column(col, overflow="fold")
        for component, todos in self.by_component.items():
            for i, t in enumerate(todos):
                table.add_row(
                    Text(component if i == 0 else ""), Text(f"{t.file}:{t.line}"), Text(t.text)
                )
        summary = Text(
            f"{len(self.todos)} PERF-TODO in {len(self.by_component)} components; "
            f"{self.files_scanned} files scanned in {self.seconds:.2f} s"
        )
        return Group(table, summary)


def _clean(text: str) -> str:
    text = text.strip()
    for closer in _CLOSERS:
        text = text.removesuffix(closer).rstrip()
    return text


def _default_component(rel: str) -> str:
    head, sep, _ = rel.partition("/")
    return head if sep else "(root)"


def parse_line(line: str, rel: str, number: int) -> list[Todo]:
    """Return the PERF-TODOs on one line of a file."""
    out = []
    for m in _TODO.finditer(line):
        if m.group("c1") is not None:
            component, text = m.group("c1"), m.group("t1")
        elif m.group("c2") is not None:
            component, text = m.group("c2"), m.group("t2") + (m.group("rest") or "")
        else:
            component, text = _default_component(rel), m.group("t3")
        out.append(Todo(rel, number, component, _clean(text)))
    return out


def scan(root: Path) -> TodoReport:
    """Scan a tree for PERF-TODOs (skipping target/ and .git/)."""
    import time

    start = time.perf_counter()
    base = root.resolve()
    if not base.is_dir():
        raise UsageError(f"{root}: not a directory")
    todos: list[Todo] = []
    files = 0
    size = 0
    prefix = len(str(base)) + 1
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                # O_NONBLOCK + a regular-file check: opening a FIFO or device would block.
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                with open(fd, "rb") as fh:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        continue
                    data = fh.read()
            except OSError:
                continue  # unreadable or vanished: not ours to report
            files += 1
            size += len(data)
            if MARKER not in data or b"\0" in data:
                continue
            rel = path[prefix:]
            text = data.decode("utf-8", errors="replace")
            # split("\n"), not splitlines(): editors count only newlines, while
            # splitlines() also breaks at form feeds and U+2028 and shifts file:line.
            for number, line in enumerate(text.split("\n"), start=1):
                if "[PERF-TODO" in line:
                    todos.extend(parse_line(line, rel, number))
    return TodoReport(str(base), todos, files, size, time.perf_counter() - start)
