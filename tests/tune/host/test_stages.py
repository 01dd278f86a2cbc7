"""Each stage's judgement on fake roots, and the small parsers behind them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agave_perf.testing.fakeroot import Disk, FakeRoot
from agave_perf.tune import host as H
from agave_perf.tune.host import HostFinding
from agave_perf.tune.host._base import choices, selected
from agave_perf.tune.host._sysfs import cpu_mask, mask_is_zero
from agave_perf.tune.host.block import disk_of, mount_of, parse_mounts
from agave_perf.tune.host.limits import parse_limits, parse_systemd_limit, set_limits
from agave_perf.tune.host.network import parse_ethtool_rings
from agave_perf.tune.host.timesync import parse_chrony_tracking


def findings(root: FakeRoot, stage: str, **kwargs: str) -> dict[str, HostFinding]:
    host = H.Host.at(root.path, H.load_profile(), **kwargs)
    return {f.item: f for f in H.check(host, H.select([stage])).findings}


def changed_paths(root: FakeRoot, stage: str, **kwargs: str) -> set[str]:
    host = H.Host.at(root.path, H.load_profile(), **kwargs)
    return {c.path for c in H.plan(host, H.select([stage]))}


class TestSysctlStage:
    def test_short_values_fail_and_live_ok_unpersisted_warns(self, tmp_path: Path) -> None:
        """Below the profile fails; right live but lost at reboot warns; kernel defaults pass."""
        root = FakeRoot.build(tmp_path / "r", sysctl={"vm.max_map_count": "1000000"})
        got = findings(root, "sysctl")
        assert got["net.core.rmem_max"].status == "fail"
        assert got["vm.max_map_count"].status == "warn"
        assert "not persisted" in got["vm.max_map_count"].observed
        assert got["fs.nr_open"].status == "ok"  # the kernel default 1048576 suffices
        assert got["fs.file-max"].status == "ok"

    def test_numa_balancing_only_matters_with_several_nodes(self, tmp_path: Path) -> None:
        """On one NUMA node numa_balancing is ok whatever it is; on two it must be 0."""
        single = FakeRoot.build(tmp_path / "a", numa_nodes=1)
        assert findings(single, "sysctl")["kernel.numa_balancing"].status == "ok"
        assert "/proc/sys/kernel/numa_balancing" not in changed_paths(single, "sysctl")
        dual = FakeRoot.build(tmp_path / "b", numa_nodes=2)
        assert findings(dual, "sysctl")["kernel.numa_balancing"].status == "warn"
        assert "/proc/sys/kernel/numa_balancing" in changed_paths(dual, "sysctl")

    def test_missing_optional_key_is_ok(self, tmp_path: Path) -> None:
        """numa_balancing absent (no NUMA balancing in the kernel) is not a problem."""
        root = FakeRoot.build(tmp_path / "r")
        root.remove("/proc/sys/kernel/numa_balancing")
        got = findings(root, "sysctl")
        assert got["kernel.numa_balancing"].status == "ok"
        assert got["kernel.numa_balancing"].observed == "absent"
        assert "/proc/sys/kernel/numa_balancing" not in changed_paths(root, "sysctl")


class TestLimitsStage:
    def test_unit_dropin_planned_and_judged(self, tmp_path: Path) -> None:
        """Without Limit* in the unit, a drop-in with both limits is planned for --unit."""
        root = FakeRoot.build(tmp_path / "r")
        got = findings(root, "limits", unit="sol")
        assert got["sol.service LimitNOFILE"].status == "fail"
        paths = changed_paths(root, "limits", unit="sol")
        assert "/etc/systemd/system/sol.service.d/agave-perf-limits.conf" in paths

    def test_existing_dropin_counts(self, tmp_path: Path) -> None:
        """Limits set by an operator's own drop-in (with K/M suffixes) are recognised."""
        root = FakeRoot.build(tmp_path / "r")
        root.write(
            "/etc/systemd/system/sol.service.d/override.conf",
            "[Service]\nLimitNOFILE=2000000\nLimitMEMLOCK=infinity\n",
        )
        got = findings(root, "limits", unit="sol")
        assert got["sol.service LimitNOFILE"].status == "ok"
        assert got["sol.service LimitMEMLOCK"].status == "ok"

    def test_without_unit_system_defaults_are_checked(self, tmp_path: Path) -> None:
        """With no --unit, DefaultLimit* of system.conf is what is judged (never fixed)."""
        root = FakeRoot.build(tmp_path / "r")
        got = findings(root, "limits")
        assert got["DefaultLimitNOFILE"].status == "warn"
        assert not got["DefaultLimitNOFILE"].fixable

    def test_limits_file_is_edited_not_clobbered(self) -> None:
        """An existing limits.d file keeps its other lines; our items are rewritten or added."""
        text = "# mine\n@admin - nofile 50\n* - nofile 4096\n"
        out = set_limits(text, {"nofile": 1000000, "memlock": 2000000})
        assert out == "# mine\n@admin - nofile 50\n* - nofile 1000000\n* - memlock 2000000\n"

    @given(
        st.lists(
            st.sampled_from(["* - nofile 5", "* soft memlock 7", "@g - nofile 1", "# c"]),
            max_size=6,
        ),
        st.dictionaries(st.sampled_from(["nofile", "memlock"]), st.integers(1, 10**9)),
    )
    def test_set_limits_gives_wildcard_the_wanted_values(
        self, lines: list[str], wanted: dict[str, int]
    ) -> None:
        """After set_limits every '*' line of a wanted item carries its value; others stay."""
        text = "".join(line + "\n" for line in lines)
        out = set_limits(text, wanted)
        got = {(x.item, x.value) for x in parse_limits(out) if x.item in wanted}
        assert got == set(wanted.items())
        assert out.count("@g - nofile 1") == text.count("@g - nofile 1")
        assert set_limits(out, wanted) == out

    @pytest.mark.parametrize(
        ("value", "bytes_", "expected"),
        [
            ("1000000", False, 1000000),
            ("64K:1M", True, 2**20),
            ("2G", True, 2**31),
            ("infinity", True, 2**63),
            ("lots", False, None),
        ],
    )
    def test_systemd_limit_values(self, value: str, bytes_: bool, expected: int | None) -> None:
        """systemd Limit* values give their hard limit, with suffixes and infinity."""
        assert parse_systemd_limit(value, bytes_=bytes_) == expected

    def test_pam_limits_only_wildcard_domain(self) -> None:
        """Only '*' lines for nofile/memlock count; comments are ignored."""
        lines = parse_limits("* soft nofile 10 # c\nsol - nofile 5\n* - memlock unlimited\n")
        assert [(x.kind, x.item) for x in lines] == [("soft", "nofile"), ("-", "memlock")]


class TestCpuStage:
    def test_governor_and_boost(self, tmp_path: Path) -> None:
        """powersave is flagged and planned per CPU; turbo off is flagged and switched on."""
        root = FakeRoot.build(tmp_path / "r", cpus=3)
        root.write("/sys/devices/system/cpu/intel_pstate/no_turbo", "1\n")
        got = findings(root, "cpu")
        assert got["scaling_governor (3 CPUs)"].status == "warn"
        assert got["intel_pstate/no_turbo"].status == "warn"
        paths = changed_paths(root, "cpu")
        assert "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor" in paths
        assert "/sys/devices/system/cpu/intel_pstate/no_turbo" in paths
        assert "/etc/tmpfiles.d/agave-perf-cpu.conf" in paths

    def test_governor_not_offered_is_not_fixable(self, tmp_path: Path) -> None:
        """When the driver does not offer 'performance', nothing is planned."""
        root = FakeRoot.build(tmp_path / "r", cpus=1)
        root.write(
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors", "schedutil\n"
        )
        assert not findings(root, "cpu")["scaling_governor (1 CPUs)"].fixable
        assert changed_paths(root, "cpu") == set()


class TestThpStage:
    @pytest.mark.parametrize(
        ("enabled", "status"), [("[never]", "ok"), ("[madvise]", "ok"), ("[always]", "warn")]
    )
    def test_enabled_modes(self, tmp_path: Path, enabled: str, status: str) -> None:
        """madvise and never are accepted; always is flagged."""
        root = FakeRoot.build(tmp_path / "r", thp=(f"{enabled} x", "[madvise] never"))
        assert findings(root, "thp")["enabled"].status == status

    def test_selection_parsing(self) -> None:
        """The bracketed option is the selected one; a bare value (fake roots) is taken as is."""
        assert selected("always [madvise] never\n") == "madvise"
        assert selected("never\n") == "never"
        assert choices("always [madvise] never") == ["always", "madvise", "never"]


class TestSwapStage:
    def test_active_swap_warns_without_a_fix(self, tmp_path: Path) -> None:
        """Active swap is reported with its size, but never turned off by agave-perf."""
        root = FakeRoot.build(tmp_path / "r", swaps=(("/dev/nvme0n1p3", 16 * 2**20),))
        got = findings(root, "swap")
        assert got["swap areas"].observed.startswith("1 active, 16.0 GiB")
        assert not got["swap areas"].fixable
        assert "/proc/swaps" not in changed_paths(root, "swap")
        assert "/proc/sys/vm/swappiness" in changed_paths(root, "swap")


class TestBlockStage:
    def test_ledger_and_accounts_on_one_disk(self, tmp_path: Path) -> None:
        """Ledger and accounts on the same disk are flagged; relatime is flagged."""
        root = FakeRoot.build(tmp_path / "r")
        got = findings(root, "block", ledger="/mnt/ledger", accounts="/mnt/ledger/accounts")
        assert got["ledger vs accounts disk"].status == "warn"
        assert "nvme1n1" in got["ledger vs accounts disk"].observed
        assert got["ledger mount /mnt/ledger"].status == "warn"

    def test_symlinked_ledger_is_judged_on_its_real_mount(self, tmp_path: Path) -> None:
        """--ledger through a symlink (absolute, as operators make them) finds the real mount."""
        root = FakeRoot.build(tmp_path / "r")
        root.mkdir("/home/sol")
        root.mkdir("/mnt/ledger")
        root.host("/home/sol/ledger").symlink_to("/mnt/ledger")
        got = findings(root, "block", ledger="/home/sol/ledger", accounts="/mnt/accounts")
        assert "ledger mount /mnt/ledger" in got
        assert got["ledger vs accounts disk"].status == "ok"

    def test_only_relevant_disks_are_tuned(self, tmp_path: Path) -> None:
        """With --ledger only the ledger's disk is touched; rotational disks want mq-deadline."""
        root = FakeRoot.build(
            tmp_path / "r",
            disks=(Disk("sda", scheduler="mq-deadline [none]", rotational=True), Disk("nvme1n1")),
            mounts=("/dev/sda1 /mnt/ledger ext4 rw,noatime 0 0",),
        )
        paths = changed_paths(root, "block", ledger="/mnt/ledger/rocksdb")
        assert paths == {"/sys/block/sda/queue/scheduler", "/etc/tmpfiles.d/agave-perf-block.conf"}

    def test_device_mapper_resolves_to_its_disks(self, tmp_path: Path) -> None:
        """An LVM volume resolves through /sys/block/dm-N/slaves to the physical disks."""
        root = FakeRoot.build(tmp_path / "r")
        root.write("/sys/block/dm-0/dm/name", "vg-ledger\n")
        root.mkdir("/sys/block/dm-0/slaves/nvme1n1p1")
        host = H.Host.at(root.path, H.load_profile())
        assert disk_of(host, "/dev/mapper/vg-ledger") == ["nvme1n1"]
        assert disk_of(host, "/dev/nvme2n1p4") == ["nvme2n1"]
        assert disk_of(host, "/dev/root") == []

    def test_mounts_longest_prefix_and_escapes(self) -> None:
        """The deepest mount point wins; octal escapes in /proc/mounts are decoded."""
        mounts = parse_mounts("/dev/a / ext4 rw 0 0\n/dev/b /mnt/my\\040disk xfs rw,noatime 0 0\n")
        found = mount_of("/mnt/my disk/ledger", mounts)
        assert found is not None
        assert found.device == "/dev/b"
        assert mount_of("/mnt/my", mounts) == mounts[0]


class TestNicStage:
    def test_single_queue_gets_rps(self, tmp_path: Path) -> None:
        """One RX queue on a 4-CPU host: RPS over all CPUs is planned and persisted."""
        root = FakeRoot.build(tmp_path / "r", cpus=4, nics={"eth0": 1, "eth1": 8})
        got = findings(root, "nic")
        assert got["eth0 RPS"].expected == "rps_cpus f"
        assert got["eth1 RX queues"].status == "ok"
        assert changed_paths(root, "nic") == {
            "/sys/class/net/eth0/queues/rx-0/rps_cpus",
            "/etc/tmpfiles.d/agave-perf-nic.conf",
        }

    def test_rings_are_not_guessed_under_root(self, tmp_path: Path) -> None:
        """Under --root, ring sizes are reported as not checked instead of invented."""
        root = FakeRoot.build(tmp_path / "r")
        assert "not checked" in findings(root, "nic")["eth0 rx ring"].why

    def test_ethtool_ring_output(self) -> None:
        """The maximum and current RX sizes come from their own sections."""
        text = (
            "Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\nTX:\t\t4096\n"
            "Current hardware settings:\nRX:\t\t512\nTX:\t\t512\n"
        )
        assert parse_ethtool_rings(text) == (4096, 512)

    @given(st.integers(1, 300))
    def test_cpu_mask_selects_exactly_n_cpus(self, n: int) -> None:
        """The mask has n bits set, in 32-bit comma groups the kernel accepts."""
        mask = cpu_mask(n)
        assert bin(int(mask.replace(",", ""), 16)).count("1") == n
        assert all(len(g) == 8 for g in mask.split(",")[1:])
        assert not mask_is_zero(mask)


class TestTimeAndKernel:
    def test_timesync_flag_and_unknown(self, tmp_path: Path) -> None:
        """timesyncd's flag file means synchronised; without any source the state is unknown."""
        synced = FakeRoot.build(tmp_path / "a")
        assert findings(synced, "time")["clock"].status == "ok"
        unknown = FakeRoot.build(tmp_path / "b", synchronized=False)
        assert findings(unknown, "time")["clock"].observed.startswith("unknown")

    def test_chrony_tracking(self) -> None:
        """chronyc tracking's leap status decides."""
        assert parse_chrony_tracking("Reference ID : x\nLeap status     : Normal\n") is True
        assert parse_chrony_tracking("Leap status : Not synchronised\n") is False
        assert parse_chrony_tracking("nothing here") is None

    def test_old_kernel_and_disabled_io_uring(self, tmp_path: Path) -> None:
        """A 5.4 kernel and io_uring_disabled=2 are both flagged."""
        root = FakeRoot.build(
            tmp_path / "r",
            sysctl={"kernel.osrelease": "5.4.0-150-generic", "kernel.io_uring_disabled": "2"},
        )
        got = findings(root, "kernel")
        assert got["release"].status == "warn"
        assert got["kernel.io_uring_disabled"].observed == "2 (disabled)"


# Items that are two halves of one setting and share its rationale on purpose.
_FAMILIES = {
    "enabled": "thp",
    "defrag": "thp",
    "kernel.io_uring_disabled": "io_uring",
    "release": "io_uring",
}


def knob_of(item: str) -> str:
    """The setting an item is about, without the disk, unit or mount it is checked on."""
    word = next(w for w in reversed(item.split()) if not w.startswith("/")).lower()
    for prefix in ("defaultlimit", "limit"):
        word = word.removeprefix(prefix)
    return _FAMILIES.get(word, word)


class TestWhy:
    @pytest.mark.parametrize("unit", ["sol", None])
    def test_every_why_is_specific_to_its_setting(self, tmp_path: Path, unit: str | None) -> None:
        """No two findings about different settings share a why (LimitMEMLOCK once showed the
        NOFILE text), and each limit's why names that limit."""
        root = FakeRoot.build(tmp_path / "r")
        kwargs = {"ledger": "/mnt/ledger", "accounts": "/mnt/accounts"}
        host = H.Host.at(root.path, H.load_profile(), unit=unit, **kwargs)
        knobs: dict[str, set[str]] = {}
        report = H.check(host, H.STAGES)
        for f in report.findings:
            knobs.setdefault(f.why, set()).add(knob_of(f.item))
        shared = {why[:60]: sorted(k) for why, k in knobs.items() if len(k) > 1}
        assert shared == {}
        limits = [f for f in report.findings if f.stage == "limits"]
        assert {knob_of(f.item) for f in limits} == {"nofile", "memlock"}
        for f in limits:
            named = "MEMLOCK" if knob_of(f.item) == "memlock" else "NOFILE"
            assert f"RLIMIT_{named}" in f.why, f.item
