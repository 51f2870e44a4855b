"""Bundle bombs and malformed entries, uploaded as real crafted archives through the
control API: each is refused with a 400 that names the entry (or the limit), quickly and
with bounded memory, and leaves nothing behind: no app, revision or operation row, and
no file under the var dir."""

# The control plane's fixtures are imported below so pytest finds them here; tests name
# them as parameters, which ruff would otherwise report as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import gzip
import io
import resource
import tarfile
import threading
import tracemalloc

import pytest
from django.conf import settings
from django.db import connections

from dashboard.controlplane.models import App, Operation, Revision
from tests.conftest import wait_until
from tests.controlplane.conftest import (  # noqa: F401 - fixtures are used by name
    ApiClient,
    _isolated,
    api_as,
    app_source,
    demo_app,
    deployer,
    make_user,
)

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
BOMB_BYTES = 256 * MB  # What the header asks the server to read into memory.
MEMORY_BOUND = 50 * MB  # Generous: a refused bomb costs a few hundred KB.


# -- crafting archives ------------------------------------------------------------------


def _header(name: str, type_: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = size
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _app_entry() -> bytes:
    source = app_source().encode()
    return _header("app.py", tarfile.REGTYPE, len(source)) + source + _pad(len(source))


def _extension_bomb(type_: bytes, head: bytes, filler: int, tail: bytes) -> bytes:
    """One extended header of `head` + `filler` x 'a' + `tail`, then app.py: streamed into
    gzip so that the test never holds the uncompressed bomb itself."""
    size = len(head) + filler + len(tail)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz:
        gz.write(_header("././@LongLink", type_, size) + head)
        chunk = b"a" * MB
        for start in range(0, filler, MB):
            gz.write(chunk[: min(MB, filler - start)])
        gz.write(tail + _pad(size) + _app_entry() + b"\0" * 2 * tarfile.BLOCKSIZE)
    return out.getvalue()


def _pax_record(keyword: str, value: str) -> bytes:
    payload = f" {keyword}={value}\n".encode()
    length = len(payload) + len(str(len(payload)))
    length = len(payload) + len(str(length))
    return str(length).encode() + payload


@pytest.fixture(scope="module")
def pax_bomb() -> bytes:
    # A PAX header whose path comes first, then a comment of 256 MB.
    path = _pax_record("path", "evil.py")
    total = BOMB_BYTES - len(path)
    prefix = f"{total} comment=".encode()
    return _extension_bomb(tarfile.XHDTYPE, path + prefix, total - len(prefix) - 1, b"\n")


@pytest.fixture(scope="module")
def gnu_bomb() -> bytes:
    # A GNU long name of 256 MB of 'a'.
    return _extension_bomb(tarfile.GNUTYPE_LONGNAME, b"", BOMB_BYTES - 1, b"\0")


def _many_files(count: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz:
        gz.write(_app_entry())
        for i in range(count):
            gz.write(_header(f"f{i}", tarfile.REGTYPE, 0))
        gz.write(b"\0" * 2 * tarfile.BLOCKSIZE)
    return out.getvalue()


def _tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """app.py, then the given entries."""
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=fmt, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        source = app_source().encode()
        info = tarfile.TarInfo("app.py")
        info.size = len(source)
        tar.addfile(info, io.BytesIO(source))
        for member, data in members:
            member.size = len(data) if member.isreg() else 0
            tar.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _entry(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "", **pax: str):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    info.pax_headers = pax
    return info


def _file(name: str, data: bytes = b"x = 1\n", **pax: str) -> tuple[tarfile.TarInfo, bytes]:
    return _entry(name, **pax), data


def _dir(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return _entry(name, tarfile.DIRTYPE), b""


# -- checks -----------------------------------------------------------------------------


def nothing_left() -> bool:
    files = [p for p in settings.VAR_DIR.rglob("*") if p.name not in ("incoming", "bundles")]
    return (
        not App.objects.exists()
        and not Revision.objects.exists()
        and not Operation.objects.exists()
        and files == []
    )


def refused(response, *fragments: str) -> str:
    assert response.status_code == 400, response.content
    message = response.json()["error"]["message"]
    for fragment in fragments:
        assert fragment in message
    return message


def deploy_measured(client: ApiClient, bundle: bytes):
    """Deploy, returning the answer and the peak memory the request allocated (traced by
    tracemalloc) and the growth of the process's peak RSS."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        response = client.deploy("bomb", bundle)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    return response, peak - base, rss_growth


# -- bombs ------------------------------------------------------------------------------


def test_a_pax_header_bomb_is_refused_naming_the_entry_with_bounded_memory(deployer, pax_bomb):
    assert len(pax_bomb) < 400 * 1024
    response, traced, rss = deploy_measured(deployer, pax_bomb)
    refused(
        response,
        "bundle entry 'evil.py' (the first)",
        f"a {BOMB_BYTES}-byte PAX header",
        "SWITCHBOARD_MAX_BUNDLE_HEADER_BYTES",
    )
    assert traced < MEMORY_BOUND
    assert rss < MEMORY_BOUND
    assert nothing_left()


def test_a_gnu_long_name_bomb_is_refused_naming_the_entry_with_bounded_memory(deployer, gnu_bomb):
    response, traced, rss = deploy_measured(deployer, gnu_bomb)
    message = refused(response, f"a {BOMB_BYTES}-byte GNU long-name header", "bundle entry 'aaaa")
    assert len(message) < 1000  # The name is shown shortened, not echoed whole.
    assert traced < MEMORY_BOUND
    assert rss < MEMORY_BOUND
    assert nothing_left()


def test_a_chain_of_small_pax_headers_is_refused_as_one_entrys_headers(deployer):
    record = _pax_record("comment", "x" * 400)
    one = _header("././@PaxHeader", tarfile.XHDTYPE, len(record)) + record + _pad(len(record))
    chain = one * 1000
    bundle = gzip.compress(_app_entry() + chain + _app_entry() + b"\0" * 1024)
    refused(
        deployer.deploy("bomb", bundle),
        "bundle entry #2 (after 'app.py') has more than 65536 bytes of headers",
    )
    assert nothing_left()


def test_a_global_pax_header_with_many_keys_is_refused(deployer):
    records = b"".join(_pax_record(f"k{i}", "") for i in range(100))
    header = _header("././@PaxHeader", tarfile.XGLTYPE, len(records)) + records
    bundle = gzip.compress(header + _pad(len(records)) + _app_entry() + b"\0" * 1024)
    refused(deployer.deploy("bomb", bundle), "'app.py' follows global PAX headers of more than 64")
    assert nothing_left()


def test_a_many_files_bomb_is_refused_at_the_limit_and_leaves_nothing(deployer):
    bomb = _many_files(20_000)
    assert len(bomb) < 400 * 1024
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    response = deployer.deploy("bomb", bomb)
    refused(response, "more than 10000 entries", "SWITCHBOARD_MAX_BUNDLE_MEMBERS", "'f9999'")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before < MEMORY_BOUND
    assert nothing_left()
    assert deployer.get("apps").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_api_answers_while_a_large_bundle_is_unpacked_outside_the_apps_lock(deployer, demo_app):
    # Thousands of files take a while to create; they are created before the deploy takes
    # the app's lock or opens a transaction, so the API, and even a mutation that locks
    # the same app, answer while they are (or after, on a fast disk).
    bundle = _many_files(5_000)
    answers = {}

    def send() -> None:
        try:
            answers["deploy"] = deployer.deploy("demo", bundle)
        finally:
            connections.close_all()

    thread = threading.Thread(target=send)
    thread.start()
    incoming = settings.VAR_DIR / "incoming"
    wait_until(
        lambda: any(incoming.glob("*/f*")) or not thread.is_alive(),
        what="the bundle to be unpacking",
    )
    other = ApiClient(deployer.token, deployer.user)
    assert other.get("apps").status_code == 200
    assert other.post("apps/demo/scale", {"keep_alive": 60}).status_code == 200
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert answers["deploy"].status_code == 202, answers["deploy"].content
    revision = Revision.objects.get(pk=answers["deploy"].json()["revision"]["id"])
    assert (revision.bundle_dir / "f4999").is_file()
    assert list(incoming.iterdir()) == []


# -- malformed entries ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([_file("/etc/evil.py")], "'/etc/evil.py' is an absolute path"),
        ([_file("../evil.py")], "'../evil.py' escapes the bundle directory"),
        ([_file("lib/../../evil.py")], "'lib/../../evil.py' escapes the bundle directory"),
        (
            [(_entry("lib", tarfile.SYMTYPE, "../../etc"), b"")],
            "'lib' is a symbolic link (to '../../etc')",
        ),
        ([(_entry("pw", tarfile.LNKTYPE, "/etc/passwd"), b"")], "'pw' is a hard link"),
        ([(_entry("null", tarfile.CHRTYPE), b"")], "'null' is a device"),
        ([(_entry("disk", tarfile.BLKTYPE), b"")], "'disk' is a device"),
        ([(_entry("pipe", tarfile.FIFOTYPE), b"")], "'pipe' is a FIFO"),
        ([(_entry("holes", tarfile.GNUTYPE_SPARSE), b"")], "'holes' is a sparse file"),
        ([_file("x.py", path="a\0b.py")], "'a\\x00b.py' contains a NUL byte"),
        ([_file("n" * 300 + ".py")], "has a path component of 303 bytes; the most allowed is 255"),
        (
            [_file("/".join(["d" * 200] * 6) + "/f.py")],
            "has a name of 1210 bytes; the most allowed is 1024",
        ),
        ([_file("a"), _file("a/b")], "'a/b' is inside 'a', which is a file earlier in the bundle"),
        ([_file("a/b"), _file("a")], "'a' is a file, but earlier entries are inside it"),
        ([_file("a"), _dir("a")], "'a' is both a file and a directory"),
        ([_dir("a"), _file("a")], "'a' is both a file and a directory"),
        ([_file("lib/x.py"), _file("./lib//x.py")], "'./lib//x.py' appears more than once"),
        ([_file("app.py")], "'app.py' appears more than once"),
        ([_file(".")], "'.' names the bundle directory itself"),
    ],
)
def test_a_malformed_entry_is_refused_by_name_and_changes_nothing(deployer, members, expected):
    refused(deployer.deploy("bomb", _tar(*members)), expected)
    assert nothing_left()


def test_a_name_that_is_not_utf8_is_refused_by_name(deployer):
    bundle = _tar(_file("caf\udce9.py"), fmt=tarfile.GNU_FORMAT)
    refused(deployer.deploy("bomb", bundle), "'caf\\xe9.py' is not valid UTF-8")
    assert nothing_left()


def test_a_file_larger_than_the_unpacked_limit_is_refused_before_it_is_read(deployer):
    # The header claims 8 GiB; nothing of it follows. The claim alone is refused (413).
    bundle = gzip.compress(_app_entry() + _header("huge", tarfile.REGTYPE, 8**11 - 1))
    response = deployer.deploy("bomb", bundle)
    assert response.status_code == 413
    assert "refused at 'huge'" in response.json()["error"]["message"]
    assert nothing_left()


def test_a_truncated_archive_is_refused_naming_the_entry(deployer):
    data = b"y" * 10_000
    whole = _tar(_file("data.bin", data))
    raw = gzip.decompress(whole)
    cut = raw.index(b"yyyy") + 100
    response = deployer.deploy("bomb", gzip.compress(raw[:cut]))
    refused(response, "not a valid tar.gz archive", "(after 'data.bin')")
    assert nothing_left()
