"""The validator flag lists shipped as data, one file per release line, and their history.

Each ``data/flags/<line>.json`` was extracted from the validator's clap definitions
at a recorded commit (see ``scripts/extract_flags.py``). :class:`FlagCatalog` answers
the questions an audit asks: is ``--x`` valid in release L, was it removed (in
which release, replaced by what), is it deprecated, or does only Jito-Solana have it.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from agave_perf.errors import UsageError


@dataclass(frozen=True)
class FlagSpec:
    """One flag of one release, as its clap definition declares it."""

    long: str | None
    short: str | None = None
    aliases: tuple[str, ...] = ()
    takes_value: bool = False
    value_optional: bool = False
    multiple: bool = False
    hidden: bool = False
    deprecated: bool = False
    replaced_by: str | None = None
    usage_warning: str | None = None
    possible_values: tuple[str, ...] | None = None
    default: str | None = None
    conflicts_with: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    value_name: str | None = None
    help: str = ""
    jito_only: bool = False
    number_of_values: int | None = None
    max_values: int | None = None
    require_delimiter: bool = False

    @property
    def greedy(self) -> bool:
        """clap 2: a repeatable option without a value count also takes ``--x a b c``."""
        return (
            self.takes_value
            and self.multiple
            and self.number_of_values is None
            and (self.max_values is None or self.max_values > 1)
            and not self.require_delimiter
        )

    @property
    def key(self) -> str:
        """The name the flag is known by: its long name, else ``-x``."""
        return self.long or f"-{self.short}"

    @classmethod
    def from_json(cls, d: dict[str, Any], *, jito_only: bool = False) -> FlagSpec:
        """Build from one record of a data file."""
        pv = d.get("possible_values")
        replaced = d.get("replaced_by")
        return cls(
            long=d.get("long"),
            short=d.get("short"),
            aliases=tuple(d.get("aliases") or ()),
            takes_value=bool(d.get("takes_value")),
            value_optional=bool(d.get("value_optional")),
            multiple=bool(d.get("multiple")),
            hidden=bool(d.get("hidden")),
            deprecated=bool(d.get("deprecated")),
            # the source spells some replacements with underscores (clap names)
            replaced_by=replaced.replace("_", "-") if replaced else None,
            usage_warning=d.get("usage_warning"),
            possible_values=tuple(pv) if pv else None,
            default=d.get("default"),
            conflicts_with=tuple(d.get("conflicts_with") or ()),
            requires=tuple(d.get("requires") or ()),
            value_name=d.get("value_name"),
            help=d.get("help") or "",
            jito_only=jito_only,
            number_of_values=d.get("number_of_values"),
            max_values=d.get("max_values"),
            require_delimiter=bool(d.get("require_delimiter")),
        )


@dataclass(frozen=True)
class Release:
    """The flag list of one release line (e.g. ``2.1``) plus Jito-Solana's extra flags."""

    line: str
    version: str
    binary: str
    source: dict[str, Any]
    jito: dict[str, Any]
    flags: tuple[FlagSpec, ...]
    jito_flags: tuple[FlagSpec, ...]
    note: str = ""
    limits: dict[str, int | None] = field(default_factory=dict, compare=False)
    _index: dict[str, FlagSpec] = field(default_factory=dict, compare=False, repr=False)

    def lookup(self, name: str, *, jito: bool) -> FlagSpec | None:
        """Find a flag by long name, alias or ``-x`` short form."""
        if not self._index:
            for spec in (*self.flags, *self.jito_flags):
                names = [spec.key, *spec.aliases]
                if spec.long and spec.short:
                    names.append(f"-{spec.short}")
                for n in names:
                    self._index.setdefault(n, spec)
        found = self._index.get(name)
        if found is not None and found.jito_only and not jito:
            return None
        return found

    def names(self, *, jito: bool, include_hidden: bool = True) -> list[str]:
        """Every long name (and alias) of the release, for suggestions."""
        out = []
        for spec in (*self.flags, *(self.jito_flags if jito else ())):
            if spec.long and (include_hidden or not (spec.hidden or spec.deprecated)):
                out.append(spec.long)
                out.extend(spec.aliases)
        return out

    @property
    def ordinal(self) -> tuple[int, int]:
        """Sort key: (major, minor); master sorts last."""
        if self.line == "master":
            return (999, 0)
        major, minor = self.line.split(".")
        return (int(major), int(minor))


OLDER_FILE = "before-1.16.json"  # flags of 1.0-1.14, read from those releases' sources


@dataclass(frozen=True)
class OldFlag:
    """A run flag of solana-validator releases older than every shipped list."""

    name: str
    lines: tuple[str, ...]  # the old release lines that had it
    successor: str | None  # the flag that took over, where the sources show one
    why: str  # where the sources show the successor
    takes_value: bool


def _data_dir() -> Any:
    return resources.files("agave_perf").joinpath("data", "flags")


@dataclass(frozen=True)
class History:
    """Where a flag name appears across every shipped release."""

    present: tuple[str, ...]  # lines where upstream has it
    jito: tuple[str, ...]  # lines where only the Jito build has it
    deprecated: tuple[str, ...]  # lines where upstream has it as deprecated
    replaced_by: str | None


class FlagCatalog:
    """Every shipped release, oldest first."""

    def __init__(self, releases: list[Release], older: dict[str, OldFlag] | None = None) -> None:
        self.releases = sorted(releases, key=lambda r: r.ordinal)
        self._by_line = {r.line: r for r in self.releases}
        self.older = older or {}

    @classmethod
    def load(cls) -> FlagCatalog:
        """Load the flag lists shipped with the package."""
        return _load_default()

    @property
    def lines(self) -> list[str]:
        """Release lines, oldest first."""
        return [r.line for r in self.releases]

    @property
    def latest_stable(self) -> Release:
        """The newest numbered release line (not master)."""
        return [r for r in self.releases if r.line != "master"][-1]

    def get(self, line: str) -> Release:
        """Return a release line or raise a usage error naming the known ones."""
        try:
            return self._by_line[line]
        except KeyError:
            raise UsageError(
                f"no flag list for Agave {line!r}; known: {', '.join(self.lines)}"
            ) from None

    def resolve(self, version: str) -> tuple[Release, bool | None]:
        """Map ``2.1``, ``v2.1.13``, ``1.18.26-jito`` or ``master`` to (release, jito?)."""
        text = version.strip().lower()
        jito: bool | None = True if "jito" in text else None
        if text.removesuffix("-jito") in ("master", "main", "latest", "head"):
            return self._by_line["master"], jito
        m = re.match(r"v?(\d+)\.(\d+)", text)
        if not m:
            raise UsageError(
                f"cannot read Agave version {version!r} (use e.g. 2.1, v1.18.26, master)"
            )
        line = f"{int(m.group(1))}.{int(m.group(2))}"
        if line in self._by_line:
            return self._by_line[line], jito
        newer = [r for r in self.releases if r.line != "master" and r.ordinal > _ord(line)]
        if newer and _ord(line) > self.releases[0].ordinal:
            # a line between two shipped ones (none today); use the next older list
            older = [r for r in self.releases if r.ordinal < _ord(line)]
            return older[-1], jito
        if not newer:
            master = self._by_line["master"]
            if _line_of(master.version) == line:
                return master, jito  # the release master is becoming
            close = difflib.get_close_matches(line, self.lines, n=1, cutoff=0.5)
            guess = close[0] if close else self.latest_stable.line
            raise UsageError(
                f"no flag list for Agave {version}: newer than every shipped list "
                f"(newest {self.latest_stable.line}, master is {master.version}); "
                f"did you mean {guess}, or master?"
            )
        raise UsageError(
            f"Agave {version} is older than the oldest shipped flag list "
            f"({self.releases[0].line}); known: {', '.join(self.lines)}"
        )

    def removed_before_oldest(self, name: str) -> OldFlag | None:
        """The flag of a release older than every shipped list that ``name`` was, if any."""
        if name in self.all_names():
            return None
        return self.older.get(name)

    def is_older(self, version: str) -> bool:
        """True when a version is older than the oldest shipped list."""
        return _ord(_line_of(version)) < self.releases[0].ordinal

    def history(self, name: str) -> History:
        """Which lines know ``name`` (upstream, deprecated, Jito-only), and its replacement."""
        present, jito, deprecated = [], [], []
        replaced: str | None = None
        for rel in self.releases:
            up = rel.lookup(name, jito=False)
            if up is not None:
                present.append(rel.line)
                if up.deprecated:
                    deprecated.append(rel.line)
                replaced = up.replaced_by or replaced
            elif rel.lookup(name, jito=True) is not None:
                jito.append(rel.line)
        return History(tuple(present), tuple(jito), tuple(deprecated), replaced)

    def all_names(self) -> set[str]:
        """Every flag name known in any release (Jito included)."""
        out: set[str] = set()
        for rel in self.releases:
            out.update(rel.names(jito=True))
        return out


def _line_of(version: str) -> str:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    return f"{int(m.group(1))}.{int(m.group(2))}" if m else version


def _ord(line: str) -> tuple[int, int]:
    major, minor = line.split(".")
    return (int(major), int(minor))


@cache
def _load_default() -> FlagCatalog:
    releases = []
    older: dict[str, OldFlag] = {}
    for entry in _data_dir().iterdir():
        if not entry.name.endswith(".json"):
            continue
        doc = json.loads(entry.read_text(encoding="utf-8"))
        if entry.name == OLDER_FILE:
            older = {
                name: OldFlag(
                    name, tuple(f["lines"]), f["successor"], f["why"], bool(f["takes_value"])
                )
                for name, f in doc["flags"].items()
            }
            continue
        releases.append(
            Release(
                line=doc["release_line"],
                version=doc["version"],
                binary=doc["binary"],
                source=doc["source"],
                jito=doc["jito"],
                flags=tuple(FlagSpec.from_json(f) for f in doc["flags"]),
                jito_flags=tuple(FlagSpec.from_json(f, jito_only=True) for f in doc["jito_flags"]),
                note=doc.get("note", ""),
                limits=doc.get("limits", {}),
            )
        )
    if not releases:  # pragma: no cover - packaging error
        raise UsageError("no validator flag lists found in the installed package")
    return FlagCatalog(releases, older)
