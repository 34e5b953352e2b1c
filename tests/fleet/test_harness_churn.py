"""The harness makes TIME_WAIT pressure on demand: bounded, client-side, per destination."""

import json
import subprocess
import sys
import time

import pytest

from tests.fleet.harness import REPO, Fleet, FleetError, HostSpec

PORT = 5432


@pytest.fixture(scope="module")
def fleet():
    specs = [
        # A few of the backend's closes draw an RST from a client socket already in
        # TIME_WAIT, which would end it early (TIME_WAIT assassination, RFC 1337):
        # the client ignores them, so the counts below are exact.
        HostSpec("client", sysctls={"net.ipv4.tcp_rfc1337": "1"}),
        HostSpec("narrow", sysctls={"net.ipv4.ip_local_port_range": "40000 40099"}),
        HostSpec("backend", listeners=(PORT,)),
    ]
    with Fleet.create(specs) as made:
        yield made


def _all_time_wait(fleet, name):
    out = fleet.run(name, ["ss", "-Htn", "state", "time-wait"]).stdout
    return len(out.splitlines())


def test_churn_leaves_time_wait_on_the_client_only(fleet):
    before = fleet.time_wait("client", "backend", PORT)
    result = fleet.churn("client", "backend", PORT, 2000)
    assert result == {"connected": 2000, "failed": 0, "stopped_by": "count"}
    # Each connection's TIME_WAIT (60 s) stays on the host that closed first.
    assert fleet.time_wait("client", "backend", PORT) - before >= 1990
    assert _all_time_wait(fleet, "backend") < 10
    # The backend closed every connection once the client had: nothing left open.
    left = fleet.run("backend", ["ss", "-Htn", "state", "established", "sport", "=",
                                 ":%d" % PORT]).stdout
    assert left.strip() == ""


def test_churn_stops_when_the_pool_is_empty(fleet):
    result = fleet.churn("narrow", "backend", PORT, 1000)
    assert result["stopped_by"] == "EADDRNOTAVAIL", result
    assert 90 <= result["connected"] <= 100, result   # 100 ports, all in TIME_WAIT


def test_churn_is_bounded_and_checks_its_arguments(fleet):
    with pytest.raises(FleetError, match="count 1"):
        fleet.churn("client", "backend", PORT, 0)
    with pytest.raises(FleetError, match="count 1"):
        fleet.churn("client", "backend", PORT, 10, seconds=10**6)
    with pytest.raises(FleetError, match=r"outside 198\.18\.0\.0/15"):
        fleet.churn("client", "10.0.0.1", PORT, 10)
    with pytest.raises(FleetError, match="neither a host"):
        fleet.churn("client", "nosuchhost", PORT, 10)
    with pytest.raises(FleetError, match="no host"):
        fleet.churn("nosuchhost", "backend", PORT, 10)
    started = time.monotonic()
    result = fleet.churn("client", "backend", PORT, 100000, rate=50, seconds=1)
    assert result["stopped_by"] == "time" and result["connected"] <= 60, result
    assert time.monotonic() - started < 15


def test_steady_churn_in_the_background_stops_on_request(fleet):
    process = fleet.start_churn("client", "backend", PORT, rate=200, seconds=30)
    time.sleep(1.5)
    summary = fleet.stop_churn(process)
    assert process.returncode is not None
    assert summary["stopped_by"] == "stopped", summary
    assert 100 <= summary["connected"] <= 400, summary


def test_cli_churn(fleet):
    result = subprocess.run(
        [sys.executable, "-m", "tests.fleet", "churn", str(fleet.inventory), "--host",
         "client", "--to", "backend:%d" % PORT, "--count", "300"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"connected": 300, "failed": 0, "stopped_by": "count"}
    bad = subprocess.run(
        [sys.executable, "-m", "tests.fleet", "churn", str(fleet.inventory), "--host",
         "client", "--to", "backend", "--count", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr


def test_clear_time_wait_then_churn_gives_an_exact_count(fleet):
    fleet.churn("client", "backend", PORT, 500)
    assert fleet.clear_time_wait("client", "backend", PORT) == 0
    assert fleet.time_wait("client", "backend", PORT) == 0
    fleet.churn("client", "backend", PORT, 700)
    assert fleet.time_wait("client", "backend", PORT) == 700
    result = subprocess.run(
        [sys.executable, "-m", "tests.fleet", "churn", str(fleet.slot), "--host", "client",
         "--to", "backend:%d" % PORT, "--count", "250", "--reset"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert fleet.time_wait("client", "backend", PORT) == 250
