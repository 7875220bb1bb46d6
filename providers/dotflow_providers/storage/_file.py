"""`FileStore`: checkpoints as files, written atomically and crash-safely."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import re
import secrets
import stat
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path

from .._errors import FolderAtKey, PreconditionFailed, StoreError
from ._base import store_url

_TMP_PREFIX = ".tmp-"
_CAS_LOCK = ".dotflow-cas.lock"
#: a key part that is empty, "." or "..", or a temporary file's name (one search, not a loop)
_BAD_PART = re.compile(r"(?:^|/)(?:\.{1,2}(?:/|$)|/|$|" + re.escape(_TMP_PREFIX) + ")")

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_NOFOLLOW = _DIR | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO planted under a key must not hang the reader.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_Refuse = Callable[[str], StoreError]

_ADVICE = {
    errno.EACCES: "check that this process may read and write that folder",
    errno.EPERM: "check that this process may read and write that folder",
    errno.EROFS: "the filesystem is read-only: point the store at a writable folder",
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is used up: free some space",
    errno.ENAMETOOLONG: "the key is too long for this filesystem: use a shorter workflow id "
    "or step name",
    errno.EISDIR: "a folder stands where the checkpoint file belongs: remove it",
    errno.ENOTDIR: "a file stands where a folder belongs: remove it",
}


def _etag(st: os.stat_result) -> str:
    # A rename keeps the inode and mtime of the temp file, and every write makes a new inode,
    # so this changes with every put without hashing the content.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _scan(folder: int, rel: str, prefix: str, keys: list[str], refuse: _Refuse) -> None:
    """Collect the keys under the open `folder` (closed here); a link where a key could be is
    refused, as a read through it would be."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(_TMP_PREFIX) or (not rel and name == _CAS_LOCK):
                    continue
                key = rel + name
                below = key + "/"
                if entry.is_dir(follow_symlinks=False):
                    if not (below.startswith(prefix) or prefix.startswith(below)):
                        continue  # no key under it can match: do not descend
                    try:
                        child = os.open(name, _DIR_NOFOLLOW, dir_fd=folder)
                    except (FileNotFoundError, NotADirectoryError):
                        continue  # removed, or swapped for a link, since it was listed
                    _scan(child, below, prefix, keys, refuse)
                elif entry.is_file(follow_symlinks=False):
                    if key.startswith(prefix):
                        keys.append(key)
                elif entry.is_symlink() and (key.startswith(prefix) or prefix.startswith(below)):
                    raise refuse(key)
    finally:
        os.close(folder)


def _name_max(folder: str) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):  # not reported: the common limit
        return 255


def _read_all(fd: int, size: int) -> bytes:
    """The `size` bytes of the file open at `fd` (one read in the common case)."""
    data = os.read(fd, size)
    while len(data) < size:  # a short read (signals, network file systems)
        more = os.read(fd, size - len(data))
        if not more:
            break  # truncated under us: the checksum or the parser says so
        data += more
    return data


class FileStore:
    """Keeps checkpoints as files under `path`, one file per key.

    Every write goes to a unique temp file in the target directory, is flushed and fsync'd,
    then renamed over the key (or hard-linked, for create-only writes, which fails if the key
    exists) and the directory is fsync'd. A crash therefore leaves the old or the new content,
    never a torn file. `durable=False` skips the fsyncs: faster, still atomic, but a power cut
    may lose recent writes. Compare-and-swap writes hold an `flock` on the store so they are
    atomic across processes on one host; on network filesystems, check that `flock` works.

    The store never follows a symbolic link below `path` (`path` itself may be one): folders
    are opened from the root with `O_NOFOLLOW`, files are opened, created, renamed and deleted
    relative to their folder, so a link planted under the root cannot send a read, write or
    delete outside it. Such a link is refused with `StoreError`, and `list` skips it.
    """

    blocking = True  # disk I/O: the async engine calls it from a worker thread
    #: folders are opened one by one (relative to their parent), so no limit on the whole path
    max_key_bytes: int | None = None

    def __init__(self, path: str | os.PathLike[str], durable: bool = True) -> None:
        self.root = Path(path).expanduser().absolute()
        self.durable = durable
        #: reopens this store: `store_from_url` percent-decodes the path and reads `durable`
        self.url = store_url(
            "file://" + urllib.parse.quote(os.fsencode(self.root)),  # any bytes of a name
            durable=None if durable else "false",
        )
        self._root = str(self.root)
        #: folder path -> (st_dev, st_ino) of the folder found there by a link-free walk
        self._verified: dict[str, tuple[int, int]] = {}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create checkpoint folder {self.root}: {exc}") from exc
        #: each part of a key is a file or folder name: the filesystem's NAME_MAX (255 bytes on
        #: most, less on some, such as eCryptfs)
        self.max_key_part_bytes: int | None = _name_max(self._root)

    def _split(self, key: str) -> tuple[list[str], str]:
        parts = key.split("/")
        if not key or "\0" in key or _BAD_PART.search(key) or key == _CAS_LOCK:
            raise StoreError(f"key {key!r} cannot name a file: use non-empty parts without '..'")
        return parts[:-1], parts[-1]

    def _error(self, operation: str, key: str, exc: OSError) -> StoreError:
        advice = _ADVICE.get(exc.errno or 0, "check the folder and its permissions")
        return StoreError(
            f"FileStore {self._root} could not {operation} {key!r}: {exc.strerror or exc}; {advice}"
        )

    def _link_refused(self, operation: str, key: str, where: str) -> StoreError:
        return StoreError(
            f"FileStore {self._root} refused to {operation} {key!r}: {where!r} is a symbolic "
            "link, and checkpoints never follow links out of their folder; replace it with a "
            "real folder or file"
        )

    def _open_dir(self, parts: list[str], key: str, operation: str, create: bool) -> int | None:
        """An open fd of the folder `parts` below the root, reached without following a link.

        The hot path opens the folder by path and checks that it is the very folder an
        earlier link-free walk found there (same device and inode): a link planted since
        leads elsewhere and fails the check. Only a folder not seen before costs the walk.
        """
        path = os.path.join(self._root, *parts)
        try:
            fd = os.open(path, _DIR)
        except OSError:
            fd = -1  # missing, or a link loop: the walk tells which
        if fd >= 0:
            st = os.fstat(fd)
            if self._verified.get(path) == (st.st_dev, st.st_ino):
                return fd
            os.close(fd)
        walked = self._walk(parts, key, operation, create)
        if walked is not None:
            st = os.fstat(walked)
            self._verified[path] = (st.st_dev, st.st_ino)
        return walked

    def _walk(self, parts: list[str], key: str, operation: str, create: bool) -> int | None:
        try:
            fd = os.open(self._root, _DIR)  # the root itself may be a link: the user chose it
        except FileNotFoundError:
            if not create:
                return None
            os.makedirs(self._root, exist_ok=True)
            fd = os.open(self._root, _DIR)
        try:
            for depth, part in enumerate(parts):
                try:
                    child = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass  # another writer made it: open it below like any folder
                    else:
                        if self.durable:
                            os.fsync(fd)  # the new folder's entry survives a power cut
                    child = os.open(part, _DIR_NOFOLLOW, dir_fd=fd)
                except NotADirectoryError:
                    where = "/".join(parts[: depth + 1])
                    if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise self._link_refused(operation, key, where) from None
                    if not create:
                        os.close(fd)
                        return None  # a file where a folder would be: no key below it
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read(self, key: str) -> tuple[bytes, str] | None:
        reads = self.get_many_versioned((key,))  # the one read path, for one key
        try:
            return next(reads)
        finally:
            reads.close()  # its folder is closed now, not when the generator is collected

    def _read_in(self, folder: int, name: str, key: str) -> tuple[bytes, str] | None:
        """The file `name` in the open `folder` (the document `key`) and its version."""
        try:
            fd = os.open(name, _READ, dir_fd=folder)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._link_refused("read", key, key) from None
            raise
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise FolderAtKey(
                    key, f"{os.path.join(self._root, key)} is a directory, not a file"
                )
            if not stat.S_ISREG(st.st_mode):
                raise StoreError(
                    f"FileStore {self._root}: {key!r} is not a regular file; remove it"
                )
            # Files are never changed in place (every write renames a new inode over the
            # key), so the size and version read before the data still describe it.
            data = _read_all(fd, st.st_size)
        finally:
            os.close(fd)
        return data, _etag(st)

    def get_many_versioned(
        self, keys: Iterable[str]
    ) -> Generator[tuple[bytes, str] | None, None, None]:
        """`get_versioned` of each key in turn, opening each folder once for a run of keys in
        it (a resume reads every step document of one folder)."""
        folder, at = -1, None
        try:
            for key in keys:
                parts, name = self._split(key)
                try:
                    if parts != at:
                        if folder >= 0:
                            os.close(folder)
                            folder = -1
                        at = parts
                        opened = self._open_dir(parts, key, "read", create=False)
                        folder = -1 if opened is None else opened
                    yield None if folder < 0 else self._read_in(folder, name, key)
                except OSError as exc:
                    raise self._error("read", key, exc) from exc
        finally:
            if folder >= 0:
                os.close(folder)

    def get(self, key: str) -> bytes | None:
        found = self._read(key)
        return None if found is None else found[0]

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        return self._read(key)

    def _write_temp(self, folder: int, data: bytes) -> tuple[str, str]:
        while True:
            tmp = f"{_TMP_PREFIX}{secrets.token_hex(8)}"
            try:
                fd = os.open(tmp, _TEMP, 0o600, dir_fd=folder)
                break
            except FileExistsError:
                continue
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
            return tmp, _etag(os.fstat(fd))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _cas_lock(self) -> Iterator[None]:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(self._root, _CAS_LOCK), flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def put(
        self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False
    ) -> str:
        parts, name = self._split(key)
        try:
            folder = self._open_dir(parts, key, "write", create=True)
            assert folder is not None  # created when missing
            try:
                return self._put(folder, key, name, data, if_match, if_none_match)
            finally:
                os.close(folder)
        except OSError as exc:
            raise self._error("write", key, exc) from exc

    def _put(
        self,
        folder: int,
        key: str,
        name: str,
        data: bytes,
        if_match: str | None,
        if_none_match: bool,
    ) -> str:
        # Every name below is relative to the folder's fd and no call follows a link: a link
        # planted at `name` is replaced (rename) or counts as an existing key (link, stat).
        tmp, etag = self._write_temp(folder, data)
        try:
            if if_none_match:
                try:
                    # atomic create-only: fails if the key exists
                    os.link(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
                except FileExistsError:
                    existing = os.stat(name, dir_fd=folder, follow_symlinks=False)
                    if stat.S_ISDIR(existing.st_mode):
                        raise FolderAtKey(
                            key, f"{os.path.join(self._root, key)} is a directory, not a file"
                        ) from None
                    raise PreconditionFailed(key, "it already exists") from None
                os.unlink(tmp, dir_fd=folder)
            elif if_match is not None:
                with self._cas_lock():
                    try:
                        current = _etag(os.stat(name, dir_fd=folder, follow_symlinks=False))
                    except FileNotFoundError:
                        raise PreconditionFailed(key, "it does not exist") from None
                    if current != if_match:
                        raise PreconditionFailed(key, "it changed since it was read")
                    os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            else:
                os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            if self.durable:
                os.fsync(folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
        return etag

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        parts, name = self._split(key)
        try:
            folder = self._open_dir(parts, key, "delete", create=False)
            if folder is None:
                return
            try:
                if if_match is None:
                    os.unlink(name, dir_fd=folder)
                else:
                    with self._cas_lock():
                        current = os.stat(name, dir_fd=folder, follow_symlinks=False)
                        if _etag(current) != if_match:
                            raise PreconditionFailed(key, "it changed since it was read")
                        os.unlink(name, dir_fd=folder)
            except FileNotFoundError:
                return
            finally:
                os.close(folder)
        except OSError as exc:
            raise self._error("delete", key, exc) from exc

    def list(self, prefix: str) -> Iterator[str]:
        head, _, _ = prefix.rpartition("/")
        parts = head.split("/") if head else []
        if any(p in ("", ".", "..") or p.startswith(_TMP_PREFIX) for p in parts):
            return iter([])  # no key lives there, and '..' must not leave the root
        keys: list[str] = []
        try:
            folder = self._open_dir(parts, prefix, "list", create=False)
            if folder is not None:
                refuse = functools.partial(self._link_refused, "list", prefix)
                _scan(folder, f"{head}/" if head else "", prefix, keys, refuse)
        except OSError as exc:
            raise self._error("list", prefix, exc) from exc
        return iter(sorted(keys))

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r}, durable={self.durable})"
