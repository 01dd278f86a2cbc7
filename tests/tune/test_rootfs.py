"""Paths resolved inside a root, as ``openat2(RESOLVE_IN_ROOT)`` would: links never lead out."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from agave_perf.testing.fakeroot import FakeRoot
from agave_perf.tune.rootfs import RootFS


@pytest.fixture
def tree(tmp_path: Path) -> FakeRoot:
    root = FakeRoot(tmp_path / "root")
    root.write("/etc/app.conf", "inside\n")
    (tmp_path / "outside.conf").write_text("outside\n")
    return root


class TestResolve:
    def test_absolute_link_is_re_rooted(self, tree: FakeRoot) -> None:
        """An absolute target means the same path in the tree, never on the real machine."""
        tree.host("/etc/abs.conf").symlink_to("/etc/app.conf")
        fs = RootFS(tree.path)
        assert fs.resolve("/etc/abs.conf") == "/etc/app.conf"
        assert fs.read_bytes("/etc/abs.conf") == b"inside\n"

    def test_relative_escape_is_refused_with_the_link_named(self, tree: FakeRoot) -> None:
        """A '..' that would climb above the root is EXDEV, naming the link and its target."""
        tree.host("/etc/out.conf").symlink_to("../../outside.conf")
        fs = RootFS(tree.path)
        with pytest.raises(OSError, match=r"symlink /etc/out.conf -> \.\./\.\./outside") as info:
            fs.read_bytes("/etc/out.conf")
        assert info.value.errno == errno.EXDEV
        assert not fs.exists("/etc/out.conf/x")

    def test_link_loop_ends(self, tree: FakeRoot) -> None:
        """Two links pointing at each other end in ELOOP, as in the kernel."""
        tree.host("/etc/a").symlink_to("b")
        tree.host("/etc/b").symlink_to("a")
        with pytest.raises(OSError, match="too many symlinks") as info:
            RootFS(tree.path).read_bytes("/etc/a")
        assert info.value.errno == errno.ELOOP

    def test_missing_components_resolve_as_written(self, tree: FakeRoot) -> None:
        """A path that does not exist yet resolves through what exists, the rest literally."""
        tree.mkdir("/mnt/real")
        tree.host("/mnt/ledger").symlink_to("real")
        assert RootFS(tree.path).resolve("/mnt/ledger/new/dir") == "/mnt/real/new/dir"

    def test_real_root_follows_absolute_links_normally(self, tmp_path: Path) -> None:
        """With --root / (the real case) an absolute link is the real path it names."""
        (tmp_path / "target").write_text("real\n")
        (tmp_path / "link").symlink_to(tmp_path / "target")
        fs = RootFS("/")
        assert fs.read_bytes(str(tmp_path / "link")) == b"real\n"
        assert fs.resolve(str(tmp_path / "link")) == os.path.realpath(tmp_path / "target")
        assert fs.resolve("/proc/self/status") == f"/proc/{os.getpid()}/status"


class TestCreate:
    def test_makedirs_sets_the_exact_mode(self, tree: FakeRoot) -> None:
        """Directories made for agave-perf's state get their mode regardless of the umask."""
        old = os.umask(0o077)
        try:
            RootFS(tree.path).makedirs("/var/lib/agave-perf")
        finally:
            os.umask(old)
        assert tree.host("/var/lib/agave-perf").stat().st_mode & 0o777 == 0o755
