"""Gateway streaming figures (issue 9): `make test PYTEST_ARGS="bench/gateway_streaming.py -s"`.

A live runtime (the tests' fixture) and the probe app of tests/security/test_gateway.py:
a 16 MB chunked upload, a 19 MB upload (Content-Length), four 19 MB uploads at
once, then a 128 MB answer read as it streams. Prints wall time and the growth of the runtime process's peak RSS
(VmHWM) for each; figures go to BENCHMARKS.md, nothing is asserted.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.runtime import conftest as runtime_fixtures
from tests.security.test_gateway import MB, deploy_probe, high_water_kb

runtime_factory = runtime_fixtures.runtime_factory
runtime = runtime_fixtures.runtime

pytestmark = pytest.mark.django_db(transaction=True)


def test_gateway_streaming_figures(runtime):
    deploy_probe()
    assert runtime.gateway("POST", "/probe/", json={}).status_code == 200
    pid = runtime.proc.pid
    lines = []

    def measure(what: str, call) -> None:
        before, started = high_water_kb(pid), time.perf_counter()
        call()
        took = time.perf_counter() - started
        grown = (high_water_kb(pid) - before) / 1024
        lines.append(f"{what}: {took:.2f} s, runtime peak RSS +{grown:.0f} MB")

    def download() -> None:
        with httpx.stream(
            "GET", runtime.gateway_url + "/probe/big", params={"mb": 128}, timeout=300
        ) as response:
            assert response.status_code == 200
            assert sum(len(c) for c in response.iter_raw()) == 128 * MB + 2

    def upload(size_mb: int, chunked: bool) -> None:
        blob = b'{"blob": "' + b"u" * (size_mb * MB) + b'"}'
        content = (blob[i : i + MB] for i in range(0, len(blob), MB)) if chunked else blob
        response = runtime.gateway("POST", "/probe/upload", content=content, timeout=300)
        assert response.status_code == 200, response.text

    def uploads_at_once(count: int) -> None:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda _: upload(19, False), range(count)))

    def small_requests() -> None:
        with httpx.Client(base_url=runtime.gateway_url) as client:
            for i in range(1000):
                assert client.post("/probe/", json={"n": i}).status_code == 200

    # Smallest first: VmHWM is a peak, so a larger transfer would hide a smaller one's.
    measure("1000 small requests, one keep-alive connection", small_requests)
    measure("16 MB upload, chunked", lambda: upload(16, True))
    measure("19 MB upload, Content-Length", lambda: upload(19, False))
    measure("4 × 19 MB uploads at once", lambda: uploads_at_once(4))
    measure("128 MB answer", download)
    print("\n" + "\n".join(lines))
