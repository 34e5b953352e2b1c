"""Containers on a fleet host: audit.yml finds their namespaces, judges them, and its
advice, applied literally, clears the findings (issue: every network namespace).

Host `tuned` is tuned (range 15000-64999, tcp_tw_reuse 1) and runs two "containers":
a process-held namespace with a known socket population (facts_scenario.py: range
40000-49999, reuse 2, TIME_WAIT and ESTABLISHED to several destinations, a listener
on an unreserved port inside its range) and a named one, `blue`, left at the kernel's
defaults. Host `plain` has none.
"""

import contextlib
import json
from collections import Counter

import pytest

from tests.fleet.harness import REPO, TARGET_PYTHON, Fleet, HostSpec
from tests.integration import facts_scenario as scenario

SCENARIO = str(REPO / "tests" / "integration" / "facts_scenario.py")
TUNED = {"net.ipv4.ip_local_port_range": "15000 64999", "net.ipv4.tcp_tw_reuse": "1"}


@pytest.fixture(scope="module")
def fleet():
    specs = [HostSpec("tuned", sysctls=TUNED), HostSpec("plain")]
    with Fleet.create(specs) as made:
        made.named_netns("tuned", "blue")
        population = made.container("tuned", [TARGET_PYTHON, SCENARIO])
        try:
            line = population.stdout.readline()
            assert line.startswith("ready "), "the container did not start: %r" % line
            yield made
        finally:
            with contextlib.suppress(BrokenPipeError):
                population.stdin.close()
            population.wait(timeout=15)


def audit(fleet, run_dir):
    result = fleet.playbook("audit.yml", extra_vars={"portpool_report_dir": str(run_dir),
                                                     "portpool_audit_probe": False})
    assert result.returncode == 0, result.stdout + result.stderr
    return {host: json.loads((run_dir / "results" / ("%s.json" % host)).read_text())
            for host in ("tuned", "plain")}


def ss_inside(fleet, host, pid):
    """(state, peer) of connected TCP sockets inside the holder's namespace, by ss."""
    out = fleet.run(host, ["nsenter", "--net=/proc/%d/ns/net" % pid, "ss", "-Htan",
                           "state", "connected"]).stdout
    return Counter((row.split()[0], row.split()[4].rsplit(":", 1)[0].strip("[]"))
                   for row in out.splitlines() if row.strip())


@pytest.fixture(scope="module")
def first(fleet, tmp_path_factory):
    return audit(fleet, tmp_path_factory.mktemp("ns") / "run1")


def _items(doc):
    return {item["name"]: item for item in doc["facts"]["namespaces"]["items"]}


def test_each_container_namespace_is_found_with_its_settings(fleet, first):
    namespaces = first["tuned"]["facts"]["namespaces"]
    assert namespaces["found"] == 2 and namespaces["inspected"] == 2, namespaces
    items = _items(first["tuned"])
    blue = items["netns blue"]
    assert blue["sysctl"]["ip_local_port_range"] == [32768, 60999]
    assert blue["sysctl"]["tcp_tw_reuse"] == 2
    (held,) = [item for item in items.values() if item["kind"] == "process"]
    assert held["sysctl"]["ip_local_port_range"] == list(scenario.RANGE)
    # Per destination, as ss sees it inside the namespace.
    seen = ss_inside(fleet, "tuned", held["holder"]["pid"])
    for dest in held["destinations"]["top"]:
        assert dest["time_wait"] == seen[("TIME-WAIT", dest["address"])], dest
    expected_tw = sum(time_wait for _a, _p, _e, time_wait in scenario.PLAN)
    assert held["sockets"]["time_wait"] == expected_tw


def test_defaults_inside_a_tuned_host_are_flagged(first):
    by_rule = {}
    for finding in first["tuned"]["findings"]:
        by_rule.setdefault(finding["id"], []).append(finding)
    pp020 = {f["fixes"][0]["namespace"]["name"]: f for f in by_rule["PP020"]}
    assert set(pp020) >= {"netns blue"}
    assert "kernel's defaults" in pp020["netns blue"]["message"]
    assert pp020["netns blue"]["fixes"][0]["shell"] == [
        "ip netns exec blue sysctl -w 'net.ipv4.ip_local_port_range=15000 64999'",
        "ip netns exec blue sysctl -w 'net.ipv4.tcp_tw_reuse=1'"]
    assert any(str(scenario.LISTEN_UNRESERVED) in f["message"] for f in by_rule["PP022"])


def test_a_host_without_containers_is_unchanged(first):
    plain = first["plain"]
    assert plain["facts"]["namespaces"]["found"] == 0
    assert plain["facts"]["namespaces"]["items"] == []
    assert plain["findings"] == []


def test_each_namespace_fix_applied_literally_clears_its_finding(fleet, first, tmp_path):
    before = [f for f in first["tuned"]["findings"] if f["id"] in ("PP020", "PP022")]
    assert before
    for finding in before:
        for line in finding["fixes"][0]["shell"]:
            fleet.run("tuned", ["sh", "-c", line])
    after = audit(fleet, tmp_path / "run2")
    ids = Counter(f["id"] for f in after["tuned"]["findings"])
    assert ids["PP020"] == 0 and ids["PP022"] == 0, after["tuned"]["findings"]
    assert set(ids) <= {f["id"] for f in first["tuned"]["findings"]}  # nothing new
    assert after["plain"]["findings"] == []
