"""`agave-perf host` as users run it: real subprocesses, SIGKILL mid-apply, no privileges."""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import agave_perf
from agave_perf.testing.fakeroot import FakeRoot, diff_snapshots
from agave_perf.tune.journal import Journal, legacy_path

NOBODY = 65534


def unreadable_by_others(path: Path) -> str | None:
    """Name the first directory above ``path`` another user cannot pass, None when all can."""
    for parent in [path, *path.parents]:
        if parent.is_dir() and not parent.stat().st_mode & stat.S_IXOTH:
            return f"{parent} (mode {stat.S_IMODE(parent.stat().st_mode):04o})"
    return None


@functools.cache
def checkout_hidden_from_nobody(setpriv: str) -> str | None:
    """Why the unprivileged user cannot import agave_perf here, or None when it can."""
    probe = subprocess.run(
        [*_drop(setpriv), sys.executable, "-c", "import agave_perf"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode == 0:
        return None
    # Name the closed directory when there is one (a clone under a 0700 temp directory).
    for needed in (Path(agave_perf.__file__).resolve(), Path(sys.executable)):
        blocked = unreadable_by_others(needed.parent)
        if blocked is not None:
            return (
                f"the unprivileged user cannot import agave_perf: {blocked} is closed to "
                "other users (a clone under a 0700 directory); clone into a readable place"
            )
    last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
    return f"the unprivileged user cannot import agave_perf from this checkout ({last})"


def _drop(setpriv: str) -> list[str]:
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def run(
    *args: str, env: dict[str, str] | None = None, user: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run agave-perf; with ``user`` as an unprivileged user when the tests run as root."""
    prefix: list[str] = []
    if user and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs Debian package util-linux (setpriv) to drop root")
        hidden = checkout_hidden_from_nobody(setpriv)
        if hidden is not None:
            pytest.skip(hidden)
        prefix = _drop(setpriv)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "agave_perf", "host", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def fake_args(root: FakeRoot) -> list[str]:
    return ["--root", str(root.path), "--unit", "sol", "--ledger", "/mnt/ledger"]


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory an unprivileged user can use, holding AGAVE_PERF_HOME; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="agave-perf-host-"))
    os.chmod(base, 0o755)
    home = base / "home"
    home.mkdir()
    monkeypatch.setenv("AGAVE_PERF_HOME", str(home))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def give_to_nobody(path: Path) -> None:
    """Hand a tree to the unprivileged user (only needed when the tests run as root)."""
    if os.geteuid() != 0:
        return
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, NOBODY, NOBODY)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), NOBODY, NOBODY)


class TestUnprivilegedUser:
    def test_closed_parent_directory_is_named(self, tmp_path: Path) -> None:
        """A checkout under a 0700 directory is detected, naming that directory, so tests
        that drop to nobody skip with the cause instead of 'No module named agave_perf'."""
        closed = tmp_path / "closed"
        inner = closed / "clone" / "src"
        inner.mkdir(parents=True)
        os.chmod(tmp_path, 0o755)
        os.chmod(closed, 0o700)
        assert unreadable_by_others(inner) == f"{closed} (mode 0700)"
        os.chmod(closed, 0o755)
        assert unreadable_by_others(inner) is None or str(closed) not in str(
            unreadable_by_others(inner)
        )


class TestRealHost:
    def test_check_runs_read_only_and_reports_every_stage(self) -> None:
        """On this machine check prints one JSON document covering every stage, writing nothing."""
        r = run("check", "--json")
        assert r.returncode in (0, 1), r.stderr
        assert "Traceback" not in r.stderr
        report = json.loads(r.stdout)
        stages = {f["stage"] for f in report["findings"]}
        assert stages == {
            "sysctl",
            "limits",
            "cpu",
            "thp",
            "swap",
            "block",
            "nic",
            "time",
            "kernel",
        }
        assert all(f["status"] in ("ok", "warn", "fail") for f in report["findings"])
        assert not Journal.for_root(Path("/")).path.exists()

    def test_ring_sizes_come_from_ethtool_or_say_it_is_missing(self) -> None:
        """With ethtool the rings are read from the NIC; without it the report says so."""
        r = run("check", "--stage", "nic", "--json")
        rings = [f for f in json.loads(r.stdout)["findings"] if f["item"].endswith("rx ring")]
        if not rings:
            pytest.skip("this machine has no physical NIC")
        for finding in rings:
            if shutil.which("ethtool"):
                assert finding["observed"] != "unknown"
            else:
                assert "apt-get install ethtool" in finding["why"]

    def test_check_works_without_root_and_apply_names_stages(self, shared: Path) -> None:
        """Unprivileged: check works; apply --yes refuses, naming the stages that need root."""
        os.chmod(shared / "home", 0o777)
        r = run("check", "--stage", "sysctl", "--stage", "kernel", user=True)
        assert r.returncode in (0, 1), r.stderr
        assert "sysctl" in r.stdout
        dry = run("apply", "--json", user=True)
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        if os.geteuid() == 0 and plan["changes"]:
            assert plan["needs_root"]
        if plan["changes"]:
            refused = run("apply", "--yes", user=True)
            assert refused.returncode == 2
            assert "need root" in refused.stderr
            assert "nothing was changed" in refused.stderr
            assert "Traceback" not in refused.stderr

    def test_rollback_of_real_host_needs_root(self, shared: Path) -> None:
        """Unprivileged rollback of the real host with changes pending is refused, exit 2."""
        if os.geteuid() != 0:
            pytest.skip("runs as root to prepare a journal, then drops to an unprivileged user")
        journal = Journal.for_root(Path("/"))
        if journal.path.parent.exists():
            pytest.skip(f"{journal.path.parent} exists: this host has real agave-perf state")
        give_to_nobody(shared)
        try:
            journal.path.parent.mkdir(parents=True)
            journal.path.write_text(
                '{"type":"header","version":1,"root":"/"}\n'
                '{"type":"begin","txn":"t1","time":1,"meta":{}}\n'
                '{"type":"intent","txn":"t1","seq":1,"kind":"file",'
                '"path":"/etc/agave-perf-test-never-created.conf","old":{"state":"absent"},'
                '"new":"eA==","new_mode":420,"time":1}\n'
            )
            r = run("rollback", user=True)
            assert r.returncode == 2, r.stderr
            assert "needs root" in r.stderr
            assert len(journal.pending()) == 1
        finally:
            shutil.rmtree(journal.path.parent)


class TestFakeRootCli:
    def test_cycle_through_the_cli(self, tmp_path: Path) -> None:
        """check fails, apply --yes fixes, status lists, rollback restores the exact tree."""
        root = FakeRoot.build(tmp_path / "root", cpus=2)
        before = root.snapshot()
        args = fake_args(root)
        first = run("check", *args)
        assert first.returncode == 1
        assert "fail" in first.stdout
        assert "agave-perf: error: host check:" in first.stderr
        dry = run("apply", *args)
        assert dry.returncode == 0
        assert "--yes" in dry.stdout
        assert root.snapshot() == before
        applied = run("apply", *args, "--yes", "--json")
        assert applied.returncode == 0, applied.stderr
        assert json.loads(applied.stdout)["applied"] is True
        assert run("check", *args).returncode == 0
        status = json.loads(run("status", "--root", str(root.path), "--json").stdout)
        assert len(status["applied"]) == 1
        back = run("rollback", "--root", str(root.path))
        assert back.returncode == 0, back.stderr
        assert root.snapshot() == before
        assert "nothing to roll back" in run("rollback", "--root", str(root.path)).stdout

    def test_value_the_kernel_ignores_exits_1(self, tmp_path: Path) -> None:
        """A write that succeeds but does not take effect is reported and exits 1."""
        root = FakeRoot.build(tmp_path / "root")
        null = root.host("/dev/null")
        null.parent.mkdir()
        try:  # a null device inside the tree: accepts every write, always reads back empty
            os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("needs CAP_MKNOD to make a null device inside the fake root")
        knob = root.host("/proc/sys/vm/max_map_count")
        knob.unlink()
        knob.symlink_to("/dev/null")  # re-rooted: the tree's /dev/null
        before = root.snapshot()
        r = run("apply", "--root", str(root.path), "--stage", "sysctl", "--yes")
        assert r.returncode == 1, r.stderr
        assert "still fail after apply: [sysctl] vm.max_map_count" in r.stdout
        assert "1 setting(s) still not ok after writing them" in r.stderr
        assert run("rollback", "--root", str(root.path)).returncode == 0
        assert root.snapshot() == before

    def test_failed_restore_is_one_line_exit_1_and_the_journal_keeps_it(
        self, tmp_path: Path
    ) -> None:
        """A rollback that cannot restore a file (a directory now stands at its path) says so
        in one line naming the path, exits 1 (not the internal 70), leaves no temp file, and
        keeps the change pending; once the cause is gone, rollback restores the exact tree."""
        root = FakeRoot.build(tmp_path / "root", cpus=2)
        before = root.snapshot()
        applied = run("apply", *fake_args(root), "--yes", "--json")
        assert applied.returncode == 0, applied.stderr
        written = [c["path"] for c in json.loads(applied.stdout)["changes"] if c["kind"] == "file"]
        blocker = root.host(written[0])
        blocker.unlink()
        blocker.mkdir()
        (blocker / "x").write_text("")
        back = run("rollback", "--root", str(root.path))
        assert back.returncode == 1, back.stderr
        assert "Traceback" not in back.stderr
        (line,) = back.stderr.strip().splitlines()
        assert line.startswith("agave-perf: error: rollback could not restore 1 path(s): ")
        assert written[0] in line
        assert "the journal keeps the rest" in line
        assert [p for p in root.snapshot() if p.endswith(".agave-perf-tmp")] == []
        status = json.loads(run("status", "--root", str(root.path), "--json").stdout)
        assert len(status["applied"]) == 1
        shutil.rmtree(blocker)
        again = run("rollback", "--root", str(root.path))
        assert again.returncode == 0, again.stderr
        assert diff_snapshots(before, root.snapshot()) == []

    def test_corrupt_journal_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        """A damaged journal: one error line, exit 2, no traceback, tree untouched."""
        root = FakeRoot.build(tmp_path / "root")
        journal = Journal.for_root(root.path)
        journal.path.parent.mkdir(parents=True)
        journal.path.write_text(
            '{"type":"header","version":1,"root":"' + str(root.path) + '"}\n{oops\n'
        )
        before = root.snapshot()
        for command in (["rollback"], ["status"], ["apply", "--yes"]):
            r = run(*command, "--root", str(root.path))
            assert r.returncode == 2, (command, r.stderr)
            assert r.stderr.count("\n") == 1
            assert "corrupt at line 2" in r.stderr
        assert root.snapshot() == before

    def test_config_section_supplies_defaults(self, tmp_path: Path) -> None:
        """[host] in the config file names the unit and paths; flags still override it."""
        root = FakeRoot.build(tmp_path / "root")
        conf = tmp_path / "agave-perf.toml"
        conf.write_text('[host]\nunit = "sol"\nledger = "/mnt/ledger"\nagave_version = "1.18"\n')
        r = run("check", "--root", str(root.path), "--json", "--config", str(conf))
        items = {f["item"] for f in json.loads(r.stdout)["findings"]}
        assert "sol.service LimitNOFILE" in items
        assert "ledger mount /mnt/ledger" in items
        assert "sol.service LimitMEMLOCK" not in items  # 1.18 documented no memlock limit
        r = run("check", "--root", str(root.path), "--json", "--config", str(conf), "--unit", "x")
        items = {f["item"] for f in json.loads(r.stdout)["findings"]}
        assert "x.service LimitNOFILE" in items

    def test_unusable_home_does_not_matter(self, tmp_path: Path) -> None:
        """The journal lives in the root, so an unusable AGAVE_PERF_HOME cannot stop apply."""
        root = FakeRoot.build(tmp_path / "root")
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        env = {"AGAVE_PERF_HOME": str(blocker / "home")}
        r = run("apply", *fake_args(root), "--yes", env=env)
        assert r.returncode == 0, r.stderr
        assert len(Journal.for_root(root.path).pending()) == 1

    def test_unusable_state_directory_is_one_line(self, tmp_path: Path) -> None:
        """When the root cannot hold its journal, apply stops before any write, exit 2."""
        root = FakeRoot.build(tmp_path / "root")
        root.write("/var/lib/agave-perf", "a file where the state directory belongs\n")
        before = root.snapshot(state=True)
        r = run("apply", *fake_args(root), "--yes")
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1
        assert "journal" in r.stderr
        assert "nothing was changed" in r.stderr
        assert root.snapshot(state=True) == before

    @pytest.mark.parametrize("command", [["check"], ["apply", "--yes"]])
    def test_unit_that_is_a_path_is_a_usage_error(self, tmp_path: Path, command: list[str]) -> None:
        """--unit naming a path (which would put the drop-in outside --root) exits 2, no writes."""
        root = FakeRoot.build(tmp_path / "root")
        before = root.snapshot()
        r = run(*command, "--root", str(root.path), "--unit", "../../../../x/sol")
        assert r.returncode == 2, r.stdout + r.stderr
        assert "--unit" in r.stderr
        assert r.stderr.count("\n") == 1
        assert root.snapshot() == before
        assert not (tmp_path / "x").exists()

    def test_missing_root_is_a_usage_error(self, tmp_path: Path) -> None:
        """--root that does not exist exits 2 with a clear message."""
        r = run("check", "--root", str(tmp_path / "nope"))
        assert r.returncode == 2
        assert "no such directory" in r.stderr


class TestUnwritable:
    def test_read_only_kernel_value_is_refused_and_nothing_is_left(self, shared: Path) -> None:
        """A value the kernel refuses (a read-only file) stops apply; earlier writes are undone."""
        root = FakeRoot.build(shared / "root", cpus=2)
        give_to_nobody(shared)
        os.chmod(root.host("/proc/sys/vm/max_map_count"), 0o444)
        before = root.snapshot()
        r = run("apply", *fake_args(root), "--yes", user=True)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "cannot write /proc/sys/vm/max_map_count" in r.stderr
        assert "rolled back" in r.stderr
        assert "Traceback" not in r.stderr
        assert diff_snapshots(before, root.snapshot()) == []

    def test_unwritable_directory_is_refused(self, shared: Path) -> None:
        """A directory the drop-in cannot be created in is named in one line, exit 2."""
        root = FakeRoot.build(shared / "root", cpus=2)
        give_to_nobody(shared)
        os.chmod(root.host("/etc/systemd/system"), 0o555)
        before = root.snapshot()
        r = run("apply", *fake_args(root), "--yes", user=True)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "sol.service.d" in r.stderr
        assert r.stderr.count("\n") == 1
        assert root.snapshot() == before


class TestJournalBelongsToTheHost:
    """`sudo agave-perf host apply` then a plain `agave-perf host status` (issue 17, item 1)."""

    def test_status_and_rollback_from_another_user_and_home(self, shared: Path) -> None:
        """A change applied with one home (and user) is seen and undone with another."""
        root = FakeRoot.build(shared / "root", cpus=2)
        before = root.snapshot()
        applied = run("apply", *fake_args(root), "--yes", env={"AGAVE_PERF_HOME": "/nonexistent/a"})
        assert applied.returncode == 0, applied.stderr
        other = shared / "other-home"
        other.mkdir()
        os.chmod(other, 0o777)
        env = {"AGAVE_PERF_HOME": str(other)}
        status = run("status", "--root", str(root.path), "--json", env=env, user=True)
        assert status.returncode == 0, status.stderr
        assert len(json.loads(status.stdout)["applied"]) == 1
        assert "no change" not in run("status", "--root", str(root.path), env=env, user=True).stdout
        back = run("rollback", "--root", str(root.path), env=env)
        assert back.returncode == 0, back.stderr
        assert root.snapshot() == before

    def test_unreadable_journal_is_refused_in_one_line(self, shared: Path) -> None:
        """A journal the user cannot read is a one-line refusal, exit 2 — never 'no change'."""
        root = FakeRoot.build(shared / "root", cpus=2)
        assert run("apply", *fake_args(root), "--yes").returncode == 0
        journal = Journal.for_root(root.path).path
        as_nobody = os.geteuid() == 0  # root reads anything: drop to nobody instead
        os.chmod(journal, 0o600 if as_nobody else 0o000)
        try:
            r = run("status", "--root", str(root.path), user=as_nobody)
        finally:
            os.chmod(journal, 0o644)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1
        assert "cannot read the host journal" in r.stderr
        assert "no change" not in r.stdout

    def test_journal_in_the_old_place_is_found_and_moved(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A journal an older version left under $AGAVE_PERF_HOME is reported by status and
        moved into the root by rollback, which then restores the tree."""
        home = tmp_path / "home"
        monkeypatch.setenv("AGAVE_PERF_HOME", str(home))
        root = FakeRoot.build(tmp_path / "root", cpus=2)
        before = root.snapshot()
        assert run("apply", *fake_args(root), "--yes").returncode == 0
        # Make it look like the old layout: the journal under the home, none in the root.
        old = legacy_path(root.path)
        old.parent.mkdir(parents=True)
        shutil.move(Journal.for_root(root.path).path, old)
        status = run("status", "--root", str(root.path), "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert len(report["applied"]) == 1
        assert report["legacy_journal"] == str(old)
        assert "old place" in run("status", "--root", str(root.path)).stdout
        back = run("rollback", "--root", str(root.path))
        assert back.returncode == 0, back.stderr
        assert root.snapshot() == before
        assert not old.exists()
        assert old.with_name(old.name + ".migrated").exists()
        assert Journal.for_root(root.path).path.exists()
        assert Journal.for_root(root.path).pending() == []


class TestSymlinkAttacksThroughTheCli:
    """`host apply --root R --yes` with links planted in R (issue 17, item 10)."""

    def test_knob_linked_to_a_real_file_is_never_written(self, tmp_path: Path) -> None:
        """swappiness -> an absolute path of the real machine: that file is never touched."""
        root = FakeRoot.build(tmp_path / "root", cpus=2)
        real = tmp_path / "real-system-file"
        real.write_text("precious\n")
        knob = root.host("/proc/sys/vm/swappiness")
        knob.unlink()
        knob.symlink_to(real)
        r = run("apply", *fake_args(root), "--yes", "--json")
        assert "Traceback" not in r.stderr
        assert real.read_text() == "precious\n"
        records = Journal.for_root(root.path).path.read_text()
        assert str(real) not in records
        assert "/proc/sys/vm/swappiness" not in records

    def test_planted_temp_link_stops_apply_in_one_line(self, tmp_path: Path) -> None:
        """A link at the sysctl drop-in's temp name: exit 2, one line, target and tree intact."""
        root = FakeRoot.build(tmp_path / "root", cpus=2)
        real = tmp_path / "real-system-file"
        real.write_text("precious\n")
        os.chmod(real, 0o600)
        root.host("/etc/sysctl.d/.21-agave-validator.conf.agave-perf-tmp").symlink_to(real)
        before = root.snapshot()
        r = run("apply", *fake_args(root), "--yes")
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1
        assert "in the way" in r.stderr
        assert real.read_text() == "precious\n"
        assert real.stat().st_mode & 0o777 == 0o600
        assert not root.host("/etc/sysctl.d/21-agave-validator.conf").is_symlink()
        assert root.snapshot() == before
