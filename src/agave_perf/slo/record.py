"""JSONL recordings: one sample per line, append-only, each line handed to the kernel at once.

Every line is written with one ``os.write`` on an ``O_APPEND`` descriptor, so a
``kill -9`` loses at most the line being written, never an earlier one; the
reader skips a torn last line. A run starts with a ``meta`` line (redacted
endpoints, settings, start time); a file may hold several runs, and replay
evaluates the last one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from agave_perf.errors import UsageError
from agave_perf.slo.samples import Sample, SampleSet, from_dict, to_dict

FORMAT_VERSION = 1


class Recorder:
    """Appends samples to a JSONL file; call it as a sink."""

    def __init__(self, path: str | Path, meta: dict[str, Any]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise UsageError(f"cannot record to {path}: {err.strerror or err}") from None
        self.lines = 0
        self._write({"k": "meta", "version": FORMAT_VERSION, **meta})

    def _write(self, doc: dict[str, Any]) -> None:
        if self._fd is None:
            return
        os.write(self._fd, orjson.dumps(doc) + b"\n")
        self.lines += 1

    def mark_start(self, t0: float, started_unix: float) -> None:
        """Note when the measured window began (after the streams warmed up)."""
        self._write({"k": "start", "t0": t0, "started_unix": started_unix})

    def __call__(self, sample: Sample) -> None:
        """Write one sample."""
        self._write(to_dict(sample))

    def close(self) -> None:
        """Close the file (every line is already written)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class Recording:
    """A run read back: its meta line and samples, plus what the reader had to skip."""

    meta: dict[str, Any]
    samples: SampleSet
    runs: int = 1
    skipped: int = 0  # torn or unreadable lines
    notes: list[str] = field(default_factory=list)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_CHECKS: dict[str, Any] = {
    "float": _number,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "int | None": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    "str": lambda v: isinstance(v, str),
    "str | None": lambda v: v is None or isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "tuple[str, ...]": lambda v: isinstance(v, tuple) and all(isinstance(x, str) for x in v),
}


_FIELD_CHECKS: dict[type[Any], list[tuple[str, Any]]] = {}


def _well_typed(sample: Sample) -> bool:
    """Whether every field holds its declared type (an edited line may not)."""
    checks = _FIELD_CHECKS.get(type(sample))
    if checks is None:
        checks = _FIELD_CHECKS[type(sample)] = [
            (f.name, _CHECKS[str(f.type)]) for f in fields(sample) if str(f.type) in _CHECKS
        ]
    return all(check(getattr(sample, name)) for name, check in checks)


# A sample line is well under 1 KiB and a meta line a few KiB; a longer "line" means the
# file is not a recording (``/dev/zero``, a binary), and reading on would have no bound.
MAX_LINE = 1 << 20


def _lines(path: str | Path) -> Iterator[bytes]:
    """The lines of a recording, each at most MAX_LINE bytes; a longer one is a UsageError."""
    try:
        with Path(path).open("rb") as f:
            number = 0
            while line := f.readline(MAX_LINE + 1):
                number += 1
                if len(line) > MAX_LINE:
                    raise UsageError(
                        f"{path}: not an agave-perf recording "
                        f"(line {number} is longer than {MAX_LINE // 1024} KiB)"
                    )
                yield line
    except OSError as err:
        raise UsageError(f"cannot read recording {path}: {err.strerror or err}") from None


def read_recording(path: str | Path) -> Recording:
    """Read the last run of a recording; a torn last line (kill -9) is skipped and noted."""
    meta: dict[str, Any] | None = None
    runs = skipped = 0
    docs: list[dict[str, Any]] = []
    for line in _lines(path):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if meta is None and not (isinstance(doc, dict) and doc.get("k") == "meta"):
            # the recorder writes the meta line first; anything else is another kind of file,
            # refused at once rather than read to its end (which a device or pipe may not have)
            raise UsageError(f"{path}: not an agave-perf recording (no meta line first)")
        if not isinstance(doc, dict):
            skipped += 1
            continue
        if doc.get("k") == "meta":
            meta, runs, docs = doc, runs + 1, []
            continue
        if doc.get("k") == "start" and meta is not None:
            meta.update(t0=doc.get("t0", meta.get("t0")), started_unix=doc.get("started_unix"))
            continue
        docs.append(doc)
    if meta is None:
        raise UsageError(f"{path}: not an agave-perf recording (it is empty)")
    for key in ("t0", "started_unix"):
        if meta.get(key) is not None and not _number(meta[key]):
            raise UsageError(f"{path}: malformed recording (meta {key} = {meta[key]!r:.40})")
    data = SampleSet()
    for doc in docs:
        try:
            sample = from_dict(doc)
        except (TypeError, ValueError):
            sample = None
        if sample is None or not _well_typed(sample):
            skipped += 1
            continue
        data.add(sample)
    rec = Recording(meta, data, runs, skipped)
    if runs > 1:
        rec.notes.append(f"the file holds {runs} runs; the last one was evaluated")
    if skipped:
        rec.notes.append(f"{skipped} unreadable line(s) skipped (e.g. torn by a kill)")
    return rec
