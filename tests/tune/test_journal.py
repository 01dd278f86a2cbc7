"""The write-ahead journal: exact restore of bytes and modes, crash tolerance, corruption."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.errors import JournalCorrupt, TuningError, WriteFailed
from agave_perf.testing.fakeroot import FakeRoot, diff_snapshots
from agave_perf.tune.journal import (
    FileState,
    Journal,
    filesystem_type,
    journal_key,
)


@pytest.fixture
def root(tmp_path: Path) -> FakeRoot:
    tree = FakeRoot(tmp_path / "root")
    tree.write("/etc/app.conf", "old\n", mode=0o640)
    tree.write("/proc/sys/vm/max_map_count", "65530\n")
    tree.mkdir("/var/lib")  # every host has it; the journal goes below it
    return tree


class TestWriteAndRollback:
    def test_file_replaced_then_restored_with_mode(self, root: FakeRoot) -> None:
        """A replaced file gets its old bytes and mode back on rollback."""
        before = root.snapshot()
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", mode=0o600, stage="t", label="conf")
        assert root.read("/etc/app.conf") == "new\n"
        assert root.snapshot()["/etc/app.conf"].mode == 0o600
        journal.rollback()
        assert root.snapshot() == before

    def test_new_file_and_parents_are_deleted(self, root: FakeRoot) -> None:
        """A file created in new directories disappears with those directories."""
        before = root.snapshot()
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_file("/etc/a/b/c.conf", b"x", mode=0o644, stage="t", label="new")
        assert root.host("/etc/a/b/c.conf").read_bytes() == b"x"
        result = journal.rollback()
        assert root.snapshot() == before
        assert {r.action for r in result.restored} == {"deleted", "removed-dir"}

    def test_knob_written_in_place_and_restored(self, root: FakeRoot) -> None:
        """A kernel value is written in place (same inode) and restored byte for byte."""
        inode = root.host("/proc/sys/vm/max_map_count").stat().st_ino
        before = root.snapshot()
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_knob(
                "/proc/sys/vm/max_map_count", b"1000000\n", restore=b"65530\n", stage="t", label="k"
            )
        assert root.sysctl("vm.max_map_count") == "1000000"
        assert root.host("/proc/sys/vm/max_map_count").stat().st_ino == inode
        journal.rollback()
        assert root.snapshot() == before

    def test_rollback_of_two_runs_restores_the_first_state(self, root: FakeRoot) -> None:
        """Two applies to one file roll back to the state before the first."""
        before = root.snapshot()
        journal = Journal.for_root(root.path)
        for content in (b"one\n", b"two\n"):
            with journal.transaction() as txn:
                txn.write_file("/etc/app.conf", content, stage="t", label="conf")
        assert len(journal.pending()) == 2
        result = journal.rollback()
        assert len(result.transactions) == 2
        assert root.snapshot() == before

    def test_edits_after_apply_are_reported(self, root: FakeRoot) -> None:
        """A file edited after apply is still restored, and the rollback says so."""
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
            txn.write_file("/etc/other.conf", b"o\n", stage="t", label="other")
        root.write("/etc/app.conf", "hand edit\n", mode=0o640)
        result = journal.rollback()
        assert result.drifted == ["/etc/app.conf"]
        assert root.read("/etc/app.conf") == "old\n"

    def test_rollback_is_idempotent(self, root: FakeRoot) -> None:
        """A second rollback finds nothing to do and changes nothing."""
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
        journal.rollback()
        after_first = root.snapshot()
        again = journal.rollback()
        assert again.restored == []
        assert again.transactions == []
        assert root.snapshot() == after_first
        assert journal.pending() == []

    def test_failed_restore_leaves_its_directories_for_the_next_rollback(
        self, root: FakeRoot
    ) -> None:
        """A path that cannot be restored keeps its older writes and new parents pending."""
        before = root.snapshot()
        journal = Journal.for_root(root.path)
        for content in (b"one\n", b"two\n"):
            with journal.transaction() as txn:
                txn.write_file("/etc/a/b/c.conf", content, stage="t", label="conf")
        blocker = root.host("/etc/a/b/c.conf")
        blocker.unlink()
        blocker.mkdir()  # a non-empty directory: neither replaced nor deleted
        (blocker / "x").write_text("")
        assert journal.rollback().errors
        shutil.rmtree(blocker)  # the operator removes the cause
        again = journal.rollback()
        assert again.errors == []
        assert diff_snapshots(before, root.snapshot()) == []
        assert journal.pending() == []

    def test_failed_restore_leaves_no_temp_file_and_names_what_stayed(self, root: FakeRoot) -> None:
        """A restore that fails after its temp file was written removes that file, and the
        result names every path not restored (issue 17, item 15)."""
        root.write("/etc/b.conf", "old b\n")
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
            txn.write_file("/etc/b.conf", b"new b\n", stage="t", label="b")
        for name in ("app.conf", "b.conf"):
            blocker = root.host(f"/etc/{name}")
            blocker.unlink()
            blocker.mkdir()  # the rename over it fails once the temp file is written
            (blocker / "x").write_text("")
        result = journal.rollback()
        assert [e.split(":")[0] for e in result.errors] == ["/etc/b.conf", "/etc/app.conf"]
        assert "/etc/app.conf" in result.not_restored
        assert "/etc/b.conf" in result.not_restored
        assert [p for p in root.snapshot() if p.endswith(".agave-perf-tmp")] == []
        assert len(journal.pending()) == 1

    def test_knob_that_vanished_needs_no_restore(self, root: FakeRoot) -> None:
        """A kernel value gone by rollback time (CPU offlined, NIC unplugged) is not an error."""
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_knob(
                "/proc/sys/vm/max_map_count", b"1000000\n", restore=b"65530\n", stage="t", label="k"
            )
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
        root.remove("/proc/sys/vm/max_map_count")
        result = journal.rollback()
        assert result.errors == []
        assert {(r.path, r.action) for r in result.restored} == {
            ("/proc/sys/vm/max_map_count", "gone"),
            ("/etc/app.conf", "restored"),
        }
        assert root.read("/etc/app.conf") == "old\n"
        assert journal.pending() == []

    def test_failed_write_undoes_the_run(self, root: FakeRoot) -> None:
        """When a write fails, the earlier writes of the same run are undone."""
        root.write("/etc/blocker", "a file where a directory is needed\n")
        before = root.snapshot()
        journal = Journal.for_root(root.path)

        def two_writes() -> None:
            with journal.transaction() as txn:
                txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
                txn.write_file("/etc/blocker/x.conf", b"x", stage="t", label="blocked")

        with pytest.raises(TuningError, match="rolled back") as info:
            two_writes()
        assert "/etc/blocker" in str(info.value)
        assert root.snapshot() == before
        assert journal.pending() == []

    def test_symlinked_file_is_refused_untouched(self, root: FakeRoot) -> None:
        """A file that is a symlink is never replaced by a regular file."""
        os.symlink("app.conf", root.host("/etc/link.conf"))
        before = root.snapshot()
        journal = Journal.for_root(root.path)
        with pytest.raises(WriteFailed, match=r"symlink to app\.conf"):  # noqa: SIM117
            with journal.transaction() as txn:
                txn.write_file("/etc/link.conf", b"x", stage="t", label="link")
        assert root.snapshot() == before

    def test_missing_knob_is_refused_before_any_intent(self, root: FakeRoot) -> None:
        """Writing a kernel value the kernel does not offer fails with a clear reason."""
        journal = Journal.for_root(root.path)
        with pytest.raises(WriteFailed, match="does not offer"), journal.transaction() as txn:
            txn.write_knob("/proc/sys/no/such", b"1\n", restore=b"0\n", stage="t", label="k")
        assert journal.pending() == []

    @pytest.mark.parametrize("host_path", ["/etc/../../outside/x.conf", "/etc/escape/x.conf"])
    def test_path_outside_the_root_is_refused_before_any_write(
        self, root: FakeRoot, host_path: str
    ) -> None:
        """A path leaving the root ('..', a symlinked directory) is refused before any write."""
        outside = root.path.parent / "outside"
        outside.mkdir()
        os.symlink("../../outside", root.host("/etc/escape"))
        before = root.snapshot()
        journal = Journal.for_root(root.path)
        with pytest.raises(WriteFailed, match="outside the root"):  # noqa: SIM117
            with journal.transaction() as txn:
                txn.write_file(host_path, b"x", stage="t", label="escape")
        assert list(outside.iterdir()) == []
        assert root.snapshot() == before
        assert journal.pending() == []


write_ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["/etc/app.conf", "/etc/new.conf", "/etc/d/e/f.conf", "/proc/sys/vm/max_map_count"]
        ),
        st.binary(max_size=40),
        st.sampled_from([None, 0o600, 0o644, 0o755]),
    ),
    min_size=1,
    max_size=8,
)


class TestAnySequence:
    @settings(max_examples=40, deadline=None)
    @given(write_ops, st.integers(1, 3))
    def test_any_writes_in_any_runs_roll_back_exactly(
        self, ops: list[tuple[str, bytes, int | None]], runs: int
    ) -> None:
        """Whatever files and values are written, over several runs, rollback restores all."""
        with tempfile.TemporaryDirectory() as tmp:
            root = FakeRoot(Path(tmp) / "root")
            root.write("/etc/app.conf", "old\n", mode=0o640)
            root.write("/proc/sys/vm/max_map_count", "65530\n")
            root.mkdir("/var/lib")
            before = root.snapshot()
            journal = Journal.for_root(root.path)
            size = -(-len(ops) // runs)
            for start in range(0, len(ops), size):
                with journal.transaction() as txn:
                    for path, data, mode in ops[start : start + size]:
                        if path.startswith("/proc/"):
                            txn.write_knob(path, data, restore=b"65530\n", stage="t", label="k")
                        else:
                            txn.write_file(path, data, mode=mode, stage="t", label="f")
            journal.rollback()
            assert diff_snapshots(before, root.snapshot()) == []
            assert journal.pending() == []


class TestJournalFile:
    def test_each_root_keeps_its_own_journal(self, tmp_path: Path) -> None:
        """The journal lives in the root it changed, so fake roots never share one."""
        journal = Journal.for_root(tmp_path / "a")
        assert journal.path == tmp_path / "a/var/lib/agave-perf/host-journal.jsonl"
        assert journal.path != Journal.for_root(tmp_path / "b").path
        # The key still names the journals older versions kept under $AGAVE_PERF_HOME.
        assert journal_key(tmp_path / "a") != journal_key(tmp_path / "b")
        assert journal_key(tmp_path / "a") == journal_key(tmp_path / "x" / ".." / "a")

    def test_intent_records_old_bytes_and_mode(self, root: FakeRoot) -> None:
        """The intent carries base64 old bytes and mode; an absent file is 'absent'."""
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
            txn.write_file("/etc/fresh.conf", b"f\n", mode=0o644, stage="t", label="fresh")
        records = [json.loads(line) for line in journal.path.read_text().splitlines()]
        intents = [r for r in records if r["type"] == "intent"]
        old = FileState.from_json(intents[0]["old"])
        assert old.data == b"old\n"
        assert old.mode == 0o640
        assert intents[1]["old"] == {"state": "absent"}
        assert [r["type"] for r in records].count("done") == 2

    def test_torn_last_line_is_ignored(self, root: FakeRoot) -> None:
        """A record cut off by a crash mid-append is dropped, not reported as corruption."""
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
        with open(journal.path, "ab") as fh:
            fh.write(b'{"type":"intent","txn":"x')
        assert len(journal.pending()) == 1
        journal.rollback()
        assert root.read("/etc/app.conf") == "old\n"
        assert journal.path.read_bytes().endswith(b"\n")

    @pytest.mark.parametrize(
        "damage",
        [
            b"not json\n",
            b'{"type":"intent","txn":"nope"}\n',
            b'{"type":"mystery","txn":"x"}\n',
            b'["a list"]\n',
            b'{"type":"intent","txn":"TXN","seq":9,"kind":"file","path":"/etc/../../x",'
            b'"old":{"state":"absent"},"new":"","time":1}\n',
        ],
    )
    def test_corrupt_journal_stops_everything(self, root: FakeRoot, damage: bytes) -> None:
        """Damage in the middle of the journal is a clear error; nothing is touched."""
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
        raw = journal.path.read_bytes().splitlines(keepends=True)
        damage = damage.replace(b"TXN", json.loads(raw[1])["txn"].encode())
        journal.path.write_bytes(b"".join(raw[:2]) + damage + b"".join(raw[2:]))
        state = root.snapshot()
        with pytest.raises(JournalCorrupt, match="corrupt at line 3"):
            journal.rollback()
        with pytest.raises(JournalCorrupt), journal.transaction():
            pass
        assert root.snapshot() == state

    def test_root_that_moved_keeps_its_journal(self, root: FakeRoot, tmp_path: Path) -> None:
        """A tree moved elsewhere (an image mounted at another place) still rolls back."""
        before = root.snapshot()
        with Journal.for_root(root.path).transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
        moved = FakeRoot(root.path.rename(tmp_path / "moved"))
        journal = Journal.for_root(moved.path)
        assert len(journal.pending()) == 1
        journal.rollback()
        assert moved.snapshot() == before

    def test_root_reached_through_a_symlink_is_the_same_root(
        self, root: FakeRoot, tmp_path: Path
    ) -> None:
        """The same root named through a symlink reads its journal and rolls back."""
        before = root.snapshot()
        with Journal.for_root(root.path).transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
        link = tmp_path / "link"
        link.symlink_to(root.path)
        journal = Journal.for_root(link)
        assert len(journal.pending()) == 1
        journal.rollback()
        assert root.snapshot() == before

    def test_concurrent_transaction_is_refused(self, root: FakeRoot) -> None:
        """A second writer on the same root gets a clear error instead of interleaving."""
        journal = Journal.for_root(root.path)
        with journal.transaction(), pytest.raises(TuningError, match="another agave-perf"):
            journal.rollback()


class TestFilesystemType:
    def test_proc_is_a_kernel_filesystem(self) -> None:
        """/proc/sys resolves to procfs, a fake tree to an ordinary filesystem."""
        if not os.path.exists("/proc/self/mountinfo"):
            pytest.skip("needs /proc/self/mountinfo (Linux)")
        assert filesystem_type(Path("/proc/sys/vm")) == "proc"
        assert filesystem_type(Path("/tmp")) not in ("proc", "sysfs")

    def test_longest_mount_point_wins(self) -> None:
        """A nested mount point is chosen over its parent."""
        mounts = [("/", "ext4"), ("/sys", "sysfs"), ("/sys/fs/cgroup", "cgroup2")]
        assert filesystem_type(Path("/sys/fs/cgroup/x"), mounts) == "cgroup2"
        assert filesystem_type(Path("/sys/kernel"), mounts) == "sysfs"
        assert filesystem_type(Path("/system"), mounts) == "ext4"


class TestSymlinkAttacks:
    """Links planted under --root never lead a read or a write out of it (issue 17, item 10)."""

    @pytest.fixture
    def outside(self, root: FakeRoot) -> Path:
        """A file of the 'real' machine, next to the root, that must never change."""
        target = root.path.parent / "real-system-file"
        target.write_text("precious\n")
        os.chmod(target, 0o600)
        return target

    def assert_untouched(self, outside: Path) -> None:
        assert outside.read_text() == "precious\n"
        assert oct(outside.stat().st_mode & 0o777) == oct(0o600)

    def test_knob_linking_out_relatively_is_refused(self, root: FakeRoot, outside: Path) -> None:
        """A knob that is a '../..' link climbing above the root is refused, nothing journaled."""
        knob = root.host("/proc/sys/vm/swappiness")
        knob.symlink_to("../../../../real-system-file")
        journal = Journal.for_root(root.path)
        with pytest.raises(WriteFailed, match="leads outside the root") as info:  # noqa: SIM117
            with journal.transaction() as txn:
                txn.write_knob(
                    "/proc/sys/vm/swappiness", b"1\n", restore=b"60\n", stage="t", label="k"
                )
        assert str(info.value).count("\n") == 0
        self.assert_untouched(outside)
        assert journal.pending() == []

    def test_absolute_knob_link_is_taken_inside_the_root(
        self, root: FakeRoot, outside: Path
    ) -> None:
        """An absolute link resolves against the root, never the real /: the real file stays."""
        root.host("/proc/sys/vm/swappiness").symlink_to(outside)
        journal = Journal.for_root(root.path)
        with pytest.raises(WriteFailed, match="does not offer"):  # noqa: SIM117
            with journal.transaction() as txn:
                txn.write_knob(
                    "/proc/sys/vm/swappiness", b"1\n", restore=b"60\n", stage="t", label="k"
                )
        self.assert_untouched(outside)
        # With the re-rooted target present, the write goes there, and rollback restores it.
        copy = root.write(str(outside), "60\n")
        before = root.snapshot()
        with journal.transaction() as txn:
            txn.write_knob("/proc/sys/vm/swappiness", b"1\n", restore=b"60\n", stage="t", label="k")
        assert copy.read_text() == "1\n"
        self.assert_untouched(outside)
        journal.rollback()
        assert root.snapshot() == before

    @pytest.mark.parametrize("link", ["relative", "absolute"])
    def test_link_in_an_intermediate_directory_stays_inside(
        self, root: FakeRoot, outside: Path, link: str
    ) -> None:
        """A directory on the way that links out: a relative escape is refused, an absolute
        link is re-rooted; either way nothing is created outside the root."""
        out_dir = root.path.parent / "real-etc"
        out_dir.mkdir()
        target = "../../real-etc" if link == "relative" else str(out_dir)
        root.host("/etc/sysctl.d").symlink_to(target)
        journal = Journal.for_root(root.path)
        if link == "relative":
            with pytest.raises(WriteFailed, match="outside the root"):  # noqa: SIM117
                with journal.transaction() as txn:
                    txn.write_file("/etc/sysctl.d/21.conf", b"x\n", stage="t", label="f")
        else:
            before = root.snapshot()
            with journal.transaction() as txn:
                txn.write_file("/etc/sysctl.d/21.conf", b"x\n", stage="t", label="f")
            assert root.host(str(out_dir) + "/21.conf").read_bytes() == b"x\n"
            journal.rollback()
            assert diff_snapshots(before, root.snapshot()) == []
        assert list(out_dir.iterdir()) == []
        self.assert_untouched(outside)

    def test_planted_temp_file_link_is_refused(self, root: FakeRoot, outside: Path) -> None:
        """A link planted at the temp file's name is refused in one line; its target, the
        config path and the tree stay as they were."""
        root.write("/etc/sysctl.d/21-agave-validator.conf", "old\n")
        planted = root.host("/etc/sysctl.d/.21-agave-validator.conf.agave-perf-tmp")
        planted.symlink_to(outside)
        before = root.snapshot()
        journal = Journal.for_root(root.path)

        def apply() -> None:
            with journal.transaction() as txn:
                txn.write_file("/etc/app.conf", b"new\n", stage="t", label="earlier")
                txn.write_file(
                    "/etc/sysctl.d/21-agave-validator.conf", b"new\n", stage="t", label="conf"
                )

        with pytest.raises(TuningError, match="in the way") as info:
            apply()
        assert str(info.value).count("\n") == 0
        assert "rolled back" in str(info.value)
        self.assert_untouched(outside)
        assert not root.host("/etc/sysctl.d/21-agave-validator.conf").is_symlink()
        assert root.snapshot() == before
        assert journal.pending() == []

    def test_legitimate_links_inside_the_root_still_work(self, root: FakeRoot) -> None:
        """Links that stay in the tree (as /sys is full of) are followed and restored exactly."""
        root.write("/sys/devices/vm/swappiness", "60\n")
        root.host("/proc/sys/vm/swappiness").symlink_to("../../../sys/devices/vm/swappiness")
        root.mkdir("/usr/lib/sysctl.d")
        root.host("/etc/sysctl.d").symlink_to("/usr/lib/sysctl.d")
        before = root.snapshot()
        journal = Journal.for_root(root.path)
        with journal.transaction() as txn:
            txn.write_knob("/proc/sys/vm/swappiness", b"1\n", restore=b"60\n", stage="t", label="k")
            txn.write_file("/etc/sysctl.d/21.conf", b"x\n", stage="t", label="f")
        assert root.read("/sys/devices/vm/swappiness") == "1\n"
        assert root.read("/usr/lib/sysctl.d/21.conf") == "x\n"
        journal.rollback()
        assert root.snapshot() == before

    def test_planted_state_directory_link_is_refused(self, root: FakeRoot, tmp_path: Path) -> None:
        """The journal's own directory linking out of the root is refused before any write."""
        out_dir = tmp_path / "real-var-lib"
        out_dir.mkdir()
        root.host("/var/lib").rmdir()
        root.host("/var/lib").symlink_to("../../real-var-lib")
        journal = Journal.for_root(root.path)
        with pytest.raises(TuningError, match="outside the root"), journal.transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
        assert list(out_dir.iterdir()) == []
        assert root.read("/etc/app.conf") == "old\n"


class TestPlanFindsTheHostJournal:
    def test_plan_rollback_sees_changes_made_with_another_home(
        self, root: FakeRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The plan's host-journal rollback finds apply runs journaled under another home."""
        from agave_perf.plan.rollback import host_pending

        monkeypatch.setenv("AGAVE_PERF_HOME", str(tmp_path / "home-a"))
        with Journal.for_root(root.path).transaction() as txn:
            txn.write_file("/etc/app.conf", b"new\n", stage="t", label="conf")
        monkeypatch.setenv("AGAVE_PERF_HOME", str(tmp_path / "home-b"))
        assert host_pending(str(root.path)) == [t.id for t in Journal.for_root(root.path).pending()]
        assert len(host_pending(str(root.path)) or []) == 1
