"""Checking and unpacking uploaded bundles (tar.gz archives of an app's code).

A bundle is read once, as a stream through gzip and tar, and unpacked as it is read into
a private directory under the var dir (`incoming/`), before the deploy takes the app's
lock or opens a transaction. Every limit is checked before the bytes it guards are
decompressed or written: the number of entries, each entry's name and header size, and
the total unpacked size. Only regular files and directories are allowed, no entry may
leave the bundle directory, and the entrypoint's file must be in it. The deploy then
moves the checked directory into `bundles/<revision id>` with one rename (`install`);
on any refusal the directory is removed (`discard`) and nothing else was created.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings

from dashboard.controlplane.errors import BadRequest, TooLarge
from dashboard.sdk.loader import EntrypointError, parse_entrypoint

# Each path component is a file name on disk: 255 bytes is Linux's NAME_MAX, so a longer
# one could never be unpacked. Fixed, not a setting: it cannot usefully be raised.
MAX_COMPONENT_BYTES = 255
# Global PAX headers (type 'g', e.g. git archive's commit id) are kept by tarfile for the
# rest of the archive and copied into every later entry; a handful is all real tools write.
MAX_GLOBAL_PAX_KEYS = 64
# Header types whose data tarfile reads whole into memory before it returns the entry.
_EXTENSIONS = {
    tarfile.XHDTYPE: "PAX",
    tarfile.XGLTYPE: "global PAX",
    tarfile.SOLARIS_XHDTYPE: "PAX",
    tarfile.GNUTYPE_LONGNAME: "GNU long-name",
    tarfile.GNUTYPE_LONGLINK: "GNU long-link",
}


@dataclass(frozen=True)
class Bundle:
    """A checked bundle, unpacked in its private staging directory `path`."""

    path: Path
    sha256: str
    size: int
    unpacked_size: int
    files: frozenset[str]


def stage(upload: BinaryIO, entrypoint: str) -> Bundle:
    """Check and unpack an uploaded bundle into a private staging directory.

    Raise a precise error naming what is wrong (and leave nothing behind), or return the
    bundle; the caller then either `install`s it or `discard`s it.
    """
    size = upload.seek(0, os.SEEK_END)
    if size > settings.MAX_BUNDLE_BYTES:
        raise TooLarge(
            f"bundle is {size} bytes; the most allowed is {settings.MAX_BUNDLE_BYTES}",
            details={"size": size, "max": settings.MAX_BUNDLE_BYTES},
        )
    try:
        rel_path, _ = parse_entrypoint(entrypoint)
    except EntrypointError as exc:
        raise BadRequest(
            str(exc), details={"entrypoint": entrypoint}, code="bad_entrypoint"
        ) from None
    upload.seek(0)
    sha256 = hashlib.file_digest(upload, "sha256").hexdigest()
    # Two passes over the stream: the first checks every entry and writes nothing, so a
    # refused bundle (a many-files bomb above all) costs no disk work; the second unpacks
    # what the first accepted. Decompressing twice is cheap next to creating files.
    files, unpacked = _read_archive(upload, None)
    if str(PurePosixPath(rel_path)) not in files:
        raise BadRequest(
            f"entrypoint file {rel_path!r} is not in the bundle",
            details={"entrypoint": entrypoint, "files": sorted(files)[:20]},
            code="bad_entrypoint",
        )
    incoming = settings.VAR_DIR / "incoming"
    incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=incoming))  # mkdtemp makes it 0700.
    try:
        _read_archive(upload, path)
    except BaseException:
        remove(path)
        raise
    return Bundle(
        path=path, sha256=sha256, size=size, unpacked_size=unpacked, files=frozenset(files)
    )


def install(bundle: Bundle, dest: Path) -> None:
    """Move a staged bundle to its revision's directory: one rename, so it is quick enough
    to do under the app's lock, and the directory appears whole or not at all."""
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.rename(bundle.path, dest)


def discard(bundle: Bundle) -> None:
    """Remove a staged bundle that was not installed (nothing to do once it was)."""
    remove(bundle.path)


def remove(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)


def sweep_incoming(max_age: float) -> int:
    """Remove staging directories older than `max_age` seconds and return how many.

    A web worker killed between `stage` and `install` or `discard` leaves its directory
    behind; nothing else ever would. A live upload is staged and installed within one
    request, so anything much older than the longest request is such a leftover.
    """
    incoming = settings.VAR_DIR / "incoming"
    cutoff = time.time() - max_age
    removed = 0
    try:
        entries = list(os.scandir(incoming))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue  # Installed or discarded since the listing.
        if entry.is_dir(follow_symlinks=False):
            remove(Path(entry.path))
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed += 1
    return removed


# -- reading the stream ---------------------------------------------------------------


class _HeaderTooLarge(Exception):
    """Raised by _TarStream, inside tarfile, before the oversized header is read."""

    def __init__(self, block: bytes, start: bytes):
        super().__init__("header too large")
        self.block = block  # The last 512-byte header block read: says which extension.
        self.start = start  # The first bytes of the refused data: may hold the entry's name.


class _TarStream:
    """The decompressed tar stream, as tarfile reads it.

    tarfile reads a PAX or GNU long-name header's data whole before it returns the entry,
    and follows a chain of such headers; `budget`, set while tarfile parses one entry's
    headers, refuses a read that would go past it before those bytes are decompressed.
    gzip decompresses only what is read, so memory stays bounded by the budget.
    """

    def __init__(self, raw: gzip.GzipFile):
        self._raw = raw
        self.budget: int | None = None
        self._block = b""

    def read(self, size: int = -1) -> bytes:
        if self.budget is not None:
            if size < 0 or size > self.budget:
                raise _HeaderTooLarge(self._block, self._raw.read(tarfile.BLOCKSIZE))
            self.budget -= size
        data = self._raw.read(size)
        if size == tarfile.BLOCKSIZE:
            self._block = data
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def _read_archive(upload: BinaryIO, dest: Path | None) -> tuple[set[str], int]:
    """Read the archive, checking every entry; unpack it into `dest` unless that is None.

    Return the bundle's files and their total size.
    """
    upload.seek(0)
    with gzip.GzipFile(fileobj=upload, mode="rb") as raw:  # Leaves `upload` open.
        return _read_tar(_TarStream(raw), dest)


def _read_tar(stream: _TarStream, dest: Path | None) -> tuple[set[str], int]:
    tree: dict[str, str] = {}  # Normalised path -> "file", "dir" or "parent" (implied).
    files: set[str] = set()
    unpacked = 0
    count = 0
    previous = ""
    # Opening reads the first entry's headers, so the header budget applies to it too.
    tar = _read(
        partial(
            tarfile.open, fileobj=stream, mode="r:", encoding="utf-8", errors="surrogateescape"
        ),
        stream,
        1,
        previous,
    )
    with tar:
        while (member := _next(tar, stream, count + 1, previous)) is not None:
            count += 1
            if count > settings.MAX_BUNDLE_MEMBERS:
                raise BadRequest(
                    f"bundle has more than {settings.MAX_BUNDLE_MEMBERS} entries, the most "
                    "allowed (SWITCHBOARD_MAX_BUNDLE_MEMBERS); refused at "
                    f"{_shown(member.name)}",
                    details={"entry": _plain(member.name), "max": settings.MAX_BUNDLE_MEMBERS},
                    code="bad_bundle",
                )
            if len(tar.pax_headers) > MAX_GLOBAL_PAX_KEYS:
                raise _bad(
                    member, f"follows global PAX headers of more than {MAX_GLOBAL_PAX_KEYS} keys"
                )
            # tarfile keeps every entry it read; its PAX data is not needed after this.
            member.pax_headers = {}
            previous = member.name
            path = _entry_path(member)
            _check_kind(member)
            key = str(path)
            if not path.parts:
                if member.isdir():
                    continue  # "./", as `tar -C dir .` writes it: the bundle directory itself.
                raise _bad(member, "names the bundle directory itself")
            parents = _check_tree(member, path, tree)
            if member.isfile():
                if unpacked + member.size > settings.MAX_BUNDLE_UNPACKED_BYTES:
                    raise TooLarge(
                        "bundle unpacks to more than "
                        f"{settings.MAX_BUNDLE_UNPACKED_BYTES} bytes, the most allowed "
                        f"(SWITCHBOARD_MAX_BUNDLE_UNPACKED_BYTES); refused at {_shown(member.name)}",
                        details={
                            "entry": _plain(member.name),
                            "max_unpacked": settings.MAX_BUNDLE_UNPACKED_BYTES,
                        },
                    )
                unpacked += member.size
                files.add(key)
            if dest is not None:
                # Parents are made here, 0700, rather than by tarfile, which would make
                # them with the process's default mode.
                for parent in parents:
                    (dest / parent).mkdir(mode=0o700)
                _extract(tar, member, dest)
    return files, unpacked


def _next(
    tar: tarfile.TarFile, stream: _TarStream, index: int, previous: str
) -> tarfile.TarInfo | None:
    return _read(tar.next, stream, index, previous)


def _read[T](call: Callable[[], T], stream: _TarStream, index: int, previous: str) -> T:
    """Run a tarfile call that parses the next entry's headers, within the header budget."""
    stream.budget = settings.MAX_BUNDLE_HEADER_BYTES
    try:
        return call()
    except _HeaderTooLarge as exc:
        raise _header_refusal(exc, index, previous) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        # EOFError: a truncated gzip stream; ValueError: tarfile's parsers on bad numbers.
        after = f" (after {_shown(previous)})" if previous else ""
        raise BadRequest(
            f"bundle is not a valid tar.gz archive: {exc}{after}", code="bad_bundle"
        ) from None
    finally:
        stream.budget = None


def _header_refusal(exc: _HeaderTooLarge, index: int, previous: str) -> BadRequest:
    limit = settings.MAX_BUNDLE_HEADER_BYTES
    what = f"more than {limit} bytes of headers (a chain of extended headers)"
    name = ""
    try:
        header = tarfile.TarInfo.frombuf(exc.block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        header = None
    if header is not None and header.type in _EXTENSIONS:
        if header.size > limit:
            what = f"a {header.size}-byte {_EXTENSIONS[header.type]} header"
        # Name the entry by what it would have been called, when its start says so.
        if header.type == tarfile.GNUTYPE_LONGNAME:
            name = exc.start.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
        elif match := re.match(rb"\d+ path=([^\n]*)\n", exc.start):
            name = match.group(1).decode("utf-8", "backslashreplace")
    # Only the start of the name was read: show at most that much.
    where = (_shown(name[:100]) + ("…" if len(name) >= 100 else "")) if name else f"#{index}"
    after = f" (after {_shown(previous)})" if previous else " (the first)"
    return BadRequest(
        f"bundle entry {where}{after} has {what}; the most allowed for one entry's headers "
        f"is {limit} bytes (SWITCHBOARD_MAX_BUNDLE_HEADER_BYTES)",
        details={"entry": _plain(name) if name else index, "max_header": limit},
        code="bad_bundle",
    )


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    try:
        tar.extract(member, dest, filter=_private)
    except tarfile.FilterError as exc:
        # A second line behind the checks above: tarfile's own 'data' filter refused it.
        raise _bad(member, f"is refused: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BadRequest(
            f"bundle is not a valid tar.gz archive: {exc} (at {_shown(member.name)})",
            details={"entry": _plain(member.name)},
            code="bad_bundle",
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ):
            raise _bad(member, f"cannot be unpacked: {exc.strerror}") from None
        raise  # The disk or the var dir is at fault, not the bundle: a server error.


def _private(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's 'data' filter, then modes private to the service user (0700 / 0600)."""
    member = tarfile.data_filter(member, dest)
    executable = member.isfile() and member.mode is not None and member.mode & 0o100
    return member.replace(mode=0o700 if member.isdir() or executable else 0o600, deep=False)


# -- one entry ------------------------------------------------------------------------


def _shown(name: str, limit: int = 100) -> str:
    """A name as a message shows it: quoted as repr does, undecodable bytes as \\xNN (not
    as the surrogates tarfile decodes them to), and shortened when long."""
    shown = repr(name[:limit])
    if len(name) > limit:
        shown += f"… ({len(name.encode('utf-8', 'surrogateescape'))} bytes)"
    return re.sub(r"\\udc([89a-f][0-9a-f])", r"\\x\1", shown)


def _plain(name: str, limit: int = 100) -> str:
    """A name for an answer's details: text, undecodable bytes as \\xNN, shortened."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text[:limit] + ("…" if len(text) > limit else "")


def _bad(member: tarfile.TarInfo, what: str) -> BadRequest:
    return BadRequest(
        f"bundle entry {_shown(member.name)} {what}",
        details={"entry": _plain(member.name)},
        code="bad_bundle",
    )


def _entry_path(member: tarfile.TarInfo) -> PurePosixPath:
    name = member.name
    if "\0" in name:
        raise _bad(member, "contains a NUL byte; names must not")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(member, "is not valid UTF-8; names must be") from None
    if len(encoded) > settings.MAX_BUNDLE_NAME_BYTES:
        raise _bad(
            member,
            f"has a name of {len(encoded)} bytes; the most allowed is "
            f"{settings.MAX_BUNDLE_NAME_BYTES} (SWITCHBOARD_MAX_BUNDLE_NAME_BYTES)",
        )
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _bad(member, "is an absolute path; entries must be relative to the bundle")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise _bad(member, "escapes the bundle directory ('..' is not allowed)")
    for part in path.parts:
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise _bad(
                member,
                f"has a path component of {len(part.encode())} bytes; the most allowed is "
                f"{MAX_COMPONENT_BYTES}",
            )
    return PurePosixPath(*[p for p in path.parts if p not in ("", ".")])


def _check_kind(member: tarfile.TarInfo) -> None:
    if member.issparse():
        raise _bad(member, "is a sparse file; only regular files and directories are allowed")
    if not (member.isfile() or member.isdir()):
        raise _bad(member, f"is {_kind(member)}; only regular files and directories are allowed")


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link (to {_shown(member.linkname)})"
    if member.islnk():
        return f"a hard link (to {_shown(member.linkname)})"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return "not a regular file or directory"


def _check_tree(member: tarfile.TarInfo, path: PurePosixPath, tree: dict[str, str]) -> list[str]:
    """Refuse an entry that clashes with an earlier one; return its parent directories
    that no earlier entry made.

    Unpacking would otherwise fail half-way (a file where a directory is needed) or
    silently overwrite an earlier entry.
    """
    parents = [str(p) for p in reversed(path.parents) if p.parts]
    for parent in parents:
        if tree.get(parent) == "file":
            raise _bad(member, f"is inside {_shown(parent)}, which is a file earlier in the bundle")
    key = str(path)
    earlier = tree.get(key)
    if earlier in ("file", "dir"):
        if earlier != ("dir" if member.isdir() else "file"):
            raise _bad(member, "is both a file and a directory in the bundle")
        raise _bad(member, "appears more than once in the bundle")
    if earlier == "parent" and member.isfile():
        raise _bad(member, "is a file, but earlier entries are inside it as a directory")
    new = [parent for parent in parents if parent not in tree]
    for parent in new:
        tree[parent] = "parent"
    tree[key] = "dir" if member.isdir() else "file"
    return new
