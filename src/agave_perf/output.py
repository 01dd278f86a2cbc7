"""Rendering to the terminal or as JSON; objects render themselves (rich's protocol).

Commands build a result object with ``__rich__`` (for people) and ``to_json``
(for machines) and hand it to :func:`emit`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Protocol, TextIO, runtime_checkable

from rich.console import Console, RenderableType


@runtime_checkable
class Renderable(Protocol):
    """A result that can show itself to a person and to a program."""

    def __rich__(self) -> RenderableType:
        """Return a rich renderable for the terminal."""
        ...

    def to_json(self) -> Any:
        """Return plain JSON-serialisable data."""
        ...


def console(file: TextIO | None = None, *, stderr: bool = False) -> Console:
    """Return a console that honours NO_COLOR and non-terminal output."""
    return Console(
        file=file,
        stderr=stderr,
        no_color=bool(os.environ.get("NO_COLOR")),
        highlight=False,
        soft_wrap=False,
    )


def dumps(data: Any) -> str:
    """Serialise to JSON the same way everywhere (sorted keys off, UTF-8 kept)."""
    return json.dumps(data, ensure_ascii=False, default=str)


def emit(result: Renderable, *, as_json: bool, file: TextIO | None = None) -> None:
    """Print a result as JSON (one document) or as its rich rendering."""
    if as_json:
        out = file or sys.stdout
        out.write(dumps(result.to_json()) + "\n")
        out.flush()
    else:
        console(file).print(result)
