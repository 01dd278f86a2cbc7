"""check -> apply -> check -> rollback on fake roots: exact restore, dry runs, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agave_perf.errors import TuningError
from agave_perf.testing.fakeroot import FakeRoot, diff_snapshots
from agave_perf.tune import host as H
from agave_perf.tune.journal import Journal


def make_host(root: FakeRoot, **kwargs: str) -> H.Host:
    opts = {"unit": "sol", "ledger": "/mnt/ledger", "accounts": "/mnt/accounts", **kwargs}
    return H.Host.at(root.path, H.load_profile(), **opts)


def tidy_root(tmp_path: Path, **kwargs: Any) -> FakeRoot:
    """An untuned host whose only non-fixable issues are ones apply cannot address."""
    return FakeRoot.build(
        tmp_path / "root",
        **kwargs,
        swaps=(),
        mounts=(
            "/dev/nvme0n1p2 / ext4 rw,relatime 0 0",
            "/dev/nvme1n1 /mnt/ledger ext4 rw,noatime 0 0",
            "/dev/nvme2n1 /mnt/accounts xfs rw,noatime 0 0",
        ),
    )


class TestFullCycle:
    def test_check_apply_check_rollback_is_exact(self, tmp_path: Path) -> None:
        """After apply every fixable finding is ok; rollback gives a byte-identical tree."""
        root = tidy_root(tmp_path)
        before = root.snapshot()
        first = H.check(make_host(root), H.STAGES)
        assert any(f.status == "fail" and f.fixable for f in first.findings)

        report = H.apply(make_host(root), H.STAGES, yes=True)
        assert report.applied
        assert report.remaining == []
        after = H.check(make_host(root), H.STAGES)
        not_ok = [(f.stage, f.item) for f in after.findings if f.status != "ok"]
        # Ring sizes need ethtool on a real host; everything else is now ok.
        assert not_ok == [("nic", "eth0 rx ring")]
        assert root.sysctl("vm.max_map_count") == "1000000"
        assert "madvise" in root.read("/sys/kernel/mm/transparent_hugepage/enabled")

        H.rollback(make_host(root))
        assert diff_snapshots(before, root.snapshot()) == []
        assert root.snapshot() == before

    def test_every_finding_ok_after_apply_without_nic(self, tmp_path: Path) -> None:
        """Without a physical NIC (ring sizes need ethtool), apply leaves every finding ok."""
        root = tidy_root(tmp_path, nics={})
        before = root.snapshot()
        H.apply(make_host(root), H.STAGES, yes=True)
        after = H.check(make_host(root), H.STAGES)
        assert [(f.stage, f.item) for f in after.findings if f.status != "ok"] == []
        H.rollback(make_host(root))
        assert root.snapshot() == before

    def test_apply_is_idempotent(self, tmp_path: Path) -> None:
        """A second apply finds nothing to change and journals nothing."""
        root = tidy_root(tmp_path)
        H.apply(make_host(root), H.STAGES, yes=True)
        again = H.apply(make_host(root), H.STAGES, yes=True)
        assert again.changes == []
        assert not again.applied
        assert len(Journal.for_root(root.path).pending()) == 1

    def test_dry_run_changes_nothing_and_shows_commands(self, tmp_path: Path) -> None:
        """Without --yes the plan is shown as diffs and shell commands; the tree is untouched."""
        root = FakeRoot.build(tmp_path / "root")
        before = root.snapshot()
        report = H.apply(make_host(root), H.STAGES, yes=False)
        assert not report.applied
        assert report.changes
        assert root.snapshot() == before
        assert not Journal.for_root(root.path).path.exists()
        data = report.to_json()
        conf = next(c for c in data["changes"] if c["path"].endswith("21-agave-validator.conf"))
        assert "+vm.max_map_count = 1000000" in conf["diff"]
        knob = next(c for c in data["changes"] if c["path"] == "/proc/sys/vm/max_map_count")
        assert knob["shell"] == f"echo 1000000 > {root.path}/proc/sys/vm/max_map_count"

    def test_existing_sysctl_file_is_merged_and_restored(self, tmp_path: Path) -> None:
        """An operator's 21-agave-validator.conf keeps its comments and mode, and comes back."""
        root = FakeRoot.build(tmp_path / "root")
        text = "# mine\nnet.core.rmem_max = 1000\nkernel.pid_max = 4194304\n"
        root.write("/etc/sysctl.d/21-agave-validator.conf", text, mode=0o600)
        before = root.snapshot()
        H.apply(make_host(root), H.select(["sysctl"]), yes=True)
        merged = root.read("/etc/sysctl.d/21-agave-validator.conf")
        assert merged.startswith("# mine\nnet.core.rmem_max = 134217728\nkernel.pid_max")
        assert root.snapshot()["/etc/sysctl.d/21-agave-validator.conf"].mode == 0o600
        H.rollback(make_host(root))
        assert root.snapshot() == before

    @pytest.mark.parametrize("debian_link", [False, True])
    def test_later_file_with_an_old_value_is_edited(
        self, tmp_path: Path, debian_link: bool
    ) -> None:
        """A file applied after ours (99-*.conf, or sysctl.conf through Debian's 99-sysctl.conf
        link) with an old, smaller value gets the new one, so the next boot keeps it."""
        root = FakeRoot.build(tmp_path / "root")
        text = "# from old docs\nvm.max_map_count = 700000\nfs.inotify.max_user_watches = 1\n"
        if debian_link:
            root.write("/etc/sysctl.conf", text)
            root.remove("/etc/sysctl.d/99-sysctl.conf")
            root.host("/etc/sysctl.d/99-sysctl.conf").symlink_to("../sysctl.conf")
            edited = "/etc/sysctl.conf"
        else:
            edited = "/etc/sysctl.d/99-custom.conf"
            root.write(edited, text)
        before = root.snapshot()
        report = H.apply(make_host(root), H.select(["sysctl"]), yes=True)
        assert report.remaining == []
        assert root.read(edited) == text.replace("700000", "1000000")
        after = H.check(make_host(root), H.select(["sysctl"]))
        assert [f.item for f in after.findings if f.status != "ok"] == []
        assert H.plan(make_host(root), H.select(["sysctl"])) == []
        H.rollback(make_host(root))
        assert diff_snapshots(before, root.snapshot()) == []

    def test_later_unit_dropin_with_a_low_limit_is_edited(self, tmp_path: Path) -> None:
        """An override.conf (from `systemctl edit`) sorts after our drop-in; its low limit is
        raised in place, so the unit really gets the limit."""
        root = FakeRoot.build(tmp_path / "root")
        override = "/etc/systemd/system/sol.service.d/override.conf"
        root.write(override, "[Service]\n# mine\nLimitNOFILE=65536\nNice=-5\n")
        before = root.snapshot()
        report = H.apply(make_host(root), H.select(["limits"]), yes=True)
        assert report.remaining == []
        assert root.read(override) == "[Service]\n# mine\nLimitNOFILE=1000000\nNice=-5\n"
        assert H.plan(make_host(root), H.select(["limits"])) == []
        H.rollback(make_host(root))
        assert diff_snapshots(before, root.snapshot()) == []

    @pytest.mark.parametrize(
        ("path", "stage"),
        [
            ("/etc/sysctl.d/21-agave-validator.conf", "sysctl"),
            ("/etc/security/limits.d/90-solana-nofiles.conf", "limits"),
        ],
    )
    def test_bytes_that_are_not_utf8_survive_the_merge(
        self, tmp_path: Path, path: str, stage: str
    ) -> None:
        """A Latin-1 comment in a merged file is kept byte for byte, not turned into U+FFFD."""
        root = FakeRoot.build(tmp_path / "root")
        root.write(path, b"# r\xe9glages de l'\xe9quipe\n")
        H.apply(make_host(root), H.select([stage]), yes=True)
        assert root.host(path).read_bytes().startswith(b"# r\xe9glages de l'\xe9quipe\n")

    def test_status_lists_changes_until_rollback(self, tmp_path: Path) -> None:
        """status shows each applied path with its stage; after rollback it is empty."""
        root = FakeRoot.build(tmp_path / "root")
        H.apply(make_host(root), H.select(["thp"]), yes=True)
        status = H.status(make_host(root)).to_json()
        changes = status["applied"][0]["changes"]
        assert {c["path"] for c in changes} >= {
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "/etc/tmpfiles.d/agave-perf-thp.conf",
        }
        assert {c["state"] for c in changes} == {"applied"}
        H.rollback(make_host(root))
        assert H.status(make_host(root)).to_json()["applied"] == []

    def test_older_release_uses_its_file_name(self, tmp_path: Path) -> None:
        """For solana-validator 1.18 the sysctl file is the one its docs named."""
        root = FakeRoot.build(tmp_path / "root")
        host = H.Host.at(root.path, H.load_profile(agave_version="1.18.26"))
        paths = {c.path for c in H.plan(host, H.select(["sysctl", "limits"]))}
        assert "/etc/sysctl.d/21-solana-validator.conf" in paths
        assert not any("agave-validator" in p for p in paths)


class TestFailures:
    def test_unwritable_path_undoes_everything(self, tmp_path: Path) -> None:
        """A write that fails midway is an error naming the path; earlier writes are undone."""
        root = FakeRoot.build(tmp_path / "root")
        root.write("/etc/systemd/system/sol.service.d", "a file, not a directory\n")
        before = root.snapshot()
        with pytest.raises(TuningError) as info:
            H.apply(make_host(root), H.STAGES, yes=True)
        message = str(info.value)
        assert "sol.service.d" in message
        assert "rolled back" in message
        assert root.snapshot() == before
        assert Journal.for_root(root.path).pending() == []

    def test_missing_sys_files_are_findings_not_crashes(self, tmp_path: Path) -> None:
        """A root without /sys still checks: each stage says what it could not see."""
        root = FakeRoot.build(tmp_path / "root", governor=None, thp=None, disks=(), nics={})
        host = make_host(root)
        by_item = {(f.stage, f.item): f for f in H.check(host, H.STAGES).findings}
        assert by_item[("cpu", "scaling_governor")].observed == "no cpufreq interface"
        assert by_item[("thp", "enabled")].observed == "absent"
        assert by_item[("block", "disks")].status == "warn"
        assert all(c.stage not in ("cpu", "thp", "block") for c in H.plan(host, H.STAGES))

    def test_corrupt_journal_blocks_apply_before_any_write(self, tmp_path: Path) -> None:
        """apply refuses to run on top of a damaged journal and changes nothing."""
        root = FakeRoot.build(tmp_path / "root")
        journal = Journal.for_root(root.path)
        journal.path.parent.mkdir(parents=True)
        journal.path.write_text("garbage\n{}\n")
        before = root.snapshot()
        with pytest.raises(TuningError, match="corrupt"):
            H.apply(make_host(root), H.STAGES, yes=True)
        assert root.snapshot() == before

    def test_apply_after_an_interrupted_apply_asks_for_rollback(self, tmp_path: Path) -> None:
        """An unfinished run in the journal blocks a new apply until it is rolled back."""
        root = FakeRoot.build(tmp_path / "root")
        journal = Journal.for_root(root.path)

        def interrupted() -> None:
            with journal.transaction() as txn:
                txn.write_file("/etc/x.conf", b"x", stage="t", label="x")
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted()
        assert not root.host("/etc/x.conf").exists()
        assert journal.pending() == []  # an interrupted run (Ctrl-C) undoes itself
        with journal.path.open("a") as fh:  # a run killed before its commit record
            fh.write('{"type":"begin","txn":"dead","time":1,"meta":{}}\n')
            fh.write(
                '{"type":"intent","txn":"dead","seq":1,"kind":"file","path":"/etc/y.conf",'
                '"old":{"state":"absent"},"new":"eA==","new_mode":420,"time":1}\n'
            )
        before = root.snapshot()
        with pytest.raises(TuningError, match="interrupted"):
            H.apply(make_host(root), H.STAGES, yes=True)
        assert root.snapshot() == before
        H.rollback(make_host(root))
        assert H.apply(make_host(root), H.STAGES, yes=True).applied

    def test_repeated_stage_runs_once(self) -> None:
        """--stage thp --stage thp checks and plans the stage once, in the given order."""
        assert [s.name for s in H.select(["thp", "sysctl", "thp"])] == ["thp", "sysctl"]

    def test_unknown_stage_suggests(self) -> None:
        """A misspelled stage name is a usage error with a suggestion."""
        with pytest.raises(Exception, match="did you mean 'sysctl'"):
            H.select(["sysctll"])
