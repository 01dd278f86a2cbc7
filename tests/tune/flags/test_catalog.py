"""The shipped flag lists: provenance, history, and that no valid flag is ever 'unknown'."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from agave_perf.errors import UsageError
from agave_perf.tune.flags import FlagCatalog, audit_text
from agave_perf.tune.flags._catalog import FlagSpec, Release

CATALOG = FlagCatalog.load()


# values the validator's own start-up checks accept (see Release.limits)
VALID = {"dynamic-port-range": "8000-9000", "limit-ledger-size": "200000000"}


def _value_for(spec: FlagSpec) -> list[str]:
    if not spec.takes_value:
        return []
    if spec.long in VALID:
        return [VALID[spec.long]]
    return [spec.possible_values[0] if spec.possible_values else "1"]


def _argv_for(spec: FlagSpec, name: str) -> list[str]:
    flag = f"--{name}" if not name.startswith("-") else name
    return [flag, *_value_for(spec)]


class TestData:
    def test_every_line_is_shipped_with_its_source(self) -> None:
        """Each line from 1.16 to master ships with the repo, commit and files it was read from."""
        expected = {"1.16", "1.17", "1.18", "2.0", "2.1", "2.2", "2.3", "3.0", "3.1", "master"}
        assert expected <= set(CATALOG.lines)
        for rel in CATALOG.releases:
            assert rel.source["repo"] in ("solana-labs/solana", "anza-xyz/agave")
            assert len(rel.source["commit"]) == 40
            assert "validator/src/cli.rs" in rel.source["files"]
            assert rel.jito["repo"] == "jito-foundation/jito-solana"
            assert len(rel.jito["commit"]) == 40
            assert len(rel.flags) > 150, rel.line

    def test_binary_names(self) -> None:
        """1.x ships solana-validator; 2.0 onwards agave-validator."""
        assert CATALOG.get("1.18").binary == "solana-validator"
        assert CATALOG.get("2.0").binary == "agave-validator"
        assert CATALOG.get("master").binary == "agave-validator"

    def test_known_definitions_were_read_correctly(self) -> None:
        """Spot checks of definitions read from the sources: values, repeats, shorts, defaults."""
        rel = CATALOG.get("2.1")
        ledger = rel.lookup("ledger", jito=False)
        assert ledger is not None
        assert ledger.short == "l"
        assert ledger.takes_value
        assert rel.lookup("-l", jito=False) is ledger
        kv = rel.lookup("known-validator", jito=False)
        assert kv is not None
        assert kv.multiple
        assert "trusted-validator" in kv.aliases
        lls = rel.lookup("limit-ledger-size", jito=False)
        assert lls is not None
        assert lls.value_optional
        idx = rel.lookup("account-index", jito=False)
        assert idx is not None
        assert idx.possible_values == (
            "program-id",
            "spl-token-owner",
            "spl-token-mint",
        )
        nv = rel.lookup("no-voting", jito=False)
        assert nv is not None
        assert not nv.takes_value
        skip = rel.lookup("skip-poh-verify", jito=False)
        assert skip is not None
        assert skip.deprecated
        assert skip.replaced_by == "skip-startup-ledger-verification"
        thr = rel.lookup("replay-forks-threads", jito=False)
        assert thr is not None
        assert thr.takes_value
        assert thr.hidden

    def test_jito_flags_are_separate(self) -> None:
        """Block engine, relayer, tip programs and shred receiver are Jito-only in every line."""
        for rel in CATALOG.releases:
            jito = {f.long for f in rel.jito_flags}
            assert {
                "block-engine-url",
                "tip-payment-program-pubkey",
                "shred-receiver-address",
            } <= jito
            assert rel.lookup("block-engine-url", jito=False) is None
            assert rel.lookup("block-engine-url", jito=True) is not None

    def test_data_files_are_json_with_one_line_per_flag(self) -> None:
        """The data files parse as JSON and name a release line matching their file name."""
        folder = resources.files("agave_perf").joinpath("data", "flags")
        names = [e.name for e in folder.iterdir() if e.name.endswith(".json")]
        assert "before-1.16.json" in names  # the flags of 1.0-1.14, not a release's list
        names.remove("before-1.16.json")
        assert len(names) == len(CATALOG.releases)
        for name in names:
            doc = json.loads(folder.joinpath(name).read_text())
            assert name == f"{doc['release_line']}.json"


class TestResolve:
    @pytest.mark.parametrize(
        ("text", "line", "jito"),
        [
            ("2.1", "2.1", None),
            ("v2.1.13", "2.1", None),
            ("1.18.26-jito", "1.18", True),
            ("master", "master", None),
            ("4.3", "master", None),
        ],
    )
    def test_versions(self, text: str, line: str, jito: bool | None) -> None:
        """Version spellings map to the right release line and Jito-ness."""
        rel, j = CATALOG.resolve(text)
        assert rel.line == line
        assert j is jito

    def test_bad_versions(self) -> None:
        """Unreadable and too-old versions are usage errors naming the known lines."""
        with pytest.raises(UsageError, match="cannot read"):
            CATALOG.resolve("banana")
        with pytest.raises(UsageError, match="older than"):
            CATALOG.resolve("1.10")

    def test_history_of_a_removed_flag(self) -> None:
        """History says where a flag lived, when it was deprecated, and its replacement."""
        h = CATALOG.history("skip-poh-verify")
        assert h.present[0] == "1.16"
        assert h.present[-1] == "2.3"
        assert h.deprecated[0] == "1.16"
        assert h.replaced_by == "skip-startup-ledger-verification"


def _unknowns(release: Release, argv: list[str], *, jito: bool) -> list[str]:
    version = f"{release.line}-jito" if jito else release.line
    text = "agave-validator " + " ".join(argv) + "\n"
    report = audit_text(text, version=version, profile="none")
    return [f.flag for f in report.findings if f.code == "unknown"]


class TestNeverUnknown:
    @pytest.mark.parametrize("line", CATALOG.lines)
    def test_every_flag_of_its_release_is_known(self, line: str) -> None:
        """Every flag, alias and short of a release (Jito's too) audits without 'unknown'."""
        rel = CATALOG.get(line)
        argv: list[str] = []
        for spec in (*rel.flags, *rel.jito_flags):
            for name in [spec.key, *spec.aliases]:
                argv += _argv_for(spec, name)
        text = "agave-validator " + " ".join(argv) + "\n"
        report = audit_text(text, version=f"{line}-jito", profile="none")
        codes = {f.code for f in report.findings}
        assert "unknown" not in codes
        assert "removed" not in codes
        assert "not-yet-added" not in codes
        assert "missing-value" not in codes
        assert "invalid-value" not in codes
        assert "port-range-too-small" not in codes

    @pytest.mark.parametrize("line", ["1.16", "2.0", "3.0", "4.2", "master"])
    def test_flags_of_other_releases_are_never_unknown(self, line: str) -> None:
        """A flag valid in any release is removed/not-yet-added/Jito-only, never unknown."""
        rel = CATALOG.get(line)
        argv: list[str] = []
        seen: set[str] = set()
        for other in CATALOG.releases:
            for spec in (*other.flags, *other.jito_flags):
                if spec.long and spec.long not in seen:
                    seen.add(spec.long)
                    argv += _argv_for(spec, spec.long)
        assert _unknowns(rel, argv, jito=False) == []
