"""Outbound network, attacked from inside: the probe app (tests/security/probe/) with its
app's `network` off reaches nothing; with `outbound` (pasta, README "Runner sandbox") it
reaches a TCP server on another address of this machine but still none of the host's
loopback services — Redis, PostgreSQL, the runtime admin API, the web server and the
gateway — neither at 127.0.0.1/::1 nor at the host's own non-loopback addresses. The
deploy's import check has no network even for an `outbound` app.

The "other machine" is a network namespace of this machine joined to the host by a veth
pair on a private /30 (10.213.N.0/30): nothing of the test leaves the machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.auth import get_user_model

from dashboard.controlplane.models import ApiToken, App, Operation, Profile, Revision, Role
from dashboard.runner_states import ACTIVE
from dashboard.runtime import sandbox, sandboxed
from tests.conftest import wait_until
from tests.security.test_sandbox import CLI, PROBE, deploy, targets

pytestmark = [
    pytest.mark.system,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not sandbox.enabled(), reason="SWITCHBOARD_SANDBOX=none"),
    pytest.mark.skipif(not os.access(sandbox.PASTA, os.X_OK), reason="pasta is not installed"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
    # The peer's network namespace and veth pair need root, as the sandbox itself does.
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

# Answers one line with that line, for every connection, until killed; says "listening"
# once it does (the test waits for that line, not for a time).
ECHO_SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        conn.sendall(conn.makefile("rb").readline())
"""


@dataclass
class Peer:
    """A TCP echo server on another machine, as the sandbox sees it."""

    host_address: str  # The host's end of the veth pair: one of the host's own addresses.
    address: str  # The peer's end, where the echo server listens.
    port: int


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def peer() -> Iterator[Peer]:
    tag = secrets.token_hex(3)
    netns, host_if, peer_if = f"sbnet-{tag}", f"sbh{tag}", f"sbp{tag}"
    subnet = ipaddress.ip_network(f"10.213.{secrets.randbelow(256)}.0/30")
    host_address, address = (str(a) for a in subnet.hosts())
    server = None
    try:
        _ip("netns", "add", netns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", netns)
        _ip("addr", "add", f"{host_address}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", netns, "addr", "add", f"{address}/30", "dev", peer_if)
        _ip("-n", netns, "link", "set", peer_if, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        port = 7000 + secrets.randbelow(1000)
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", ECHO_SERVER, address, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout.readline().strip() == "listening"
        yield Peer(host_address, address, port)
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)


def _host_addresses() -> list[str]:
    """Every address of this host but loopback and link-local ones."""
    links = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True).stdout)
    found = []
    for link in links:
        for info in link.get("addr_info", []):
            address = ipaddress.ip_address(info["local"])
            if not (address.is_loopback or address.is_link_local):
                found.append(str(address))
    return found


def _services(system) -> list[int]:
    """The ports of the host's loopback services: Redis, PostgreSQL, runtime, gateway, web."""
    urls = (system.runtime_url, system.gateway_url, system.api_url)
    return [6379, 5432] + [urlsplit(url).port for url in urls]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def admin_env(system, tmp_path) -> dict[str, str]:
    user = get_user_model().objects.create_user("netadmin")
    Profile.objects.create(user=user, role=Role.ADMIN)
    _, raw = ApiToken.issue(user, "net", Role.ADMIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        {
            "SWITCHBOARD_URL": system.api_url,
            "SWITCHBOARD_TOKEN": raw,
            "XDG_CONFIG_HOME": str(tmp_path / "admin-config"),
        }
    )
    return env


@pytest.fixture
def deployer_env(system, tmp_path) -> dict[str, str]:
    user = get_user_model().objects.create_user("mallory")
    Profile.objects.create(user=user, role=Role.DEPLOYER)
    _, raw = ApiToken.issue(user, "probe", Role.DEPLOYER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        {
            "SWITCHBOARD_URL": system.api_url,
            "SWITCHBOARD_TOKEN": raw,
            "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
        }
    )
    return env


def _connect(system, tcp: list[list], echo: list | None) -> dict:
    response = httpx.post(
        f"{system.gateway_url}/probe/connect", json={"tcp": tcp, "echo": echo}, timeout=180
    )
    assert response.status_code == 200, response.text
    return response.json()


def _runners(env: dict[str, str], app: str) -> list[dict]:
    return json.loads(_cli(env, "apps", "runners", app, "--json").stdout)["runners"]


def test_outbound_network_reaches_other_machines_but_never_the_hosts_loopback(
    system, deployer_env, admin_env, peer
):
    loopback = [[host, port] for host in ("127.0.0.1", "::1") for port in _services(system)]
    own = [[host, port] for host in _host_addresses() for port in _services(system)]
    assert peer.host_address in [host for host, _ in own]
    echo = [peer.address, peer.port]
    deploy(deployer_env, PROBE, "probe", "Probe")

    # Network off (every app's default): nothing, not even the other machine.
    off = _connect(system, loopback + own + [echo], echo)
    assert off["reached"] == []
    assert off["echo"].startswith("failed:")

    # A deployer may not widen it; an admin may, with the CLI.
    refused = _cli(deployer_env, "apps", "network", "probe", "outbound")
    assert refused.returncode != 0
    assert "this needs the admin role; your role is deployer" in refused.stderr + refused.stdout
    assert App.objects.get(name="probe").network == "off"
    bad = _cli(admin_env, "apps", "network", "probe", "on")
    assert bad.returncode == 2
    assert "'on' is not one of 'off', 'outbound'" in bad.stderr
    assert App.objects.get(name="probe").network == "off"
    assert not Operation.objects.filter(app__name="probe", kind="network").exists()
    done = _cli(admin_env, "apps", "network", "probe", "outbound", "--reason", "probe")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "network of probe is outbound" in done.stdout
    assert Operation.objects.filter(app__name="probe", kind="network").count() == 1
    listing = _cli(admin_env, "apps", "list").stdout
    assert "outbound" in listing

    # Running runners keep what they started with: stop them (if keep_alive has not
    # already), and the next request starts one with outbound network.
    before = [r for r in _runners(admin_env, "probe") if r["state"] in ACTIVE]
    for runner in before:
        _cli(admin_env, "runners", "stop", runner["id"])  # It may have ended meanwhile.
    wait_until(
        lambda: not any(r["state"] in ACTIVE for r in _runners(admin_env, "probe")),
        timeout=60,
        what="the probe's runners to stop",
    )

    on = _connect(system, loopback + own, echo)
    assert on["echo"] == "ping from the sandbox\n"  # The other machine answers...
    assert on["reached"] == []  # ...and no loopback service, at any address of the host.

    # The rest of the sandbox is as it was: same probe as test_sandbox.py, still nothing.
    pids = [system.runtime.pid, system.worker.pid, os.getpid()]
    escape = httpx.post(
        f"{system.gateway_url}/probe/escape", json=targets(system, pids), timeout=120
    ).json()
    assert escape["reached"] == []
    assert escape["uid"] >= sandboxed.UID_BASE
    assert escape["processes"] == [1, 2]
    after = _runners(admin_env, "probe")
    assert {r["id"] for r in after if r["state"] in ACTIVE}.isdisjoint(r["id"] for r in before)


def test_the_import_check_of_an_outbound_app_has_no_network(
    system, deployer_env, admin_env, peer, tmp_path
):
    deploy(deployer_env, PROBE, "probe", "Probe")
    assert _cli(admin_env, "apps", "network", "probe", "outbound").returncode == 0
    folder = tmp_path / "probe"
    shutil.copytree(PROBE, folder)
    (folder / "probe_config.json").write_text(json.dumps({"tcp": [[peer.address, peer.port]]}))

    result = deploy(deployer_env, folder, "probe", "Probe", ok=False)

    assert result.returncode != 0
    revision = Revision.objects.filter(app__name="probe").order_by("-created_at").first()
    assert revision.status == "failed"
    assert revision.error == "import check failed: RuntimeError: reached []"


def test_the_peer_is_really_reachable_from_the_host(peer):
    """The positive control's own check: without the sandbox, the echo server answers."""
    import socket

    with socket.create_connection((peer.address, peer.port), timeout=10) as conn:
        conn.sendall(b"hello\n")
        assert conn.makefile("rb").readline() == b"hello\n"
