"""rpc-trading advice: reasons and effects, with host facts read from a fake root."""

from __future__ import annotations

from pathlib import Path

from agave_perf.tune.flags import AuditReport, HostFacts, audit_text

from .conftest import fixture_text, make_root

GOOD = (
    "agave-validator --identity id.json --ledger /mnt/ledger --accounts /mnt/accounts "
    "--no-voting --full-rpc-api --limit-ledger-size --health-check-slot-distance 5 "
    "--rpc-threads 8"
)


def advice(report: AuditReport) -> dict[str, str]:
    """code -> label (status, or "advice") of every finding."""
    return {f.code: f.label for f in report.findings}


class TestHostFacts:
    def test_reads_fake_root(self, good_root: Path) -> None:
        """CPU list, sysctls and mounts come from the root directory given."""
        facts = HostFacts.read(good_root)
        assert facts.cpus == 32
        assert facts.sysctl["net.core.rmem_max"] == 134217728
        assert facts.device_of("/mnt/ledger/rocksdb") == "/dev/nvme0n1"
        assert facts.device_of("/mnt/accounts") == "/dev/nvme1n1"
        assert facts.device_of("/home/sol") == "/dev/sda1"

    def test_symlinked_path_is_on_the_device_of_its_target(self, good_root: Path) -> None:
        """A ledger reached through an absolute symlink is on the device of the link's target."""
        (good_root / "home/sol").mkdir(parents=True, exist_ok=True)
        (good_root / "mnt/ledger").mkdir(parents=True, exist_ok=True)
        (good_root / "home/sol/ledger").symlink_to("/mnt/ledger")
        facts = HostFacts.read(good_root)
        assert facts.device_of("/home/sol/ledger/rocksdb") == "/dev/nvme0n1"

    def test_missing_files_are_unknown_not_errors(self, tmp_path: Path) -> None:
        """An empty root gives unknown values instead of failing."""
        facts = HostFacts.read(tmp_path)
        assert facts.cpus is None
        assert facts.sysctl["net.core.wmem_max"] is None
        assert facts.device_of("/mnt/ledger") is None


class TestRpcTrading:
    def test_well_tuned_node_gets_no_warnings(self, good_root: Path) -> None:
        """A node with the advised flags on a good host gets no warning or advice."""
        report = audit_text(GOOD + " --no-os-network-limits-test\n", version="2.1", root=good_root)
        assert [f.code for f in report.findings if f.label in ("warn", "advice")] == []

    def test_bare_script_gets_the_core_advice(self, good_root: Path) -> None:
        """Missing --no-voting/--full-rpc-api/--limit-ledger-size/--accounts are all raised."""
        report = audit_text("agave-validator --ledger /mnt/ledger\n", version="2.1", root=good_root)
        got = advice(report)
        assert got["rpc-full-api"] == "warn"
        assert got["rpc-no-voting"] == "advice"
        assert got["ledger-unbounded"] == "advice"
        assert got["accounts-on-ledger"] == "advice"
        assert got["health-distance"] == "advice"
        assert got["network-limits-ok"] == "note"  # the test may be skipped on this host
        assert report.errors == 0  # advice never fails the audit

    def test_voting_rpc_node(self, good_root: Path) -> None:
        """--vote-account without --no-voting is a warning with its CPU effect."""
        text = GOOD.replace("--no-voting", "--vote-account vote.json") + "\n"
        report = audit_text(text, version="2.1", root=good_root)
        f = next(f for f in report.findings if f.code == "rpc-votes")
        assert f.severity == "warn"
        assert "cpu" in f.effect

    def test_indexes_the_trading_mix_does_not_use(self, good_root: Path) -> None:
        """The default trading mix uses no secondary index: each one is advice to remove."""
        text = GOOD + " --account-index program-id --account-index spl-token-owner\n"
        report = audit_text(text, version="2.1", root=good_root)
        idx = [f for f in report.findings if f.code == "account-index-unneeded"]
        assert [f.flag for f in idx] == [
            "--account-index program-id",
            "--account-index spl-token-owner",
        ]
        assert "getProgramAccounts" in idx[0].message
        assert "16 GB" in idx[0].effect["memory"]

    def test_indexes_follow_the_declared_methods(self, good_root: Path) -> None:
        """--rpc-method decides: a used index is kept (restrict it), a missing one is advised."""
        text = GOOD + " --account-index program-id --account-index spl-token-owner\n"
        methods = ("getProgramAccounts", "getTokenLargestAccounts")
        report = audit_text(text, version="2.1", root=good_root, methods=methods)
        got = {(f.code, f.flag) for f in report.findings if "account-index" in f.code}
        assert got == {
            ("account-index-cost", "--account-index program-id"),
            ("account-index-unneeded", "--account-index spl-token-owner"),
            ("account-index-missing", "--account-index spl-token-mint"),
        }
        restricted = text.strip() + " --account-index-include-key Prog1111\n"
        again = audit_text(restricted, version="2.1", root=good_root, methods=methods)
        assert "account-index-cost" not in advice(again)

    def test_rpc_threads_over_cores(self, tmp_path: Path) -> None:
        """More RPC threads than CPUs is a warning; the CPU count comes from the root."""
        root = make_root(tmp_path, cpus="0-7")
        report = audit_text(GOOD.replace("8", "64") + "\n", version="2.1", root=root)
        f = next(f for f in report.findings if f.code == "rpc-threads-oversubscribed")
        assert "8 CPUs" in f.message

    def test_network_limits_test_skipped_on_a_bad_host(self, tmp_path: Path) -> None:
        """--no-os-network-limits-test with low sysctls is a warning listing the low values."""
        root = make_root(tmp_path, rmem=212992)
        report = audit_text(GOOD + " --no-os-network-limits-test\n", version="2.1", root=root)
        f = next(f for f in report.findings if f.code == "network-limits-low")
        assert "net.core.rmem_max=212992" in f.message
        assert f.severity == "warn"

    def test_network_limits_not_offered_on_a_bad_host(self, tmp_path: Path) -> None:
        """On a host that would fail the start test, skipping it is not suggested."""
        root = make_root(tmp_path, map_count=65530)
        report = audit_text(GOOD + "\n", version="2.1", root=root)
        assert "network-limits-ok" not in advice(report)

    def test_accounts_and_ledger_on_one_device(self, tmp_path: Path) -> None:
        """--accounts and --ledger on the same mount are flagged with the device name."""
        root = make_root(tmp_path, mounts="/dev/md0 /mnt xfs rw 0 0\n")
        (root / "mnt/ledger").mkdir(parents=True)
        (root / "mnt/accounts").mkdir(parents=True)
        report = audit_text(GOOD + "\n", version="2.1", root=root)
        f = next(f for f in report.findings if f.code == "accounts-same-device")
        assert "/dev/md0" in f.message

    def test_paths_missing_on_this_host_are_not_placed(self, tmp_path: Path) -> None:
        """Paths that do not exist here are said not found, never claimed to share a device."""
        root = make_root(tmp_path, mounts="/dev/md0 /mnt xfs rw 0 0\n")
        (root / "mnt/ledger").mkdir(parents=True)
        report = audit_text(GOOD + "\n", version="2.1", root=root)
        codes = advice(report)
        assert "accounts-same-device" not in codes
        f = next(f for f in report.findings if f.code == "paths-not-found")
        assert "/mnt/accounts not found on this host" in f.message
        assert "/mnt/ledger" not in f.message.split(" not found")[0]

    def test_health_distance_default_per_release(self, good_root: Path) -> None:
        """The default distance quoted is 150 up to 1.18 and 128 from 2.0 (as in the sources)."""
        old = audit_text("solana-validator --ledger /l\n", version="1.18", root=good_root)
        new = audit_text("agave-validator --ledger /l\n", version="2.0", root=good_root)
        msg = {
            r.invocations[0].release.line: next(
                f.message for f in r.findings if f.code == "health-distance"
            )
            for r in (old, new)
        }
        assert "150 (the default)" in msg["1.18"]
        assert "128 (the default)" in msg["2.0"]

    def test_profile_none_gives_no_advice(self, good_root: Path) -> None:
        """--profile none validates only."""
        report = audit_text("agave-validator --ledger /l\n", version="2.1", profile="none")
        assert report.findings == []

    def test_fixture_with_indexes(self, good_root: Path) -> None:
        """The plain command-line fixture's indexes are restricted but unneeded for trading."""
        report = audit_text(fixture_text("13_plain_command_line.txt"), root=good_root)
        assert "account-index-cost" not in advice(report)
        assert advice(report)["account-index-unneeded"] == "advice"

    def test_invalid_index_gets_no_memory_advice(self, good_root: Path) -> None:
        """A misspelled index is a validation error, not also a memory-cost note."""
        report = audit_text(GOOD + " --account-index program-ids\n", version="2.1", root=good_root)
        assert "account-index-unneeded" not in advice(report)
        assert "invalid-value" in advice(report)
