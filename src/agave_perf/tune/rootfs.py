"""Paths under ``--root`` resolved inside the root, the way ``openat2(RESOLVE_IN_ROOT)`` does.

A fake tree, a container or an image root may hold symlinks that point anywhere: an
absolute ``/proc/sys/vm/swappiness -> /etc/shadow`` resolves against the real ``/``
when the path is simply joined to the root, so agave-perf would read, journal and
write a file of the machine it runs on. :class:`RootFS` walks a host path one
component at a time from a descriptor of the root (``O_PATH|O_NOFOLLOW`` with
``dir_fd``), follows a symlink only inside the root (absolute targets are re-rooted,
a ``..`` that would climb above the root is refused) and opens the last component
with ``O_NOFOLLOW`` relative to its already-resolved directory, so no component can
be swapped for a link between the check and the use. Temp files are created with
``O_CREAT|O_EXCL|O_NOFOLLOW``. A refused path is an :class:`OSError` with ``EXDEV``
(what ``openat2`` answers) whose text says which link leads out.

Every read and write of the host stages (:mod:`agave_perf.tune.host`) and of the
journal (:mod:`agave_perf.tune.journal`) goes through one :class:`RootFS`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

# The kernel's bound on symlinks followed in one lookup, so a link loop ends.
MAX_LINKS = 40
_WALK = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


class RootFS:
    """A directory treated as ``/``: every path is resolved, opened and created inside it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.abspath(root))

    def host_path(self, host_path: str) -> Path:
        """Return where a host path sits under the root, for messages (never opened by name)."""
        return self.root / host_path.lstrip("/")

    # -- resolution ------------------------------------------------------------------

    def _escape(self, link: list[str], target: str) -> OSError:
        shown = "/" + "/".join(link)
        return OSError(
            errno.EXDEV,
            f"it leads outside the root {self.root} (symlink {shown} -> {target})",
        )

    def _walk(
        self, host_path: str, *, follow_last: bool, missing_ok: bool = False
    ) -> tuple[int, str, list[str]]:
        """Return (an ``O_PATH`` descriptor of the parent, the last name, the parent's parts).

        The caller closes the descriptor. With ``missing_ok`` a missing directory ends
        the walk: the rest of the path is taken literally (for :meth:`resolve`), and the
        descriptor returned is -1.
        """
        pending = _parts(host_path)
        if not pending:
            raise OSError(errno.EINVAL, f"{host_path!r} names the root itself")
        stack = [os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)]
        names: list[str] = []
        links = 0
        try:
            while pending:
                part = pending.pop(0)
                if part == "..":
                    if not names:
                        raise OSError(errno.EXDEV, f"{host_path} climbs above the root {self.root}")
                    os.close(stack.pop())
                    names.pop()
                    continue
                last = not pending
                try:
                    fd = os.open(part, _WALK, dir_fd=stack[-1])
                except FileNotFoundError:
                    if last:
                        return os.dup(stack[-1]), part, list(names)
                    if missing_ok:
                        rest = [part, *pending]
                        resolved = list(names)
                        for item in rest[:-1]:
                            if item == "..":
                                if resolved:
                                    resolved.pop()
                            else:
                                resolved.append(item)
                        return -1, rest[-1], resolved
                    raise
                try:
                    mode = os.fstat(fd).st_mode
                except OSError:
                    os.close(fd)
                    raise
                if stat.S_ISLNK(mode) and (follow_last or not last):
                    os.close(fd)
                    target = os.readlink(part, dir_fd=stack[-1])
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, f"too many symlinks in {host_path}")
                    if target.startswith("/"):
                        # Re-rooted: an absolute target means the same path in this tree.
                        while len(stack) > 1:
                            os.close(stack.pop())
                        link_at = [*names, part]
                        names = []
                    else:
                        link_at = [*names, part]
                    depth = len(names)
                    for item in _parts(target):
                        depth += -1 if item == ".." else 1
                        if depth < 0:
                            raise self._escape(link_at, target)
                    pending = _parts(target) + pending
                    continue
                if last:
                    os.close(fd)
                    return os.dup(stack[-1]), part, list(names)
                if not stat.S_ISDIR(mode):
                    os.close(fd)
                    raise NotADirectoryError(
                        errno.ENOTDIR, f"{'/'.join([*names, part])} is not a directory"
                    )
                stack.append(fd)
                names.append(part)
            # Only "x/.." style paths get here: the last component was a "..".
            raise OSError(errno.EINVAL, f"{host_path!r} does not name a file")
        finally:
            for fd in stack:
                os.close(fd)

    @contextlib.contextmanager
    def parent(self, host_path: str, *, follow_last: bool = False) -> Iterator[tuple[int, str]]:
        """Yield (descriptor of the resolved parent directory, last name), closed afterwards."""
        fd, name, _ = self._walk(host_path, follow_last=follow_last)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def resolve(self, host_path: str) -> str:
        """Return the host path with every symlink resolved inside the root.

        Missing components are kept as written, so a path that does not exist yet still
        resolves as far as the tree goes. Raises :class:`OSError` (``EXDEV``) on escape.
        """
        fd, name, names = self._walk(host_path, follow_last=True, missing_ok=True)
        if fd >= 0:
            os.close(fd)
        return "/" + "/".join([*names, name])

    # -- reading ---------------------------------------------------------------------

    def open(self, host_path: str, flags: int, mode: int = 0o644) -> int:
        """Open a path (following in-root links) with ``O_NOFOLLOW`` on its resolved name."""
        with self.parent(host_path, follow_last=True) as (dirfd, name):
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd)

    def read_bytes(self, host_path: str) -> bytes:
        """Return a file's bytes."""
        fd = self.open(host_path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            return fh.read()

    def lstat(self, host_path: str) -> os.stat_result:
        """Stat the last component itself (a link is reported as a link)."""
        with self.parent(host_path) as (dirfd, name):
            return os.stat(name, dir_fd=dirfd, follow_symlinks=False)

    def exists(self, host_path: str) -> bool:
        """True when the path exists (a dangling link counts), False when missing or refused."""
        try:
            self.lstat(host_path)
        except OSError:
            return False
        return True

    def listdir(self, host_path: str) -> list[str]:
        """Return the entries of a directory."""
        fd = self.open(host_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def readlink(self, host_path: str) -> str:
        """Return a symlink's target as written."""
        with self.parent(host_path) as (dirfd, name):
            return os.readlink(name, dir_fd=dirfd)

    # -- writing ---------------------------------------------------------------------

    def fsync_dir(self, dirfd: int) -> None:
        """Flush a directory given as a (possibly ``O_PATH``) descriptor."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def makedirs(self, host_dir: str, mode: int = 0o755) -> None:
        """Create a directory and its missing parents inside the root (not journaled)."""
        done: list[str] = []
        for part in _parts(host_dir):
            done.append(part)
            path = "/" + "/".join(done)
            with self.parent(path, follow_last=True) as (dirfd, name):
                try:
                    os.mkdir(name, mode, dir_fd=dirfd)
                except FileExistsError:
                    continue
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
                try:
                    os.fchmod(fd, mode)  # the umask must not narrow it
                finally:
                    os.close(fd)
