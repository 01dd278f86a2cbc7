"""The audit report: what a new user found wrong, older flags, and output for review tools."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agave_perf.errors import UsageError
from agave_perf.status import Status
from agave_perf.tune.flags import FlagCatalog, audit_text, fix
from tests.tune.flags.conftest import fixture_text, make_root

CATALOG = FlagCatalog.load()


class TestNewUserDefects:
    def test_space_after_continuation_is_an_error(self) -> None:
        """bash ends the command at '\\ ' + newline: that is an error, not a 'read as intended'."""
        report = audit_text(fixture_text("15_trailing_space_after_backslash.sh"), profile="none")
        parse = [f for f in report.findings if f.code == "parse"]
        assert parse[0].severity is Status.FAIL
        assert "not passed to the validator" in parse[0].message
        assert report.errors >= 1

    def test_comment_line_inside_a_continuation_is_an_error(self) -> None:
        """'  # note \\' between continuation lines ends the command in bash (the backslash is
        part of the comment; bash then runs '--no-voting' as a command): an error, like the
        blank after a backslash, not a 'read as intended' warning."""
        text = "exec agave-validator \\\n  --ledger /l \\\n  # rpc \\\n  --no-voting\n"
        report = audit_text(text, profile="none")
        (parse,) = [f for f in report.findings if f.code == "parse"]
        assert (parse.severity, parse.line) == (Status.FAIL, 3)
        assert report.invocations[0].argv == ["--ledger", "/l", "--no-voting"]

    def test_missing_continuation_before_a_flag_line_is_an_error(self) -> None:
        """A line without its '\\' before a '--flag' line: bash ends the command there, so the
        audit says so (it was silent, and the flags after it were never read)."""
        report = audit_text(fixture_text("47_missing_continuation.sh"), profile="none")
        parse = [f for f in report.findings if f.code == "parse"]
        assert [(f.severity, f.line) for f in parse] == [(Status.FAIL, 8)]
        assert "no line-continuation backslash" in parse[0].message
        assert report.invocations[0].argv[-4:] == [
            "--full-rpc-api",
            "--no-voting",
            "--private-rpc",
            "--limit-ledger-size",
        ]

    def test_missing_continuation_in_a_unit_is_an_error(self) -> None:
        """In a unit, an indented --flag line after an ExecStart= line without '\\' is ignored
        by systemd (no '='): an error naming systemd, and the flags are still audited."""
        text = (
            "[Service]\nExecStart=/usr/bin/agave-validator \\\n  --ledger /l \\\n"
            "  --rpc-port 8899\n  --no-voting \\\n  --full-rpc-api\nRestart=always\n"
        )
        report = audit_text(text, source="sol.service", profile="none")
        (parse,) = [f for f in report.findings if f.code == "parse"]
        assert (parse.severity, parse.line) == (Status.FAIL, 4)
        assert "systemd ends ExecStart= here" in parse.message
        assert report.invocations[0].argv[-2:] == ["--no-voting", "--full-rpc-api"]

    @pytest.mark.parametrize(
        ("name", "fixed_line"),
        [
            ("47_missing_continuation.sh", "    --rpc-port 8899 \\\n"),
            (
                "48_ansible_branch_no_continuation.sh.j2",
                "  --gossip-host {{ solana_gossip_host }} \\\n",
            ),
            ("15_trailing_space_after_backslash.sh", None),
        ],
    )
    def test_fix_mends_a_broken_continuation(
        self, tmp_path: Path, name: str, fixed_line: str | None
    ) -> None:
        """--fix adds the missing ' \\' (in a template too) or drops the blanks after one; the
        corrected copy has no continuation error left, and 'not fixed' does not list it."""
        text = fixture_text(name)
        path = tmp_path / name
        path.write_text(text)
        report = fix(audit_text(text, source=str(path), profile="none"), text, path)
        copy = path.with_name(name + ".agave-perf").read_text()
        if fixed_line is not None:
            assert fixed_line in copy
        again = audit_text(copy, source=name, profile="none")
        assert not [f for f in again.findings if f.code == "parse" and f.severity is Status.FAIL]
        assert not [s for s in report.fix_skipped if "backslash" in s]
        assert any(a.startswith("line ") for a in report.fix_applied)

    def test_fix_leaves_a_comment_line_to_the_operator(self, tmp_path: Path) -> None:
        """A comment line inside a continuation is not deleted: it is listed as not fixed."""
        text = "exec agave-validator \\\n  --ledger /l \\\n  # rpc \\\n  --no-voting\n"
        report = fix(audit_text(text, profile="none"), text, None)
        assert report.diff == ""
        assert [s for s in report.fix_skipped if "comment line" in s]

    def test_a_broken_line_of_another_command_is_not_reported(self) -> None:
        """Only the validator's command is this audit's business: a curl line is not."""
        text = "curl -s http://x\n  -o /tmp/x\nagave-validator --ledger /l \\\n  --no-voting\n"
        report = audit_text(text, profile="none")
        assert not [f for f in report.findings if f.code == "parse"]

    def test_branch_ending_without_continuation_names_the_condition(self) -> None:
        """An {% if %} branch whose last flag has no '\\': that rendering ends the command;
        the error names the condition, and the flags after the block are still audited."""
        report = audit_text(fixture_text("48_ansible_branch_no_continuation.sh.j2"))
        parse = next(f for f in report.findings if f.code == "parse")
        assert parse.severity is Status.FAIL
        assert parse.line == 8
        assert "when {% if solana_gossip_host | default('') | length > 0 %}" in parse.message
        assert report.invocations[0].argv[-1] == "--no-voting"

    def test_known_jito_binary_gets_no_per_flag_jito_remark(self) -> None:
        """A binary identified as Jito-Solana is not told 'keep it only if Jito' per Jito flag."""
        text = (
            "/home/sol/jito-solana/bin/agave-validator --ledger /l "
            "--block-engine-url https://x --tip-payment-program-pubkey T1 --commission-bps 800\n"
        )
        report = audit_text(text, version="2.1", profile="none")
        assert report.invocations[0].jito
        assert not [f for f in report.findings if f.code == "jito-only"]
        inferred = audit_text(text.replace("jito-solana", "opt"), version="2.1", profile="none")
        assert [f for f in inferred.findings if f.code == "jito-only"]

    def test_not_fixed_list_agrees_with_the_diff(self, tmp_path: Path) -> None:
        """After --fix, the errors left in the corrected copy are exactly the 'not fixed' ones."""
        text = (
            "agave-validator --ledgr /l --rpc-port \\\n  --no-voting --no-voting "
            "--dynamic-port-range 8000-8001 --identity\n"
        )
        path = tmp_path / "v.sh"
        path.write_text(text)
        report = fix(audit_text(text, source=str(path), version="2.1", profile="none"), text, path)
        again = audit_text(
            path.with_name("v.sh.agave-perf").read_text(), version="2.1", profile="none"
        )
        left = {f.flag for f in again.findings if f.severity is Status.FAIL}
        not_fixed = {s.split(":")[0] for s in report.fix_skipped}
        assert left
        assert left <= not_fixed
        assert {a.split(" ")[0] for a in report.fix_applied}.isdisjoint(left)

    def test_unknown_release_is_a_usage_error_with_did_you_mean(self) -> None:
        """--agave-version 9.9 names the known lines and suggests one; 4.3 (master's) is master."""
        with pytest.raises(UsageError, match=r"no flag list for Agave 9\.9.*did you mean"):
            audit_text("agave-validator --ledger /l\n", version="9.9")
        assert CATALOG.resolve("4.3")[0].line == "master"

    def test_misspelt_rpc_method_is_a_usage_error(self) -> None:
        """--rpc-method getProgramAcounts is refused with the method it probably meant."""
        with pytest.raises(UsageError, match="did you mean getProgramAccounts"):
            audit_text("agave-validator --ledger /l\n", methods=("getProgramAcounts",))

    def test_paths_not_on_this_host_are_said_not_found(self, tmp_path: Path) -> None:
        """Auditing away from the node never claims ledger and accounts share a device."""
        root = make_root(tmp_path, mounts="/dev/sda1 / ext4 rw 0 0\n")
        text = "agave-validator --ledger /mnt/ledger --accounts /mnt/accounts\n"
        report = audit_text(text, version="2.1", root=root)
        codes = {f.code for f in report.findings}
        assert "accounts-same-device" not in codes
        assert "paths-not-found" in codes


class TestRemovedBeforeOldest:
    def test_table_names_are_in_no_shipped_list(self) -> None:
        """Every 'removed before 1.16' name is absent from all lists; successors are present."""
        known = CATALOG.all_names()
        assert len(CATALOG.older) >= 20
        for name, old in CATALOG.older.items():
            assert name not in known
            assert old.successor is None or old.successor in known
            assert set(old.lines) <= {f"1.{n}" for n in range(16)}

    @pytest.mark.parametrize(
        "flag",
        ["--no-accounts-db-caching", "--frozen-account", "--no-duplicate-instance-check"],
    )
    def test_flags_of_old_releases_seen_in_public_scripts_are_not_unknown(self, flag: str) -> None:
        """Flags that public Ansible roles still pass (read from the 1.x sources) are
        'removed before 1.16', never 'unknown'; they were reported unknown before."""
        report = audit_text(f"solana-validator --ledger /l {flag} x\n", profile="none")
        f = next(f for f in report.findings if f.flag == flag)
        assert f.code == "removed"
        assert f.message.startswith("removed before 1.16 (a flag of solana-validator 1.")

    def test_a_value_taking_old_flag_is_not_half_deleted(self) -> None:
        """--frozen-account took a value: --fix never deletes the flag and leaves the value."""
        report = audit_text("solana-validator --ledger /l --frozen-account Acc1\n", version="1.16")
        f = next(f for f in report.findings if f.flag == "--frozen-account")
        assert f.edit is None

    def test_successor_from_the_old_sources(self) -> None:
        """--voting-keypair was read as the --authorized-voter keypair (1.0-1.1 sources)."""
        report = audit_text(
            "solana-validator --voting-keypair v.json --ledger /l\n", version="1.16"
        )
        f = next(f for f in report.findings if f.flag == "--voting-keypair")
        assert f.suggestion == "use --authorized-voter"

    def test_old_flag_is_named_with_its_successor(self) -> None:
        """--identity-keypair is 'removed before 1.16', with --identity to use and a rename."""
        report = audit_text(
            "solana-validator --identity-keypair id.json --ledger /l\n", version="1.16"
        )
        f = next(f for f in report.findings if f.flag == "--identity-keypair")
        assert f.code == "removed"
        assert f.message.startswith("removed before 1.16")
        assert f.suggestion == "use --identity"
        assert f.edit is not None
        assert f.edit.new_name == "--identity"

    def test_old_flag_without_successor_is_removed(self) -> None:
        """--bpf-jit has no successor: remove it (the JIT is always used)."""
        report = audit_text(
            "agave-validator --bpf-jit --ledger /l\n", version="2.1", profile="none"
        )
        f = next(f for f in report.findings if f.flag == "--bpf-jit")
        assert f.code == "removed"
        assert f.suggestion == "remove it"


GCC = re.compile(
    r"^(?P<file>[^:]+)(?::(?P<line>\d+)(?::(?P<col>\d+))?)?: (error|warning|note): .+ \[[a-z-]+\]$"
)


class TestFormats:
    def test_gcc_lines(self) -> None:
        """--format gcc: one file:line:col: level: message [code] line per finding."""
        text = fixture_text("09_misspelled_flags.sh")
        report = audit_text(text, source="start.sh", profile="none")
        lines = report.to_gcc().splitlines()
        assert len(lines) == len(report.findings)
        assert all(GCC.match(line) for line in lines), lines
        first = next(line for line in lines if "--ledgr" in line)
        assert first.startswith("start.sh:4:3: error: --ledgr: unknown flag")
        assert first.endswith("[unknown]")

    def test_gcc_levels_follow_the_status(self) -> None:
        """fail prints as error, warn as warning, note as note."""
        report = audit_text(fixture_text("17_deprecated_on_2x.sh"), source="s.sh", version="2.1")
        levels = {m.group(4) for line in report.to_gcc().splitlines() if (m := GCC.match(line))}
        assert {"warning", "note"} <= levels
        assert report.to_gcc(Status.FAIL).count("\n") == report.errors

    def test_sarif_has_the_required_structure(self) -> None:
        """--format sarif: a SARIF 2.1.0 log with the keys the schema requires, one result per
        finding, levels in the schema's set and regions that start at line 1 or later."""
        report = audit_text(fixture_text("14_missing_value_duplicate_conflict.sh"), source="s.sh")
        log = json.loads(json.dumps(report.to_sarif()))
        assert log["version"] == "2.1.0"
        assert log["$schema"].endswith("sarif-2.1.0.json")
        (run,) = log["runs"]
        driver = run["tool"]["driver"]
        assert driver["name"] == "agave-perf"
        rule_ids = {r["id"] for r in driver["rules"]}
        assert len(run["results"]) == len(report.findings)
        for result in run["results"]:
            assert set(result) >= {"ruleId", "level", "message", "locations"}
            assert result["ruleId"] in rule_ids
            assert result["level"] in ("none", "note", "warning", "error")
            assert result["message"]["text"]
            loc = result["locations"][0]["physicalLocation"]
            assert loc["artifactLocation"]["uri"] == "s.sh"
            if "region" in loc:
                assert loc["region"]["startLine"] >= 1
                assert loc["region"]["startColumn"] >= 1
        errors = [r for r in run["results"] if r["level"] == "error"]
        assert len(errors) == report.errors

    def test_json_shape_carries_status_and_column(self) -> None:
        """--json findings keep their keys; severity is the status word, plus advice and col."""
        report = audit_text(fixture_text("09_misspelled_flags.sh"), profile="rpc-trading")
        found = report.to_json()["invocations"][0]["findings"]
        assert {f["severity"] for f in found} <= {"fail", "warn", "note"}
        first = found[0]
        assert set(first) >= {
            "severity",
            "advice",
            "flag",
            "code",
            "finding",
            "suggestion",
            "line",
            "col",
        }
