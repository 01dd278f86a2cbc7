"""Rendering to the terminal or as JSON; objects render themselves (rich's protocol).

Commands build a result object with ``__rich__`` (for people) and ``to_json``
(for machines) and hand it to :func:`emit`. Two rules for machines live here, once:

- every JSON document a command prints is an object carrying ``schema_version``
  (:func:`document`); an error under ``--json`` is one too (:func:`error_document`);
- off a terminal (a pipe, a file) nothing is cut to fit a width: the console is
  unbounded, so ids, numbers and method names reach the reader whole.
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


# The version of the JSON documents' shape; raise it when a key changes meaning or goes.
SCHEMA_VERSION = 1
# Width of a console that writes to a pipe or a file: wide enough that no table column is
# ever folded or ellipsised (rich would otherwise use $COLUMNS or 80).
UNBOUNDED_WIDTH = 1 << 20


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def console(file: TextIO | None = None, *, stderr: bool = False) -> Console:
    """Return a console that honours NO_COLOR, and never truncates when not on a terminal."""
    target = file if file is not None else (sys.stderr if stderr else sys.stdout)
    return Console(
        file=file,
        stderr=stderr,
        no_color=bool(os.environ.get("NO_COLOR")),
        highlight=False,
        soft_wrap=False,
        width=None if _is_terminal(target) else UNBOUNDED_WIDTH,
    )


def dumps(data: Any) -> str:
    """Serialise to JSON the same way everywhere (sorted keys off, UTF-8 kept)."""
    return json.dumps(data, ensure_ascii=False, default=str)


def document(data: dict[str, Any]) -> dict[str, Any]:
    """A JSON document as commands print it: ``schema_version`` first, then the data."""
    if not isinstance(data, dict):
        raise TypeError(f"a JSON document is an object, not {type(data).__name__}")
    return {"schema_version": SCHEMA_VERSION, **data}


def error_document(message: str, exit_code: int) -> dict[str, Any]:
    """The one JSON object an error becomes under ``--json``."""
    return document({"error": message, "exit_code": exit_code})


def emit(result: Renderable, *, as_json: bool, file: TextIO | None = None) -> None:
    """Print a result as JSON (one document) or as its rich rendering."""
    if as_json:
        out = file or sys.stdout
        out.write(dumps(document(result.to_json())) + "\n")
        out.flush()
    else:
        console(file).print(result)
