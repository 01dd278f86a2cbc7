"""A write-ahead journal that makes every host change reversible, even after a crash.

Every write agave-perf makes to a host goes through a :class:`Transaction`:

1. an **intent** record is appended and fsynced: the path, its old bytes (or
   "absent"), old mode and owner, the new bytes and mode;
2. the write is made: files atomically (temp file, fsync, rename, fsync of the
   directory), kernel knobs under ``/proc/sys`` and ``/sys`` directly;
3. a **done** record is appended.

:meth:`Journal.rollback` replays the intents of every transaction not yet rolled
back, newest first, restoring bytes and modes exactly and deleting what did not
exist. Because the intent is on disk before the write starts, a process killed at
any point leaves a journal that rollback can finish; restoring is idempotent, so
rollback itself may be interrupted and run again.

The journal belongs to the host it changed, not to a user: it is
``ROOT/var/lib/agave-perf/host-journal.jsonl`` (the FHS place for such state), so
``sudo agave-perf host apply`` followed by a plain ``agave-perf host status`` finds it,
from any user and any ``$AGAVE_PERF_HOME``. It is world-readable (the files it saves
are the world-readable sysctl, limits, systemd and tmpfiles configuration) and
written only by whoever may change the root. A journal left by an older version
under ``$AGAVE_PERF_HOME/journals/`` is read too, and moved into the root by the
next apply or rollback.

Every path, the journal's own included, is resolved inside the root by
:class:`~agave_perf.tune.rootfs.RootFS`: a symlink never leads a read or a write out.

The file is JSON lines. A torn last line (no newline: the process died while
appending it) is ignored, since its write had not started. Any other damage is a
:class:`~agave_perf.errors.TuningError` raised before anything is changed.

Test hook: ``AGAVE_PERF_TEST_CRASH_AT=PHASE:N`` makes the process SIGKILL itself
at the N-th (1-based) crash point of that phase: ``intent`` (intent fsynced, write
not started), ``tmp`` (temp file written, not yet renamed; files only), ``write``
(write made, done record not yet appended) or ``undo`` (rollback restored a path,
its record not yet appended). It exists so tests can prove
crash safety with real kills; nothing else reads it.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import posixpath
import signal
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agave_perf import paths
from agave_perf.errors import JournalCorrupt, TuningError, WriteFailed
from agave_perf.tune.rootfs import RootFS

VERSION = 1
CRASH_ENV = "AGAVE_PERF_TEST_CRASH_AT"
TMP_SUFFIX = ".agave-perf-tmp"
# Where the journal of a root lives, as a path of that root.
STATE_DIR = "/var/lib/agave-perf"
JOURNAL_NAME = "host-journal.jsonl"
# Pseudo-filesystems where a write is a value handed to the kernel, not file content.
KERNEL_FS = frozenset({"proc", "sysfs"})

Kind = Literal["file", "knob", "dir"]


@dataclass(frozen=True)
class FileState:
    """What a path held: its bytes, mode and owner, or that it was absent."""

    exists: bool
    data: bytes = b""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the journal form (bytes as base64)."""
        if not self.exists:
            return {"state": "absent"}
        return {
            "state": "present",
            "b64": base64.b64encode(self.data).decode("ascii"),
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
        }

    @classmethod
    def from_json(cls, data: Any) -> FileState:
        """Parse the journal form; raises ValueError/KeyError/TypeError when malformed."""
        if data["state"] == "absent":
            return cls(exists=False)
        if data["state"] != "present":
            raise ValueError(f"unknown state {data['state']!r}")
        mode = data.get("mode")
        uid = data.get("uid")
        gid = data.get("gid")
        for value in (mode, uid, gid):
            if value is not None and not isinstance(value, int):
                raise TypeError("mode/uid/gid must be integers")
        return cls(True, base64.b64decode(data["b64"], validate=True), mode, uid, gid)

    @classmethod
    def read(cls, fs: RootFS, host_path: str) -> FileState:
        """Capture the state of a host path (resolved inside the root; a final link is read)."""
        try:
            st = fs.lstat(host_path)
        except FileNotFoundError:
            return cls(exists=False)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            return cls(True, b"", mode, st.st_uid, st.st_gid)
        fd = fs.open(host_path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            return cls(True, fh.read(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


@dataclass
class Entry:
    """One intended write, and what became of it."""

    txn: str
    seq: int
    kind: Kind
    path: str
    old: FileState
    new: bytes
    new_mode: int | None
    restore: bytes | None
    stage: str
    label: str
    time: float
    done: bool = False
    failed: str | None = None
    restored: bool = False

    @property
    def state(self) -> str:
        """Return applied, failed, restored or incomplete (intent without done: a crash)."""
        if self.restored:
            return "restored"
        if self.failed is not None:
            return "failed"
        return "applied" if self.done else "incomplete"


@dataclass
class Txn:
    """One apply run: its entries in order, and whether it was committed or rolled back."""

    id: str
    time: float
    meta: dict[str, Any]
    entries: list[Entry] = field(default_factory=list)
    committed: bool = False
    rolled_back: float | None = None
    # The journal lines of this run, as read, so a migration can copy them exactly.
    lines: list[bytes] = field(default_factory=list, repr=False)

    @property
    def pending(self) -> bool:
        """True while some change of this run may still be in place."""
        return self.rolled_back is None


@dataclass(frozen=True)
class Restored:
    """One path put back by rollback."""

    path: str
    stage: str
    label: str
    action: str  # "restored", "deleted", "removed-dir", "kept-dir", "gone" (knob vanished)


@dataclass
class RollbackResult:
    """What a rollback did."""

    journal: Path
    transactions: list[str] = field(default_factory=list)
    restored: list[Restored] = field(default_factory=list)
    # "PATH: reason" for each path that was not restored; the journal keeps them.
    errors: list[str] = field(default_factory=list)
    # Files someone edited after agave-perf wrote them; their edits were undone too.
    drifted: list[str] = field(default_factory=list)

    @property
    def not_restored(self) -> str:
        """Name every path that was not restored, with its reason, in one line."""
        return "; ".join(self.errors)


def journal_key(root: Path) -> str:
    """Return a short stable key for a root directory (names the journal of older versions)."""
    resolved = str(Path(os.path.abspath(root)).resolve())
    return hashlib.sha256(resolved.encode()).hexdigest()[:16]


def legacy_path(root: Path, name: str = "host") -> Path:
    """Return where versions before the journal moved into the root kept it."""
    return paths.home(create=False) / "journals" / f"{name}-{journal_key(root)}.jsonl"


def _crash_point(phase: str, counter: int) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want_phase, _, want_n = spec.partition(":")
    if want_phase == phase and want_n.isdigit() and int(want_n) == counter:
        os.kill(os.getpid(), signal.SIGKILL)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unescape_mount(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(text):
        code = text[i + 1 : i + 4]
        if text[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _mounts() -> list[tuple[str, str]]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        parts = left.split()
        if sep and len(parts) >= 5 and right.split():
            mounts.append((_unescape_mount(parts[4]), right.split()[0]))
    return mounts


def filesystem_type(path: Path, mounts: list[tuple[str, str]] | None = None) -> str:
    """Return the type of the filesystem holding ``path`` (``""`` when unknown)."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    for point, kind in _mounts() if mounts is None else mounts:
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype


def _parse(raw: bytes, where: Path) -> list[Txn]:
    """Parse journal bytes; raises :class:`JournalCorrupt` on any damage but a torn tail."""
    lines = raw.split(b"\n")
    # The last element is b"" when the file ends with a newline; otherwise it is a
    # record torn by a crash mid-append, whose write never started.
    body = lines[:-1]
    txns: dict[str, Txn] = {}
    for number, line in enumerate(body, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise TypeError("record is not an object")
            _apply_record(record, txns, first=number == 1)
            if number > 1:
                txns[record["txn"]].lines.append(line)
        except (ValueError, KeyError, TypeError) as err:
            raise JournalCorrupt(
                f"journal {where} is corrupt at line {number} ({err}); nothing was "
                "changed — repair that line (deleting the journal forgets what to undo)"
            ) from None
    return list(txns.values())


def _apply_record(rec: dict[str, Any], txns: dict[str, Txn], *, first: bool) -> None:
    kind = rec["type"]
    if first:
        # The root named in the header is informational: the journal lives in the root,
        # so a tree that moved (an image mounted elsewhere) keeps its journal.
        if kind != "header" or rec.get("version") != VERSION:
            raise ValueError("missing or unsupported header")
        return
    if kind == "begin":
        txns[rec["txn"]] = Txn(rec["txn"], float(rec["time"]), dict(rec.get("meta", {})))
        return
    txn = txns[rec["txn"]]
    if kind == "intent":
        if rec["kind"] not in ("file", "knob", "dir"):
            raise ValueError(f"unknown intent kind {rec['kind']!r}")
        restore = rec.get("restore")
        path = str(rec["path"])
        if not path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"path {path!r} is not absolute inside the root")
        txn.entries.append(
            Entry(
                txn=txn.id,
                seq=int(rec["seq"]),
                kind=rec["kind"],
                path=path,
                old=FileState.from_json(rec["old"]),
                new=base64.b64decode(rec["new"], validate=True),
                new_mode=rec.get("new_mode"),
                restore=None if restore is None else base64.b64decode(restore, validate=True),
                stage=str(rec.get("stage", "")),
                label=str(rec.get("label", "")),
                time=float(rec["time"]),
            )
        )
    elif kind in ("done", "failed", "undone"):
        entry = next((e for e in txn.entries if e.seq == rec["seq"]), None)
        if entry is None:
            raise ValueError(f"{kind} record for unknown change {rec['seq']}")
        if kind == "done":
            entry.done = True
        elif kind == "failed":
            entry.failed = str(rec["error"])
        else:
            entry.restored = True
    elif kind == "commit":
        txn.committed = True
    elif kind == "rolled-back":
        txn.rolled_back = float(rec["time"])
    else:
        raise ValueError(f"unknown record type {kind!r}")


def _merge(legacy: list[Txn], current: list[Txn]) -> list[Txn]:
    """One history from both places: oldest first, the root's copy of a run wins."""
    ids = {t.id for t in current}
    return sorted([t for t in legacy if t.id not in ids] + current, key=lambda t: t.time)


class Journal:
    """The journal of one root directory (``/`` on a real host, a fake tree in tests)."""

    def __init__(self, root: Path, *, legacy: Path | None = None, file: str | None = None) -> None:
        self.fs = RootFS(root)
        self.root = self.fs.root
        # ``file``: a journal of its own (an experiment's), still a path inside the root
        self.host_file = file or f"{STATE_DIR}/{JOURNAL_NAME}"
        self.path = self.fs.host_path(self.host_file)
        # A journal an older version kept under $AGAVE_PERF_HOME for this root, if any.
        self.legacy = legacy
        self._crash_counts: dict[str, int] = {}
        self._mount_cache: list[tuple[str, str]] | None = None

    @classmethod
    def for_root(cls, root: Path, name: str = "host") -> Journal:
        """Return the journal kept under ``root``, noting one left in the old place."""
        try:
            old = legacy_path(root, name)
            legacy = old if old.is_file() else None
        except OSError:
            legacy = None  # an unusable home holds no journal of ours
        return cls(root, legacy=legacy)

    # -- reading -----------------------------------------------------------------

    def _read_own(self) -> bytes | None:
        try:
            return self.fs.read_bytes(self.host_file)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise JournalCorrupt(
                f"cannot read the host journal {self.path} (permission denied); it belongs "
                "to the user who changed this root — run the command as that user (sudo)"
            ) from None
        except OSError as err:
            raise JournalCorrupt(
                f"cannot read journal {self.path}: {err.strerror} — nothing was changed"
            ) from None

    def _legacy_txns(self) -> list[Txn]:
        if self.legacy is None:
            return []
        try:
            raw = self.legacy.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise JournalCorrupt(
                f"cannot read the journal left in the old place {self.legacy}: {err.strerror}"
            ) from None
        return _parse(raw, self.legacy)

    def transactions(self) -> list[Txn]:
        """Parse the journal; raises :class:`JournalCorrupt` on any damage but a torn tail."""
        raw = self._read_own()
        current = [] if raw is None else _parse(raw, self.path)
        return _merge(self._legacy_txns(), current)

    def pending(self) -> list[Txn]:
        """Return the transactions whose changes may still be in place, oldest first."""
        return [t for t in self.transactions() if t.pending and t.entries]

    # -- writing -----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = f"{self.host_file}.lock"
        try:
            self.fs.makedirs(posixpath.dirname(self.host_file))
            fd = self.fs.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise TuningError(
                f"cannot create the journal lock {self.fs.host_path(lock)}: "
                f"{err.strerror or err} — nothing was changed"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = self.fs.host_path(lock)
                raise TuningError(
                    f"another agave-perf is applying or rolling back (lock {held})"
                ) from None
            self._migrate()
            yield
        finally:
            os.close(fd)

    def _migrate(self) -> None:
        """Move a journal left under $AGAVE_PERF_HOME into the root (under the lock)."""
        if self.legacy is None:
            return
        legacy = self._legacy_txns()
        raw = self._read_own()
        current = [] if raw is None else _parse(raw, self.path)
        merged = _merge(legacy, current)
        header = {"type": "header", "version": VERSION, "root": str(self.root)}
        body = (json.dumps(header) + "\n").encode() + b"".join(
            line + b"\n" for txn in merged for line in txn.lines
        )
        try:
            with self.fs.parent(self.host_file) as (dirfd, name):
                tmp = f".{name}{TMP_SUFFIX}"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dirfd)
                fd = os.open(tmp, _CREATE_EXCL, 0o644, dir_fd=dirfd)
                try:
                    _write_all(fd, body)
                    os.fchmod(fd, 0o644)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
                self.fs.fsync_dir(dirfd)
        except OSError as err:
            raise TuningError(
                f"cannot move the journal {self.legacy} into {self.path}: "
                f"{err.strerror or err} — nothing was changed"
            ) from None
        # Kept renamed, not deleted, as evidence; every run in it is now in the root's copy.
        with contextlib.suppress(OSError):
            self.legacy.rename(self.legacy.with_name(self.legacy.name + ".migrated"))
        self.legacy = None

    def _append(self, record: dict[str, Any]) -> None:
        try:
            self._append_unchecked(record)
        except OSError as err:
            raise TuningError(f"cannot write journal {self.path}: {err.strerror}") from None

    def _append_unchecked(self, record: dict[str, Any]) -> None:
        # World-readable, so `host status` works for any user after `sudo ... apply`.
        fd = self.fs.open(self.host_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            created = os.fstat(fd).st_size == 0
            if created:
                header = {"type": "header", "version": VERSION, "root": str(self.root)}
                os.write(fd, (json.dumps(header) + "\n").encode())
            os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            with self.fs.parent(self.host_file) as (dirfd, _):
                self.fs.fsync_dir(dirfd)

    def _drop_torn_tail(self) -> None:
        raw = self._read_own()
        if raw and not raw.endswith(b"\n"):
            keep = raw.rfind(b"\n") + 1
            fd = self.fs.open(self.host_file, os.O_RDWR)
            try:
                os.ftruncate(fd, keep)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _crash(self, phase: str) -> None:
        count = self._crash_counts.get(phase, 0) + 1
        self._crash_counts[phase] = count
        _crash_point(phase, count)

    def _is_kernel_file(self, host_path: str) -> bool:
        if self._mount_cache is None:
            self._mount_cache = _mounts()
        real = self.fs.host_path(self.fs.resolve(host_path))
        return filesystem_type(real, self._mount_cache) in KERNEL_FS

    @contextlib.contextmanager
    def transaction(self, meta: dict[str, Any] | None = None) -> Iterator[Transaction]:
        """Open a transaction; on any error its changes are undone before the error propagates."""
        with self._locked():
            self.transactions()  # refuse to write on top of a corrupt journal
            self._drop_torn_tail()
            txn = Transaction(self, uuid.uuid4().hex[:12])
            self._append({"type": "begin", "txn": txn.id, "time": time.time(), "meta": meta or {}})
            try:
                yield txn
            except BaseException as err:
                if txn.count:
                    try:
                        result = self._rollback_locked([txn.id])
                    except TuningError as undo:
                        raise TuningError(
                            f"{err}; undoing the earlier changes also failed ({undo}) — "
                            "fix that and run `agave-perf host rollback`"
                        ) from None
                    if isinstance(err, TuningError) and not result.errors:
                        raise TuningError(
                            f"{err}; every change this run made before it was rolled back"
                        ) from None
                    if isinstance(err, TuningError):
                        raise TuningError(
                            f"{err}; undoing the earlier changes also failed, not restored: "
                            f"{result.not_restored} — run `agave-perf host rollback`"
                        ) from None
                else:
                    self._append({"type": "rolled-back", "txn": txn.id, "time": time.time()})
                raise
            self._append({"type": "commit", "txn": txn.id, "time": time.time()})

    # -- rollback ----------------------------------------------------------------

    def rollback(self, txn_ids: list[str] | None = None) -> RollbackResult:
        """Undo every pending transaction (or the given ones), newest first, exactly."""
        with self._locked():
            self.transactions()
            self._drop_torn_tail()
            return self._rollback_locked(txn_ids)

    def _rollback_locked(self, txn_ids: list[str] | None) -> RollbackResult:
        result = RollbackResult(self.path)
        txns = [t for t in self.transactions() if t.pending]
        if txn_ids is not None:
            txns = [t for t in txns if t.id in txn_ids]
        seen: set[str] = set()
        # Paths whose restore failed: their older writes and new parent directories must
        # wait for the next rollback, or that one would restore them out of order.
        blocked: list[str] = []
        for txn in reversed(txns):
            failed_before = len(result.errors)
            waiting = False
            for entry in reversed(txn.entries):
                if entry.restored:
                    continue
                if any(b == entry.path or b.startswith(entry.path + "/") for b in blocked):
                    waiting = True
                    continue
                if entry.kind == "file" and entry.done and entry.path not in seen:
                    # The newest completed write of a path should still be there.
                    with contextlib.suppress(OSError):
                        now = FileState.read(self.fs, entry.path)
                        if not now.exists or now.data != entry.new:
                            result.drifted.append(entry.path)
                seen.add(entry.path)
                try:
                    action = self._restore(entry)
                except OSError as err:
                    # A write that was refused (or a restore already made before a crash)
                    # may leave nothing to undo; only then is the error harmless.
                    if not self._matches_old(entry):
                        result.errors.append(f"{entry.path}: {err.strerror or err}")
                        blocked.append(entry.path)
                        continue
                    action = "unchanged"
                self._crash("undo")
                self._append({"type": "undone", "txn": txn.id, "seq": entry.seq})
                result.restored.append(Restored(entry.path, entry.stage, entry.label, action))
            if len(result.errors) == failed_before and not waiting:
                self._append({"type": "rolled-back", "txn": txn.id, "time": time.time()})
                result.transactions.append(txn.id)
        return result

    def _matches_old(self, entry: Entry) -> bool:
        """True when the path already holds exactly what it held before the entry."""
        try:
            now = FileState.read(self.fs, entry.path)
        except OSError:
            return False
        old = entry.old
        if not old.exists or not now.exists:
            return old.exists == now.exists
        if entry.kind == "knob":
            return now.data == old.data
        return now.data == old.data and now.mode == old.mode

    def _restore(self, entry: Entry) -> str:
        old = entry.old
        if entry.kind == "dir":
            with self.fs.parent(entry.path) as (dirfd, name):
                if old.exists:
                    if old.mode is not None:
                        fd = os.open(
                            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd
                        )
                        try:
                            os.fchmod(fd, old.mode)
                        finally:
                            os.close(fd)
                    return "restored"
                try:
                    os.rmdir(name, dir_fd=dirfd)
                except FileNotFoundError:
                    return "removed-dir"
                except OSError:
                    return "kept-dir"  # something else was put there since; never delete it
                self.fs.fsync_dir(dirfd)
                return "removed-dir"
        if entry.kind == "knob":
            if not old.exists:
                return "restored"
            data = old.data
            if entry.restore is not None and self._is_kernel_file(entry.path):
                data = entry.restore
            try:
                _write_direct(self.fs, entry.path, data)
            except FileNotFoundError:
                # The kernel no longer offers the value (CPU offlined, device removed), so
                # the setting is gone with it; failing here would block rollback forever.
                return "gone"
            return "restored"
        with self.fs.parent(entry.path) as (dirfd, name):
            _drop_own_tmp(dirfd, name)
            if not old.exists:
                try:
                    os.unlink(name, dir_fd=dirfd)
                except FileNotFoundError:
                    return "deleted"
                self.fs.fsync_dir(dirfd)
                return "deleted"
            _write_atomic(self.fs, dirfd, name, old.data, old.mode, old.uid, old.gid, crash=None)
        return "restored"


# A temp file is always new: a planted file or link at its name is refused, never followed.
_CREATE_EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _tmp_name(name: str) -> str:
    return f".{name}{TMP_SUFFIX}"


def _drop_own_tmp(dirfd: int, name: str) -> None:
    """Remove a temp file a crash at "tmp" left; a link there is not ours and stays."""
    tmp = _tmp_name(name)
    try:
        if stat.S_ISREG(os.stat(tmp, dir_fd=dirfd, follow_symlinks=False).st_mode):
            os.unlink(tmp, dir_fd=dirfd)
    except FileNotFoundError:
        pass


def _write_direct(fs: RootFS, host_path: str, data: bytes) -> None:
    # No O_CREAT: a kernel knob that does not exist cannot be created by writing it.
    fd = fs.open(host_path, os.O_WRONLY | os.O_TRUNC)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_atomic(
    fs: RootFS,
    dirfd: int,
    name: str,
    data: bytes,
    mode: int | None,
    uid: int | None,
    gid: int | None,
    crash: Journal | None,
) -> None:
    """Replace ``name`` in the directory ``dirfd`` through an exclusively created temp file.

    On any failure the temp file is removed, so nothing of ours is left behind.
    """
    tmp = _tmp_name(name)
    try:
        fd = os.open(tmp, _CREATE_EXCL, 0o600, dir_fd=dirfd)
    except FileExistsError:
        raise OSError(
            errno.EEXIST,
            f"{tmp} is in the way (a file or link agave-perf did not make); remove it",
        ) from None
    try:
        try:
            _write_all(fd, data)
            os.fchmod(fd, 0o644 if mode is None else mode)
            if uid is not None and gid is not None and (uid, gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, uid, gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        if crash is not None:
            crash._crash("tmp")
        os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dirfd)
        raise
    fs.fsync_dir(dirfd)


class Transaction:
    """The writes of one apply run; each is journaled before it is made."""

    def __init__(self, journal: Journal, txn_id: str) -> None:
        self.journal = journal
        self.id = txn_id
        self.count = 0

    def _intent(
        self,
        kind: Kind,
        host_path: str,
        old: FileState,
        new: bytes,
        new_mode: int | None,
        restore: bytes | None,
        stage: str,
        label: str,
    ) -> int:
        self.count += 1
        record: dict[str, Any] = {
            "type": "intent",
            "txn": self.id,
            "seq": self.count,
            "kind": kind,
            "path": host_path,
            "old": old.to_json(),
            "new": base64.b64encode(new).decode("ascii"),
            "new_mode": new_mode,
            "stage": stage,
            "label": label,
            "time": time.time(),
        }
        if restore is not None:
            record["restore"] = base64.b64encode(restore).decode("ascii")
        self.journal._append(record)
        self.journal._crash("intent")
        return self.count

    def _finish(self, seq: int, error: OSError | None, host_path: str) -> None:
        if error is None:
            self.journal._crash("write")
            self.journal._append({"type": "done", "txn": self.id, "seq": seq})
            return
        reason = error.strerror or str(error)
        self.journal._append({"type": "failed", "txn": self.id, "seq": seq, "error": reason})
        raise WriteFailed(host_path, reason)

    def _resolved(self, host_path: str, *, follow_last: bool) -> str:
        """Return the host path resolved inside the root, refusing one that would leave it."""
        # '..' would also make the journal unreadable, so rollback could not undo it.
        if not host_path.startswith("/") or ".." in host_path.split("/"):
            raise WriteFailed(host_path, f"it is outside the root {self.journal.root}")
        fs = self.journal.fs
        try:
            if follow_last:
                return fs.resolve(host_path)
            # The last component is not followed: a file that is a link is refused later.
            parent, _, name = host_path.rpartition("/")
            return f"{fs.resolve(parent)}/{name}" if parent else host_path
        except OSError as err:
            raise WriteFailed(host_path, err.strerror or str(err)) from None

    def _ensure_parents(self, host_path: str, stage: str) -> None:
        fs = self.journal.fs
        parts = [p for p in host_path.split("/") if p][:-1]
        missing: list[str] = []
        while parts:
            directory = "/" + "/".join(parts)
            if fs.exists(directory):
                break
            missing.append(directory)
            parts.pop()
        for directory in reversed(missing):
            seq = self._intent("dir", directory, FileState(False), b"", 0o755, None, stage, "mkdir")
            error: OSError | None = None
            try:
                with fs.parent(directory) as (dirfd, name):
                    os.mkdir(name, 0o755, dir_fd=dirfd)
                    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
                    try:
                        os.fchmod(fd, 0o755)  # umask must not change what rollback expects
                    finally:
                        os.close(fd)
                    fs.fsync_dir(dirfd)
            except OSError as err:
                error = err
            self._finish(seq, error, directory)

    def write_file(
        self, host_path: str, data: bytes, *, mode: int | None = None, stage: str, label: str
    ) -> None:
        """Replace a regular file atomically (creating it and its parents when absent)."""
        target = self._resolved(host_path, follow_last=False)
        fs = self.journal.fs
        try:
            is_link = stat.S_ISLNK(fs.lstat(target).st_mode)
        except FileNotFoundError:
            is_link = False
        except OSError as err:
            raise WriteFailed(host_path, err.strerror or str(err)) from None
        if is_link:
            # Replacing a link with a file would change what else reads it; refuse instead.
            raise WriteFailed(
                host_path, f"it is a symlink to {fs.readlink(target)}; edit the target yourself"
            )
        self._ensure_parents(target, stage)
        try:
            old = FileState.read(fs, target)
        except OSError as err:
            raise WriteFailed(host_path, err.strerror or str(err)) from None
        new_mode = mode if mode is not None else (old.mode if old.exists else 0o644)
        seq = self._intent("file", target, old, data, new_mode, None, stage, label)
        error: OSError | None = None
        try:
            with fs.parent(target) as (dirfd, name):
                _write_atomic(fs, dirfd, name, data, new_mode, old.uid, old.gid, self.journal)
        except OSError as err:
            error = err
        self._finish(seq, error, host_path)

    def write_knob(
        self, host_path: str, data: bytes, *, restore: bytes, stage: str, label: str
    ) -> None:
        """Write a kernel value (``/proc/sys``, ``/sys``) in place; ``restore`` undoes it."""
        target = self._resolved(host_path, follow_last=True)
        try:
            old = FileState.read(self.journal.fs, target)
        except OSError as err:
            raise WriteFailed(host_path, err.strerror or str(err)) from None
        if not old.exists:
            raise WriteFailed(host_path, "no such file (the kernel does not offer this setting)")
        seq = self._intent("knob", target, old, data, None, restore, stage, label)
        error: OSError | None = None
        try:
            _write_direct(self.journal.fs, target, data)
        except OSError as err:
            error = err
        self._finish(seq, error, host_path)
