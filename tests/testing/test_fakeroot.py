"""The fake host root users build for their tests: layout, editing and exact snapshots."""

from __future__ import annotations

from pathlib import Path

from agave_perf.testing.fakeroot import Disk, FakeRoot, diff_snapshots


class TestBuild:
    def test_untuned_defaults(self, tmp_path: Path) -> None:
        """The default tree is a stock kernel: small buffers, default map count, THP always."""
        root = FakeRoot.build(tmp_path / "r")
        assert root.sysctl("net.core.rmem_max") == "212992"
        assert root.sysctl("vm.max_map_count") == "65530"
        assert root.read("/sys/kernel/mm/transparent_hugepage/enabled").startswith("[always]")
        assert root.read("/sys/devices/system/cpu/online") == "0-3\n"
        assert "/mnt/ledger" in root.read("/proc/mounts")
        assert root.host("/etc/systemd/system/sol.service").is_file()

    def test_overrides(self, tmp_path: Path) -> None:
        """CPUs, disks, NICs, sysctls and optional parts can be chosen."""
        root = FakeRoot.build(
            tmp_path / "r",
            cpus=1,
            governor=None,
            thp=None,
            disks=(Disk("sdb", rotational=True),),
            nics={"ens1": 2},
            sysctl={"vm.swappiness": "1"},
            synchronized=False,
            unit=None,
        )
        assert root.read("/sys/devices/system/cpu/online") == "0\n"
        assert not root.host("/sys/devices/system/cpu/cpu0/cpufreq").exists()
        assert not root.host("/sys/kernel/mm/transparent_hugepage").exists()
        assert root.read("/sys/block/sdb/queue/rotational") == "1\n"
        assert root.host("/sys/class/net/ens1/queues/rx-1/rps_cpus").exists()
        assert root.sysctl("vm.swappiness") == "1"
        assert not root.host("/run/systemd/timesync/synchronized").exists()
        assert not root.host("/etc/systemd/system/sol.service").exists()


class TestSnapshot:
    def test_detects_content_mode_and_presence(self, tmp_path: Path) -> None:
        """Snapshots differ on a changed byte, a changed mode, and an added or removed path."""
        root = FakeRoot.build(tmp_path / "r")
        before = root.snapshot()
        assert diff_snapshots(before, root.snapshot()) == []
        root.set_sysctl("vm.swappiness", 10)
        root.write("/etc/new.conf", "x")
        (root.host("/etc/sysctl.conf")).chmod(0o600)
        root.remove("/proc/swaps")
        changes = diff_snapshots(before, root.snapshot())
        assert "added /etc/new.conf" in changes
        assert "removed /proc/swaps" in changes
        assert "/etc/sysctl.conf: mode 0644 -> 0600" in changes
        assert any(c.startswith("/proc/sys/vm/swappiness: content") for c in changes)

    def test_write_sets_exact_mode(self, tmp_path: Path) -> None:
        """write() gives the file exactly the mode asked for, even a read-only one."""
        root = FakeRoot(tmp_path / "r")
        root.write("/a/b", "1", mode=0o400)
        root.write("/a/b", "2", mode=0o640)
        assert root.snapshot()["/a/b"].mode == 0o640
        assert root.read("/a/b") == "2"
