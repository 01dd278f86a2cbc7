"""--fix: a corrected copy next to the original (never in place), precise edits, a diff."""

from __future__ import annotations

import shutil
from pathlib import Path

from agave_perf.tune.flags import audit_text, fix

from .conftest import FIXTURES


def copy_fixture(name: str, tmp_path: Path) -> Path:
    """Copy a fixture into tmp_path (mode kept) and return the copy."""
    dest = tmp_path / name
    shutil.copy2(FIXTURES / name, dest)
    return dest


def run_fix(path: Path, version: str | None = None) -> tuple[str, str]:
    """Audit and fix a file; return (original text, corrected text)."""
    text = path.read_text()
    report = audit_text(text, source=str(path), version=version, profile="none")
    fix(report, text, path)
    out = path.with_name(path.name + ".agave-perf")
    assert report.fixed_path == str(out)
    return text, out.read_text()


class TestFix:
    def test_typos_are_corrected_and_the_original_is_untouched(self, tmp_path: Path) -> None:
        """Typos are renamed to their suggestion; the copy audits clean; the original is kept."""
        path = copy_fixture("09_misspelled_flags.sh", tmp_path)
        path.chmod(0o750)
        before = path.read_bytes()
        original, fixed = run_fix(path)
        assert path.read_bytes() == before
        assert "--ledgr" not in fixed
        assert "  --ledger /mnt/ledger \\\n" in fixed
        assert "--enable-rpc-transaction-history \\\n" in fixed
        assert fixed.count("\n") == original.count("\n")
        assert audit_text(fixed, version="4.2", profile="none").errors == 0
        assert (path.with_name(path.name + ".agave-perf").stat().st_mode & 0o777) == 0o750

    def test_removed_flags_renamed_or_dropped_line_by_line(self, tmp_path: Path) -> None:
        """Removed flags with a replacement are renamed; the others lose their whole line."""
        path = copy_fixture("10_removed_flags_on_3x.sh", tmp_path)
        original, fixed = run_fix(path, version="3.0")
        assert "--skip-startup-ledger-verification \\\n" in fixed
        assert "--enable-extended-tx-metadata-storage \\\n" in fixed
        for gone in (
            "--no-check-vote-account",
            "--accounts-db-caching-enabled",
            "--minimal-rpc-api",
        ):
            assert gone not in fixed
        assert fixed.count("\n") == original.count("\n") - 3
        # what is left is a real constraint the fix must not paper over: the replacement
        # --enable-extended-tx-metadata-storage requires --enable-rpc-transaction-history
        left = audit_text(fixed, version="3.0", profile="none")
        assert [(f.code, f.flag) for f in left.findings if f.severity == "fail"] == [
            ("requires", "--enable-extended-tx-metadata-storage")
        ]

    def test_deleting_the_last_continued_line_removes_the_dangling_backslash(
        self, tmp_path: Path
    ) -> None:
        """When the dropped flag ends the command, the previous line's backslash goes too."""
        path = tmp_path / "run.sh"
        path.write_text(
            "exec agave-validator \\\n  --ledger /l \\\n  --minimal-rpc-api\necho done\n"
        )
        _, fixed = run_fix(path, version="3.0")
        assert fixed == "exec agave-validator \\\n  --ledger /l\necho done\n"

    def test_identical_duplicate_removed(self, tmp_path: Path) -> None:
        """A flag repeated with the same value loses the repeat; other words stay."""
        path = tmp_path / "cmd.txt"
        path.write_text("agave-validator --no-voting --rpc-port 8899 --no-voting --full-rpc-api\n")
        _, fixed = run_fix(path, version="2.1")
        assert fixed == "agave-validator --no-voting --rpc-port 8899 --full-rpc-api\n"

    def test_duplicate_of_an_old_alias_is_removed_not_renamed(self, tmp_path: Path) -> None:
        """A repeated old alias is renamed once and its copy deleted; the fixed copy audits
        without a duplicate (renaming both left the validator refusing to start)."""
        path = tmp_path / "v.sh"
        path.write_text("agave-validator --ledger /l --no-untrusted-rpc --no-untrusted-rpc\n")
        _, fixed = run_fix(path, version="2.2")
        assert fixed.split() == ["agave-validator", "--ledger", "/l", "--only-known-rpc"]
        again = audit_text(fixed, version="2.2", profile="none")
        assert "duplicate" not in {f.code for f in again.findings}

    def test_deprecated_flag_next_to_its_replacement_is_dropped(self, tmp_path: Path) -> None:
        """Renaming a deprecated flag onto its replacement, already given, would give that
        flag twice (the validator refuses); the old spelling is dropped instead."""
        path = tmp_path / "v.sh"
        path.write_text(
            "agave-validator --ledger /l --skip-poh-verify --skip-startup-ledger-verification\n"
        )
        _, fixed = run_fix(path, version="2.1")
        assert fixed.split() == [
            "agave-validator",
            "--ledger",
            "/l",
            "--skip-startup-ledger-verification",
        ]
        assert audit_text(fixed, version="2.1", profile="none").errors == 0

    def test_rename_inside_an_array_and_a_bash_c_string(self, tmp_path: Path) -> None:
        """Words from an array or a bash -c '...' string are edited where they are written."""
        path = tmp_path / "arr.sh"
        path.write_text('args=(\n  --ledgr /l\n)\nexec agave-validator "${args[@]}"\n')
        _, fixed = run_fix(path, version="2.1")
        assert "  --ledger /l\n" in fixed
        unit = shutil.copy2(FIXTURES / "16_systemd_bash_c.service", tmp_path / "v.service")
        _, fixed_unit = run_fix(Path(unit))
        assert "--rpc-threads 8'" in fixed_unit

    def test_values_from_variables_are_not_rewritten(self, tmp_path: Path) -> None:
        """A typo that came out of $FLAGS is reported as not fixable, not guessed at."""
        path = tmp_path / "var.sh"
        path.write_text('FLAGS="--ledgr /l"\nexec agave-validator $FLAGS\n')
        text = path.read_text()
        report = audit_text(text, source=str(path), version="2.1", profile="none")
        fix(report, text, path)
        assert report.fixed_path is None
        assert report.fix_skipped == ["--ledgr: comes from $FLAGS; change it there"]

    def test_stdin_prints_a_diff_and_writes_nothing(self, tmp_path: Path) -> None:
        """Without a file (stdin) the diff is produced and no file is written."""
        text = "agave-validator --no-votting\n"
        report = audit_text(text, version="2.1", profile="none")
        fix(report, text, None)
        assert report.fixed_path is None
        assert "-agave-validator --no-votting" in report.diff
        assert "+agave-validator --no-voting" in report.diff
        assert list(tmp_path.iterdir()) == []

    def test_crlf_file_keeps_its_line_endings(self, tmp_path: Path) -> None:
        """The corrected copy of a CRLF script keeps CRLF endings byte for byte elsewhere."""
        path = tmp_path / "win.sh"
        path.write_bytes(b"exec agave-validator \\\r\n  --ledger /l \\\r\n  --no-votng\r\n")
        with path.open(encoding="utf-8", newline="") as fh:
            text = fh.read()
        report = audit_text(text, source=str(path), version="2.1", profile="none")
        fix(report, text, path)
        fixed = path.with_name("win.sh.agave-perf").read_bytes()
        assert fixed == b"exec agave-validator \\\r\n  --ledger /l \\\r\n  --no-voting\r\n"

    def test_values_are_corrected_in_place(self, tmp_path: Path) -> None:
        """Too-small port ranges, ledger limits and near-miss index names get the right value."""
        path = tmp_path / "v.sh"
        path.write_text(
            "agave-validator --dynamic-port-range=8000-8010 --limit-ledger-size 5000 "
            "--account-index program-ids\n"
        )
        _, fixed = run_fix(path, version="3.0")
        assert fixed == (
            "agave-validator --dynamic-port-range=8000-8025 --limit-ledger-size 50000000 "
            "--account-index program-id\n"
        )

    def test_no_rename_when_the_value_would_change_meaning(self, tmp_path: Path) -> None:
        """--accounts-db-cache-limit-mb 5000 is not renamed to a flag that reads bytes."""
        path = tmp_path / "v.sh"
        path.write_text(
            "agave-validator --accounts-db-cache-limit-mb 5000 "
            "--experimental-poh-pinned-cpu-core 3\n"
        )
        text = path.read_text()
        report = audit_text(text, source=str(path), version="4.2", profile="none")
        fix(report, text, path)
        dep = {f.flag: f for f in report.findings if f.code == "deprecated"}
        assert "MEGABYTES -> BYTES" in dep["--accounts-db-cache-limit-mb"].suggestion
        assert dep["--accounts-db-cache-limit-mb"].edit is None
        fixed = path.with_name("v.sh.agave-perf").read_text()
        assert (
            fixed == "agave-validator --accounts-db-cache-limit-mb 5000 --poh-pinned-cpu-core 3\n"
        )
