"""Validation of fixtures against their release: typos, removed, deprecated, values, repeats."""

from __future__ import annotations

import pytest

from agave_perf.tune.flags import AuditReport, audit_text

from .conftest import fixture_text


def audit(name: str, version: str | None = None) -> AuditReport:
    """Audit a fixture with validation only (no profile advice)."""
    return audit_text(fixture_text(name), source=name, version=version, profile="none")


def codes(report: AuditReport) -> dict[str, set[str]]:
    """code -> set of flags reported with it."""
    out: dict[str, set[str]] = {}
    for f in report.findings:
        out.setdefault(f.code, set()).add(f.flag)
    return out


# fixtures that must audit without a single error, with the release they resolve to
CLEAN = {
    "01_agave_array_exec.sh": ("4.2", False),
    "04_quoted_paths_with_spaces.sh": ("4.2", False),
    "05_env_vars.sh": ("4.2", False),
    "06_systemd_multiple_execstart.service": ("4.2", False),
    "07_systemd_at_prefix_jito.service": ("2.2", True),
    "08_jito_script.sh": ("1.18", True),
    "11_nohup_taskset_numactl_tee.sh": ("4.2", False),
    "12_sudo_and_subcommands.sh": ("4.2", False),
    "13_plain_command_line.txt": ("4.2", False),
    "18_short_flags.sh": ("1.18", False),
    "20_if_then_restart_loop.sh": ("4.2", False),
}


class TestFixtures:
    @pytest.mark.parametrize("name", sorted(CLEAN))
    def test_clean_scripts_have_no_errors(self, name: str) -> None:
        """Well-formed scripts in every operator style audit clean, on the right release."""
        report = audit(name)
        assert report.errors == 0, [f.to_json() for f in report.findings if f.severity == "fail"]
        line, jito = CLEAN[name]
        assert report.invocations[0].release.line == line
        assert report.invocations[0].jito is jito

    def test_every_misspelled_flag_is_found_with_a_suggestion(self) -> None:
        """All nine typos are unknown, each with the right 'did you mean'."""
        report = audit("09_misspelled_flags.sh")
        got = {f.flag: f.suggestion for f in report.findings if f.code == "unknown"}
        assert got == {
            "--ledgr": "did you mean --ledger?",
            "--acounts": "did you mean --accounts?",
            "--rpc-prot": "did you mean --rpc-port?",
            "--full-rpc-apii": "did you mean --full-rpc-api?",
            "--no-votting": "did you mean --no-voting?",
            "--known-validtor": "did you mean --known-validator?",
            "--limit-leger-size": "did you mean --limit-ledger-size?",
            "--enable-rpc-transaction-histroy": "did you mean --enable-rpc-transaction-history?",
            "--dynamic-port-rnage": "did you mean --dynamic-port-range?",
        }
        assert report.errors == 9

    def test_misspelled_flag_value_is_not_taken_for_an_argument(self) -> None:
        """The value after an unknown flag stays with it (no 'unexpected argument' noise)."""
        report = audit("09_misspelled_flags.sh")
        assert "unexpected-argument" not in codes(report)

    def test_removed_flags_name_the_release_and_replacement(self) -> None:
        """On 3.0, flags dropped after 2.3 are 'removed in 3.0' with their replacement."""
        report = audit("10_removed_flags_on_3x.sh", version="3.0")
        removed = {f.flag: f for f in report.findings if f.code == "removed"}
        assert set(removed) == {
            "--no-check-vote-account",
            "--accounts-db-caching-enabled",
            "--skip-poh-verify",
            "--enable-cpi-and-log-storage",
            "--minimal-rpc-api",
        }
        assert removed["--skip-poh-verify"].message.startswith("removed in 3.0 (last in 2.3)")
        assert removed["--skip-poh-verify"].suggestion == "use --skip-startup-ledger-verification"
        assert removed["--accounts-db-caching-enabled"].message.startswith("removed in 2.0")
        assert "unknown" not in codes(report)

    def test_deprecated_flags_on_the_release_that_still_has_them(self) -> None:
        """On 2.1 the same flags are warnings: deprecated since 1.16, with the replacement."""
        report = audit("17_deprecated_on_2x.sh", version="2.1")
        dep = {f.flag: f for f in report.findings if f.code == "deprecated"}
        assert set(dep) == {
            "--skip-poh-verify",
            "--enable-cpi-and-log-storage",
            "--no-rocksdb-compaction",
        }
        assert all(f.severity == "warn" for f in dep.values())
        assert dep["--enable-cpi-and-log-storage"].suggestion == (
            "use --enable-extended-tx-metadata-storage"
        )
        assert "deprecated since 1.16" in dep["--skip-poh-verify"].message
        assert report.errors == 0

    def test_old_script_on_its_own_release(self) -> None:
        """1.16 script: old aliases noted, deprecated flags warned, alias+name repeat an error."""
        report = audit("02_solana_1_16_classic.sh")
        c = codes(report)
        assert report.invocations[0].release.line == "1.16"
        assert c["alias"] == {"--trusted-validator", "--no-untrusted-rpc"}
        assert c["deprecated"] == {"--accounts-db-caching-enabled", "--incremental-snapshots"}
        # --no-untrusted-rpc is an alias of --only-known-rpc: clap sees it twice
        assert c["duplicate"] == {"--only-known-rpc"}

    def test_missing_values_duplicates_conflicts_invalid_values(self) -> None:
        """Missing values, repeated --rpc-port, --private-rpc + --public-rpc-address, bad index."""
        report = audit("14_missing_value_duplicate_conflict.sh", version="2.2")
        c = codes(report)
        assert c["missing-value"] == {"--identity", "--dynamic-port-range"}
        assert c["duplicate"] == {"--rpc-port"}
        assert c["conflict"] == {"--public-rpc-address"}
        assert c["invalid-value"] == {"--account-index"}
        inv = next(f for f in report.findings if f.code == "invalid-value")
        assert inv.suggestion == "did you mean 'program-id'?"

    def test_jito_flags_on_stock_agave(self) -> None:
        """Jito flags on a build declared stock are errors that say 'Jito-Solana only'."""
        text = "agave-validator --ledger /l --block-engine-url https://x --relayer-url http://y\n"
        report = audit_text(text, version="2.2", profile="none", jito=False)
        jito = [f for f in report.findings if f.code == "jito-only"]
        assert {f.flag for f in jito} == {"--block-engine-url", "--relayer-url"}
        assert all(f.severity == "fail" and "Jito-Solana only" in f.message for f in jito)

    def test_jito_inferred_from_its_flags(self) -> None:
        """Without a version or path hint, Jito flags make the audit treat the build as Jito."""
        text = "agave-validator --ledger /l --block-engine-url https://x\n"
        report = audit_text(text, profile="none")
        assert report.invocations[0].jito
        assert report.errors == 0

    def test_flag_newer_than_release(self) -> None:
        """A flag from a later release is 'not yet added', naming the release that added it."""
        text = "agave-validator --ledger /l --no-snapshots\n"
        report = audit_text(text, version="2.1", profile="none")
        f = next(f for f in report.findings if f.code == "not-yet-added")
        assert f.message == "not in 2.1; added in 2.3"

    def test_removed_upstream_but_kept_by_jito(self) -> None:
        """--gossip-host left Agave in 4.0 but Jito 4.1 keeps it; stock 4.1 gets a precise error."""
        text = "agave-validator --ledger /l --gossip-host 1.2.3.4\n"
        stock = audit_text(text, version="4.1", profile="none", jito=False)
        f = next(f for f in stock.findings if f.flag == "--gossip-host")
        assert f.code == "jito-only"
        assert "removed from Agave in 4.0" in f.message
        jito = audit_text(text, version="4.1-jito", profile="none")
        assert jito.errors == 0
        old = audit_text(text, version="4.0", profile="none", jito=False)
        f = next(f for f in old.findings if f.flag == "--gossip-host")
        assert f.code == "removed"
        assert f.suggestion == "use --bind-address"

    def test_binary_name_mismatch(self) -> None:
        """solana-validator declared as 2.x gets a warning about the binary's name."""
        report = audit_text("solana-validator --ledger /l\n", version="2.1", profile="none")
        assert "binary-name" in codes(report)

    def test_flag_value_forms(self) -> None:
        """--flag=value, -lVALUE and a bare flag given a value are read like clap reads them."""
        text = "agave-validator --rpc-port=8899 -l/mnt/l --no-voting=yes\n"
        report = audit_text(text, version="2.1", profile="none")
        assert codes(report) == {"unexpected-value": {"--no-voting"}}

    def test_stray_positional(self) -> None:
        """A word that belongs to no flag is an 'unexpected argument' error."""
        report = audit_text("agave-validator --no-voting stray\n", version="2.1", profile="none")
        assert codes(report)["unexpected-argument"] == {"stray"}

    def test_path_version_older_than_every_list(self) -> None:
        """A binary path naming 1.14 falls back to the oldest list and says so, not exit 2."""
        text = "/opt/solana/releases/v1.14.20/bin/solana-validator --ledger /l\n"
        report = audit_text(text, profile="none")
        inv = report.invocations[0]
        assert inv.release.line == "1.16"
        assert "older than 1.16" in inv.version_reason

    def test_port_range_width_per_release(self) -> None:
        """8000-8020 is fine for 1.16 (13 ports needed) but refused by 3.0 (25 needed)."""
        text = "agave-validator --ledger /l --dynamic-port-range 8000-8020\n"
        assert audit_text(text, version="1.16", profile="none").errors == 0
        report = audit_text(text, version="3.0", profile="none")
        f = next(f for f in report.findings if f.code == "port-range-too-small")
        assert "needs at least 25" in f.message
        assert f.suggestion == "use --dynamic-port-range 8000-8025"

    def test_ledger_limit_minimum(self) -> None:
        """--limit-ledger-size below 50,000,000 shreds is refused; a bare flag is fine."""
        low = audit_text("agave-validator --limit-ledger-size 1000000\n", version="2.1")
        f = next(f for f in low.findings if f.code == "ledger-limit-too-small")
        assert "minimum 50000000" in f.message
        bare = audit_text("agave-validator --limit-ledger-size --no-voting\n", version="2.1")
        assert bare.errors == 0

    def test_flags_jito_itself_dropped(self) -> None:
        """A Jito flag Jito later removed says when, and names Jito's replacement."""
        text = "agave-validator --block-engine-address http://be --preallocated-bundle-cost 1\n"
        report = audit_text(text, version="4.2-jito", profile="none")
        got = {f.flag: (f.message, f.suggestion) for f in report.findings}
        assert got["--block-engine-address"] == (
            "removed from Jito-Solana in 1.17 (last in 1.16)",
            "use --block-engine-url",
        )
        assert (
            got["--preallocated-bundle-cost"][0] == "removed from Jito-Solana in 3.1 (last in 3.0)"
        )

    def test_repeatable_options_take_several_values(self) -> None:
        """clap 2 reads --account-index a b and --entrypoint x y as several values, not strays."""
        text = "agave-validator --account-index program-id spl-token-mint --entrypoint a:1 b:2\n"
        report = audit_text(text, version="2.1", profile="none")
        assert report.errors == 0
        bad = audit_text(text.replace("spl-token-mint", "spl-token-mnt"), version="2.1")
        f = next(f for f in bad.findings if f.code == "invalid-value")
        assert "'spl-token-mnt'" in f.message
