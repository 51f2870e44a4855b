"""Checking and unpacking uploaded bundles (tar.gz archives of an app's code).

Everything is checked before anything is created: the archive must be a valid gzip'd
tar of regular files and directories only, no entry may leave the bundle directory,
the unpacked size is capped, and the entrypoint's file must be in it.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings

from dashboard.controlplane.errors import BadRequest, TooLarge
from dashboard.sdk.loader import EntrypointError, parse_entrypoint


@dataclass(frozen=True)
class Bundle:
    data: bytes
    sha256: str
    size: int
    unpacked_size: int
    files: frozenset[str]


def _entry_path(member: tarfile.TarInfo) -> PurePosixPath:
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BadRequest(
            f"bundle entry {name!r} is an absolute path; entries must be relative to the bundle",
            details={"entry": name},
            code="bad_bundle",
        )
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise BadRequest(
            f"bundle entry {name!r} escapes the bundle directory ('..' is not allowed)",
            details={"entry": name},
            code="bad_bundle",
        )
    return PurePosixPath(*[p for p in path.parts if p not in ("", ".")])


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return "not a regular file or directory"


def check(data: bytes, entrypoint: str) -> Bundle:
    """Return the checked bundle, or raise a precise error naming what is wrong."""
    if len(data) > settings.MAX_BUNDLE_BYTES:
        raise TooLarge(
            f"bundle is {len(data)} bytes; the most allowed is {settings.MAX_BUNDLE_BYTES}",
            details={"size": len(data), "max": settings.MAX_BUNDLE_BYTES},
        )
    try:
        rel_path, _ = parse_entrypoint(entrypoint)
    except EntrypointError as exc:
        raise BadRequest(
            str(exc), details={"entrypoint": entrypoint}, code="bad_entrypoint"
        ) from None
    files: set[str] = set()
    unpacked = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                path = _entry_path(member)
                if not (member.isfile() or member.isdir()):
                    raise BadRequest(
                        f"bundle entry {member.name!r} is {_kind(member)}; only regular files "
                        "and directories are allowed",
                        details={"entry": member.name},
                        code="bad_bundle",
                    )
                if member.isfile():
                    files.add(str(path))
                    unpacked += member.size
                if unpacked > settings.MAX_BUNDLE_UNPACKED_BYTES:
                    raise TooLarge(
                        "bundle unpacks to more than "
                        f"{settings.MAX_BUNDLE_UNPACKED_BYTES} bytes, the most allowed",
                        details={"max_unpacked": settings.MAX_BUNDLE_UNPACKED_BYTES},
                    )
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BadRequest(
            f"bundle is not a valid tar.gz archive: {exc}", code="bad_bundle"
        ) from None
    if str(PurePosixPath(rel_path)) not in files:
        raise BadRequest(
            f"entrypoint file {rel_path!r} is not in the bundle",
            details={"entrypoint": entrypoint, "files": sorted(files)[:20]},
            code="bad_entrypoint",
        )
    return Bundle(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        unpacked_size=unpacked,
        files=frozenset(files),
    )


def unpack(bundle: Bundle, dest: Path) -> None:
    """Unpack a checked bundle. The 'data' filter re-checks every entry as a second line."""
    dest.mkdir(parents=True, exist_ok=False)
    try:
        with tarfile.open(fileobj=io.BytesIO(bundle.data), mode="r:gz") as tar:
            tar.extractall(dest, filter=_private_data)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _private_data(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """The 'data' filter, then the owner's permission bits only: tarfile sets the modes
    the archive carries, which the umask (settings.py) would not narrow."""
    member = tarfile.data_filter(member, path)
    return member if member.mode is None else member.replace(mode=member.mode & 0o700)


def remove(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
