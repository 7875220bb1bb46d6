"""`FileStore`: checkpoints as files, written atomically and crash-safely."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .._errors import PreconditionFailed, StoreError

_TMP_PREFIX = ".tmp-"
_CAS_LOCK = ".dotflow-cas.lock"


def _etag(st: os.stat_result) -> str:
    # A rename keeps the inode and mtime of the temp file, and every write makes a new inode,
    # so this changes with every put without hashing the content.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class FileStore:
    """Keeps checkpoints as files under `path`, one file per key.

    Every write goes to a unique temp file in the target directory, is flushed and fsync'd,
    then renamed over the key (or hard-linked, for create-only writes, which fails if the key
    exists) and the directory is fsync'd. A crash therefore leaves the old or the new content,
    never a torn file. `durable=False` skips the fsyncs: faster, still atomic, but a power cut
    may lose recent writes. Compare-and-swap writes hold an `flock` on the store so they are
    atomic across processes on one host; on network filesystems, check that `flock` works.
    """

    def __init__(self, path: str | os.PathLike[str], durable: bool = True) -> None:
        self.root = Path(path).expanduser().absolute()
        self.durable = durable
        self.url = f"file://{self.root}"
        self._dirs: set[str] = set()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create checkpoint folder {self.root}: {exc}") from exc

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if (
            not key
            or "\0" in key
            or any(p in ("", ".", "..") or p.startswith(_TMP_PREFIX) for p in parts)
        ):
            raise StoreError(f"key {key!r} cannot name a file: use non-empty parts without '..'")
        return os.path.join(self.root, *parts)

    def get(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read(), _etag(os.fstat(f.fileno()))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def _write_temp(self, directory: str, data: bytes) -> tuple[str, str]:
        if directory not in self._dirs:
            os.makedirs(directory, exist_ok=True)
            self._dirs.add(directory)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
            return tmp, _etag(os.fstat(fd))
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _sync_dir(self, directory: str) -> None:
        if self.durable:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def _cas_lock(self) -> Iterator[None]:
        fd = os.open(os.path.join(self.root, _CAS_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            tmp, etag = self._write_temp(directory, data)
        except OSError as exc:
            raise StoreError(f"cannot write checkpoint {key!r} under {self.root}: {exc}") from exc
        try:
            if if_none_match:
                try:
                    os.link(tmp, path)  # atomic create-only: fails if the key exists
                except FileExistsError:
                    raise PreconditionFailed(key, "it already exists") from None
                os.unlink(tmp)
            elif if_match is not None:
                with self._cas_lock():
                    try:
                        current = _etag(os.stat(path))
                    except FileNotFoundError:
                        raise PreconditionFailed(key, "it does not exist") from None
                    if current != if_match:
                        raise PreconditionFailed(key, "it changed since it was read")
                    os.replace(tmp, path)
            else:
                os.replace(tmp, path)
            self._sync_dir(directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return etag

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        try:
            if if_match is None:
                os.unlink(path)
            else:
                with self._cas_lock():
                    if _etag(os.stat(path)) != if_match:
                        raise PreconditionFailed(key, "it changed since it was read")
                    os.unlink(path)
        except FileNotFoundError:
            return

    def list(self, prefix: str) -> Iterator[str]:
        head, _, _ = prefix.rpartition("/")
        base = os.path.join(self.root, *head.split("/")) if head else str(self.root)
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(_TMP_PREFIX)]
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for name in filenames:
                if name.startswith(_TMP_PREFIX) or (not rel and name == _CAS_LOCK):
                    continue
                key = rel + name
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r}, durable={self.durable})"
