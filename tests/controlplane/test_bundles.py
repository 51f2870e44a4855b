"""Well-formed bundles as real tools write them are accepted, and unpacked private to the
service user: directories 0700, files 0600 (0700 when executable by their owner)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile

import pytest
from django.conf import settings

from dashboard.controlplane.models import Revision
from tests.controlplane.conftest import app_source

pytestmark = pytest.mark.django_db


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _bundle(entries: list[tuple[str, bytes | None, int]], pax: dict | None = None) -> bytes:
    """Entries as (name, data or None for a directory, mode)."""
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers=pax
    ) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def test_a_bundle_made_with_tar_dot_deploys_with_private_modes(deployer):
    source = app_source().encode()
    bundle = _bundle(
        [
            ("./", None, 0o755),
            ("./app.py", source, 0o644),
            ("./lib/", None, 0o777),
            ("./lib/util.py", b"x = 1\n", 0o666),
            ("./bin/run", b"#!/bin/sh\n", 0o755),  # Its parent has no entry of its own.
        ]
    )
    response = deployer.deploy("fresh", bundle)
    assert response.status_code == 202, response.json()
    root = Revision.objects.get().bundle_dir
    assert (root / "app.py").read_bytes() == source
    assert _mode(root) == 0o700
    assert _mode(root / "lib") == 0o700
    assert _mode(root / "bin") == 0o700
    assert _mode(root / "app.py") == 0o600
    assert _mode(root / "lib" / "util.py") == 0o600
    assert _mode(root / "bin" / "run") == 0o700
    assert list((settings.VAR_DIR / "incoming").iterdir()) == []


def test_a_git_archive_global_header_is_accepted(deployer):
    # git archive writes a global PAX header with the commit id first.
    bundle = _bundle([("app.py", app_source().encode(), 0o644)], pax={"comment": "f" * 40})
    response = deployer.deploy("fresh", bundle)
    assert response.status_code == 202, response.json()
    assert (Revision.objects.get().bundle_dir / "app.py").is_file()


def test_a_long_name_within_the_limits_is_accepted(deployer):
    deep = "/".join(["d" * 200] * 4) + "/module.py"  # 814 bytes, components of 200.
    bundle = _bundle([("app.py", app_source().encode(), 0o644), (deep, b"x = 1\n", 0o644)])
    response = deployer.deploy("fresh", bundle)
    assert response.status_code == 202, response.json()
    assert (Revision.objects.get().bundle_dir / deep).is_file()


def test_a_bundle_large_enough_to_be_spooled_to_disk_deploys(deployer):
    # Django keeps uploads over FILE_UPLOAD_MAX_MEMORY_SIZE in a temporary file: the bundle
    # is hashed and read from it as a stream.
    noise = os.urandom(settings.FILE_UPLOAD_MAX_MEMORY_SIZE + 1024)
    bundle = _bundle([("app.py", app_source().encode(), 0o644), ("noise.bin", noise, 0o644)])
    response = deployer.deploy("fresh", bundle)
    assert response.status_code == 202, response.json()
    revision = Revision.objects.get()
    assert revision.bundle_sha256 == hashlib.sha256(bundle).hexdigest()
    assert (revision.bundle_dir / "noise.bin").read_bytes() == noise


def test_uploads_left_staged_by_a_killed_web_worker_are_swept_and_live_ones_kept(
    settings, tmp_path
):
    from dashboard.controlplane import tasks

    settings.VAR_DIR = tmp_path
    incoming = tmp_path / "incoming"
    (incoming / "left-behind" / "pkg").mkdir(parents=True)
    (incoming / "left-behind" / "pkg" / "main.py").write_text("x = 1\n")
    (incoming / "in-flight").mkdir()
    stale = 2 * settings.INCOMING_MAX_AGE
    old = os.stat(incoming / "left-behind").st_mtime - stale
    os.utime(incoming / "left-behind", (old, old))

    assert tasks.sweep_incoming() == 1

    assert sorted(p.name for p in incoming.iterdir()) == ["in-flight"]
    # The beat runs it: its schedule names this task.
    assert settings.CELERY_BEAT_SCHEDULE["sweep-incoming"]["task"] == tasks.sweep_incoming.name


def test_the_incoming_sweep_of_a_var_dir_without_uploads_does_nothing(settings, tmp_path):
    from dashboard.controlplane import bundles

    settings.VAR_DIR = tmp_path
    assert bundles.sweep_incoming(0) == 0
