"""`agave-perf flags audit` end to end in a subprocess: exit codes, JSON, tables, --fix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import FIXTURES


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "agave_perf", "flags", "audit", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


class TestExitCodes:
    def test_clean_script_exits_0(self, good_root: Path) -> None:
        """A script without errors exits 0 and prints the table with the release used."""
        r = run(str(FIXTURES / "01_agave_array_exec.sh"), "--root", str(good_root))
        assert r.returncode == 0, r.stderr
        assert "flags of 4.2" in r.stdout
        assert "0 error(s)" in r.stdout

    def test_errors_exit_1_with_json(self) -> None:
        """Typos make exit 1; --json prints one document with every finding."""
        r = run(str(FIXTURES / "09_misspelled_flags.sh"), "--json", "--profile", "none")
        assert r.returncode == 1
        doc = json.loads(r.stdout)
        assert doc["errors"] == 9
        unknown = [f["flag"] for f in doc["invocations"][0]["findings"] if f["code"] == "unknown"]
        assert "--ledgr" in unknown
        assert "Traceback" not in r.stderr

    def test_unreadable_input_exits_2(self, tmp_path: Path) -> None:
        """A missing file, a binary file and a unit without the validator exit 2 with one line."""
        missing = run(str(tmp_path / "nope.sh"))
        assert missing.returncode == 2
        assert missing.stderr.startswith("agave-perf: error: cannot read")
        binary = tmp_path / "bin"
        binary.write_bytes(b"\xff\xfe\x00binary")
        assert run(str(binary)).returncode == 2
        unit = run(str(FIXTURES / "19_unit_runs_script.service"))
        assert unit.returncode == 2
        assert "validator.sh" in unit.stderr

    def test_stdin_and_version(self) -> None:
        """'-' reads standard input; --agave-version picks the list."""
        r = run(
            "-", "--agave-version", "3.0", "--json", stdin="agave-validator --skip-poh-verify\n"
        )
        assert r.returncode == 1
        doc = json.loads(r.stdout)
        assert doc["invocations"][0]["release"] == "3.0"
        assert doc["invocations"][0]["findings"][0]["code"] == "removed"

    def test_bad_version_is_a_usage_error(self) -> None:
        """An unreadable --agave-version exits 2."""
        r = run("-", "--agave-version", "banana", stdin="agave-validator\n")
        assert r.returncode == 2


class TestFixCommand:
    def test_fix_writes_copy_and_prints_diff(self, tmp_path: Path) -> None:
        """--fix writes FILE.agave-perf next to FILE, leaves FILE alone and prints the diff."""
        path = tmp_path / "validator.sh"
        shutil.copy(FIXTURES / "17_deprecated_on_2x.sh", path)
        before = path.read_bytes()
        r = run(str(path), "--agave-version", "2.1", "--fix", "--profile", "none")
        assert r.returncode == 0, r.stderr
        assert path.read_bytes() == before
        fixed = tmp_path / "validator.sh.agave-perf"
        assert "--skip-startup-ledger-verification" in fixed.read_text()
        assert "+  --skip-startup-ledger-verification \\" in r.stdout
        assert f"corrected copy written to {fixed}" in r.stdout.replace("\n", "")

    def test_fix_replaces_a_symlink_instead_of_writing_through_it(self, tmp_path: Path) -> None:
        """A symlink at FILE.agave-perf is replaced by the copy; its target is left untouched."""
        path = tmp_path / "validator.sh"
        path.write_text("agave-validator --rpc-bind-adress 0.0.0.0\n")
        victim = tmp_path / "victim"
        victim.write_text("keep\n")
        (tmp_path / "validator.sh.agave-perf").symlink_to(victim)
        r = run(str(path), "--fix", "--profile", "none")
        assert r.returncode == 1, r.stderr
        assert victim.read_text() == "keep\n"
        fixed = tmp_path / "validator.sh.agave-perf"
        assert not fixed.is_symlink()
        assert "--rpc-bind-address" in fixed.read_text()

    def test_unwritable_fix_copy_is_one_line(self, tmp_path: Path) -> None:
        """When FILE.agave-perf cannot be written (a directory is there), exit 2 with one line."""
        path = tmp_path / "validator.sh"
        path.write_text("agave-validator --rpc-bind-adress 0.0.0.0\n")
        (tmp_path / "validator.sh.agave-perf").mkdir()
        r = run(str(path), "--fix", "--profile", "none")
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1
        assert "validator.sh.agave-perf" in r.stderr
        assert "internal error" not in r.stderr

    def test_printed_diff_keeps_long_lines_whole(self, tmp_path: Path) -> None:
        """The diff printed by --fix has every long line intact, so it can be used as a patch."""
        path = tmp_path / "validator.sh"
        line = (
            "exec agave-validator --ledger /mnt/ledger/" + "x" * 120 + " --rpc-bind-adress 0.0.0.0"
        )
        path.write_text("#!/bin/sh\n" + line + "\n")
        r = run(str(path), "--fix", "--profile", "none")
        assert r.returncode == 1, r.stderr
        assert "-" + line + "\n" in r.stdout
        assert "+" + line.replace("adress", "address") + "\n" in r.stdout


class TestWorkload:
    def test_rpc_method_option(self, good_root: Path) -> None:
        """--rpc-method getProgramAccounts makes a missing program-id index advice."""
        r = run(
            "-",
            "--json",
            "--root",
            str(good_root),
            "--rpc-method",
            "getProgramAccounts",
            stdin="agave-validator --ledger /mnt/ledger --accounts /mnt/accounts\n",
        )
        assert r.returncode == 0, r.stderr
        codes = {f["code"] for f in json.loads(r.stdout)["invocations"][0]["findings"]}
        assert "account-index-missing" in codes


class TestReviewFormats:
    def test_format_gcc_exits_1_with_one_line_per_finding(self) -> None:
        """--format gcc prints file:line:col: error: lines and keeps exit 1 for errors."""
        path = str(FIXTURES / "30_ansible_typo_in_if.sh.j2")
        r = run(path, "--format", "gcc", "--profile", "none")
        assert r.returncode == 1
        assert r.stdout.startswith(f"{path}:5:5: error: --enable-rpc-transaction-histroy")

    def test_format_sarif_is_one_json_log(self) -> None:
        """--format sarif prints one SARIF 2.1.0 document whose errors match the audit."""
        r = run(str(FIXTURES / "37_compose_list.yml"), "--format", "sarif", "--profile", "none")
        assert r.returncode == 1
        log = json.loads(r.stdout)
        assert log["version"] == "2.1.0"
        levels = [res["level"] for res in log["runs"][0]["results"]]
        assert levels.count("error") == 1

    def test_unknown_release_is_exit_2(self) -> None:
        """--agave-version 9.9 is a usage error (exit 2) with a suggestion, not master."""
        r = run(str(FIXTURES / "01_agave_array_exec.sh"), "--agave-version", "9.9")
        assert r.returncode == 2
        assert "did you mean" in r.stderr
