"""playbooks/audit.yml and preflight.yml end to end over SSH, on hosts seeded with problems.

One fleet of six hosts, three playbook runs:
- a malformed policy stops the run before any host is contacted;
- preflight on the seeded fleet: each expected finding on the right host, the clean
  host has none, the unreachable host is reported as such, and the exit is non-zero;
- preflight again with those findings waived: exit zero.
"""

import json
import textwrap

import pytest

from tests.fleet.harness import Fleet, HostSpec

# What each seeded host must show (rule ids); the clean host must show nothing.
EXPECTED = {
    "narrow": {"PP001", "PP002", "PP015"},   # 999 ports, both ends even, differs from its group
    "listener": {"PP004"},                   # a service on 40500, inside the range
    "twtune": {"PP005", "PP007", "PP011"},   # reuse 1 + timestamps 0, 1024 buckets, file says 0
    "busy": {"PP009", "PP001"},              # 850 TIME_WAIT to one destination of 1000 ports
    "clean": set(),
    "dead": {"PP017"},
}
BUSY_DEST = ("198.18.200.1", 9000)
BUSY_CONNECTIONS = 850

# A bounded client: connect, close client first (so the client side holds TIME_WAIT),
# BUSY_CONNECTIONS times against a listener on a 198.18.x address inside the host.
CHURN = textwrap.dedent("""
    import socket, subprocess, sys, time
    addr, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    subprocess.run(["ip", "addr", "add", addr + "/32", "dev", "lo"], check=False)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((addr, port))
    server.listen(1024)
    deadline = time.monotonic() + 30
    done = 0
    try:
        while done < count and time.monotonic() < deadline:
            client = socket.create_connection((addr, port), timeout=2)
            peer, _ = server.accept()
            client.close()
            time.sleep(0.0005)
            peer.close()
            done += 1
    finally:
        server.close()
    print(done)
""")


@pytest.fixture(scope="module")
def fleet():
    specs = [
        HostSpec("narrow", sysctls={"net.ipv4.ip_local_port_range": "40000 40998"},
                 groups=("web",)),
        HostSpec("listener", listeners=(40500,), groups=("web",)),
        HostSpec("twtune", become=True, groups=("db",),
                 sysctls={"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.tcp_timestamps": "0",
                          "net.ipv4.tcp_max_tw_buckets": "1024"},
                 sysctl_d={"50-legacy.conf": "net.ipv4.tcp_tw_reuse = 0\n"}),
        HostSpec("busy", sysctls={"net.ipv4.ip_local_port_range": "50000 50999"},
                 groups=("db",)),
        HostSpec("clean", groups=("web",)),
        HostSpec("dead", groups=("db",)),
    ]
    with Fleet.create(specs) as made:
        made.kill_sshd("dead")
        yield made


def results(run_dir):
    folder = run_dir / "results"
    return {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}


def test_malformed_policy_stops_before_any_host(fleet, tmp_path):
    run_dir = tmp_path / "bad"
    result = fleet.playbook("playbooks/audit.yml", extra_vars={
        "portpool_report_dir": str(run_dir),
        "portpool_audit_min_usable_ports": "lots",
        "portpool_audit_waivers": [{"rule": "PP999", "reason": "typo"}],
    })
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "portpool_audit_min_usable_ports" in output
    assert "portpool_audit_waivers" in output and "PP999" in output
    assert "Gather portpool facts" not in output  # never got that far
    assert not run_dir.exists()


def test_preflight_reports_seeded_problems_then_passes_when_waived(fleet, tmp_path):
    churn = fleet.run("busy", ["python3", "-c", CHURN, BUSY_DEST[0], str(BUSY_DEST[1]),
                               str(BUSY_CONNECTIONS)], timeout=60)
    assert int(churn.stdout) == BUSY_CONNECTIONS

    run_dir = tmp_path / "run1"
    result = fleet.playbook("playbooks/preflight.yml",
                            extra_vars={"portpool_report_dir": str(run_dir)})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Preflight failed" in output

    found = results(run_dir)
    assert set(found) == set(EXPECTED)
    # The report role rendered from these files (its own tests check the formats).
    assert (run_dir / "report.html").is_file() and (run_dir / "fleet.json").is_file()
    rules = json.loads((run_dir / "rules.json").read_text())
    assert {rule["id"] for rule in rules} >= set().union(*EXPECTED.values())
    for host, expected in EXPECTED.items():
        doc = found[host]
        assert doc["schema"] == 1 and doc["host"] == host
        ids = {item["id"] for item in doc["findings"]}
        assert expected <= ids, (host, ids, doc["error"])
        if host != "dead":
            assert doc["status"] == "ok", (host, doc["error"])
            assert doc["facts"]["sysctl"]["ip_local_port_range"]
            assert doc["probe"]["matches_expected"] is True, (host, doc["probe"])
    assert found["clean"]["findings"] == [], found["clean"]["findings"]
    assert found["dead"]["status"] == "unreachable"
    assert found["dead"]["facts"] is None and found["dead"]["error"]

    # Evidence: values and where they came from.
    by_id = {item["id"]: item for item in found["twtune"]["findings"]}
    assert "/etc/sysctl.d/50-legacy.conf" in by_id["PP011"]["message"]
    assert "net.ipv4.tcp_timestamps = 1" in by_id["PP005"]["recommendation"]
    busy = {item["id"]: item for item in found["busy"]["findings"]}["PP009"]
    assert busy["severity"] == "high" and "198.18.200.1:9000" in busy["message"]
    listener = {item["id"]: item for item in found["listener"]["findings"]}["PP004"]
    assert "`net.ipv4.ip_local_reserved_ports = 40500`" in listener["recommendation"]
    assert listener["fixes"][0]["shell"] == ["sysctl -w 'net.ipv4.ip_local_reserved_ports=40500'"]
    assert found["twtune"]["groups"] == ["db"]

    blocking = {(doc["host"], item["id"]) for doc in found.values()
                for item in doc["findings"] if item["severity"] in ("high", "critical")}
    for host, rule in blocking:
        assert "%s %s" % (rule, host) in output
    waivers = [{"rule": rule, "hosts": [host], "reason": "seeded by the test"}
               for host, rule in sorted(blocking)]
    run_dir = tmp_path / "run2"
    result = fleet.playbook("playbooks/preflight.yml", extra_vars={
        "portpool_report_dir": str(run_dir), "portpool_audit_waivers": waivers})
    assert result.returncode == 0, result.stdout + result.stderr
    found = results(run_dir)
    assert found["dead"]["status"] == "unreachable"
    waived = {(doc["host"], item["id"]) for doc in found.values()
              for item in doc["findings"] if item["waived"]}
    assert ("dead", "PP017") in waived and ("listener", "PP004") in waived
