"""The exception tree is closed: the diagram in ``errors.py`` is the real class tree."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import agave_perf
from agave_perf import errors
from agave_perf.errors import AgavePerfError

# a diagram row: tree drawing, the class name, then "exit N"
_ROW = re.compile(r"^(?P<indent>[ │├└─]*?)(?P<name>[A-Z]\w+)\s+exit (?P<code>\d+)\b")
_LEVEL = 4  # "├── " and "│   " are four characters wide


def diagram() -> dict[str, tuple[str | None, int]]:
    """Parse the docstring diagram into {class name: (parent name, exit code)}."""
    assert errors.__doc__ is not None
    rows: dict[str, tuple[str | None, int]] = {}
    parents: list[str] = []  # parents[d] is the last class seen at depth d
    for line in errors.__doc__.splitlines():
        text = line[4:] if line.startswith("    ") else line  # the literal block's margin
        m = _ROW.match(text)
        if m is None:
            continue
        depth, rest = divmod(len(m.group("indent")), _LEVEL)
        assert rest == 0, f"misaligned diagram row: {line!r}"
        assert depth <= len(parents), f"diagram row skips a level: {line!r}"
        del parents[depth:]
        name = m.group("name")
        assert name not in rows, f"{name} appears twice in the diagram"
        rows[name] = (parents[-1] if parents else None, int(m.group("code")))
        parents.append(name)
    return rows


def package_errors() -> list[type[AgavePerfError]]:
    """Import every module of the package and return every AgavePerfError class it defines."""
    for info in pkgutil.walk_packages(agave_perf.__path__, prefix="agave_perf."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it is its only purpose
        importlib.import_module(info.name)
    found: list[type[AgavePerfError]] = []
    todo: list[type[AgavePerfError]] = [AgavePerfError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(c for c in cls.__subclasses__() if c.__module__.startswith("agave_perf"))
    return found


class TestDiagram:
    def test_diagram_parses(self) -> None:
        """The diagram has one root, AgavePerfError, and names each class once."""
        rows = diagram()
        roots = [name for name, (parent, _) in rows.items() if parent is None]
        assert roots == ["AgavePerfError"]
        assert len(rows) > 10

    def test_every_class_is_in_the_diagram_with_its_parent_and_code(self) -> None:
        """Each AgavePerfError subclass anywhere in the package is drawn under its real parent."""
        rows = diagram()
        real: dict[str, tuple[str | None, int]] = {}
        for cls in package_errors():
            bases = [b for b in cls.__bases__ if issubclass(b, AgavePerfError)]
            assert len(bases) <= 1, f"{cls.__name__} has several project parents"
            real[cls.__name__] = (bases[0].__name__ if bases else None, cls.exit_code)
        assert real == rows

    def test_every_class_lives_in_errors_py(self) -> None:
        """No project exception is defined outside errors.py."""
        outside = [
            f"{c.__module__}.{c.__qualname__}"
            for c in package_errors()
            if c.__module__ != "agave_perf.errors"
        ]
        assert outside == []

    def test_exit_codes_are_the_documented_ones(self) -> None:
        """Every exit code in the tree is one the CLI documents: 1, 2 or 3."""
        codes = {cls.exit_code for cls in package_errors()}
        assert codes <= {errors.EXIT_FAILED, errors.EXIT_USAGE, errors.EXIT_UNREACHABLE}

    @pytest.mark.parametrize(
        "name", ["SloFailed", "HostCheckFailed", "FlagsAuditFailed", "GateFailed"]
    )
    def test_failed_checks_exit_1(self, name: str) -> None:
        """A check or gate that ran and did not pass exits 1, not 2."""
        assert getattr(errors, name).exit_code == errors.EXIT_FAILED


class TestParser:
    def test_parser_sees_a_wrong_parent(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A class drawn under the wrong parent makes the comparison fail (the test can fail)."""
        doc = errors.__doc__ or ""
        moved = doc.replace(
            "    │   └── ConfigError                 exit 2",
            "    ├── ConfigError                     exit 2",
        )
        assert moved != doc
        monkeypatch.setattr(errors, "__doc__", moved)
        assert diagram()["ConfigError"] == ("AgavePerfError", 2)
