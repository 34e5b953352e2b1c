"""portpool_facts finds a host's other network namespaces and reads each from inside.

Each test host is a fresh set of network, mount and PID namespaces
(netns_host.py), so its /proc and /run/netns hold only what the test put there.
The module runs inside it as Ansible runs it; each namespace's settings and
per-destination counts must equal what the kernel shows inside it (ss).
"""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration import facts_scenario as scenario
from tests.integration import netns_host
from tests.integration.test_facts_namespace import ss_snapshot

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parent.parent.parent
UNSHARE_HOST = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
                "--propagation", "private"]


def _children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid), encoding="ascii") as handle:
        return [int(child) for child in handle.read().split()]


@contextlib.contextmanager
def fresh_host(*args):
    """Start a host; yield (its init pid as this machine sees it, its ready data)."""
    proc = subprocess.Popen([*UNSHARE_HOST, sys.executable, netns_host.__file__, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready "), "host did not start: %r" % line
        (init,) = _children(proc.pid)
        yield init, json.loads(line.split(" ", 1)[1])
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_facts(init, args="", user=None):
    """`ansible localhost -m portpool_facts` inside the host; the task result."""
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    argv = ["nsenter", "-t", str(init), "-n", "-m", "-p", "--wd=%s" % REPO, "--"]
    extra = []
    if user:
        # The controller stays root (its venv lives under /root); the module runs as
        # `user` through become, with the system's Python, as on a real target.
        extra = ["--become", "--become-user", user,
                 "-e", "ansible_python_interpreter=/usr/bin/python3"]
    result = subprocess.run(
        [*argv, "ansible", "localhost", "-o", "-m", "portpool_facts", "-a", args, *extra],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if " => " in line)
    return json.loads(line.split(" => ", 1)[1])


@pytest.fixture(scope="module")
def with_containers():
    with fresh_host("containers") as (init, ready):
        population = next(pid for pid in _children(init)
                          if os.stat("/proc/%d/ns/net" % pid).st_ino
                          == ready["namespaces"]["process"])
        expected = ss_snapshot(population)
        result = run_facts(init)
        assert ss_snapshot(population) == expected, "the population moved while measured"
        yield ready, expected, result


def _items(result):
    namespaces = result["ansible_facts"]["portpool"]["namespaces"]
    return namespaces, {item["inode"]: item for item in namespaces["items"]}


def test_each_namespace_found_once_and_named(with_containers):
    ready, _expected, result = with_containers
    namespaces, items = _items(result)
    assert namespaces["found"] == 2
    assert namespaces["inspected"] == 2
    assert namespaces["skipped"] == {"filtered": 0, "limit": 0, "time": 0, "errors": 0}
    assert namespaces["reasons"] == []
    named = items[ready["namespaces"]["named"]]
    assert (named["kind"], named["netns"], named["name"]) == ("named", "pp-blue", "netns pp-blue")
    held = items[ready["namespaces"]["process"]]
    assert held["kind"] == "process"
    assert held["holder"]["comm"].startswith("python")
    assert held["netns"] is None


def test_each_namespace_has_its_own_settings(with_containers):
    ready, _expected, result = with_containers
    facts = result["ansible_facts"]["portpool"]
    _namespaces, items = _items(result)
    assert facts["sysctl"]["ip_local_port_range"] == [20000, 29999]
    assert facts["sysctl"]["tcp_tw_reuse"] == 1
    named = items[ready["namespaces"]["named"]]
    assert named["sysctl"]["ip_local_port_range"] == [41000, 41999]
    assert named["sysctl"]["tcp_tw_reuse"] == 2  # a new namespace's default, not the host's
    assert "nr_open" not in named["sysctl"]  # fs.* belongs to the machine, not a namespace
    held = items[ready["namespaces"]["process"]]
    assert held["sysctl"]["ip_local_port_range"] == list(scenario.RANGE)
    assert held["ephemeral"]["usable"] == 9988


def test_per_destination_counts_equal_ss_inside(with_containers):
    ready, expected, result = with_containers
    _namespaces, items = _items(result)
    held = items[ready["namespaces"]["process"]]
    got = {(e["address"], e["port"]): e for e in held["destinations"]["top"]}
    assert set(got) == set(expected["destinations"])
    for key, counts in expected["destinations"].items():
        assert got[key]["time_wait"] == counts["time_wait"], key
        assert got[key]["established"] == counts["established"], key
    for address, port, established, time_wait in scenario.PLAN:
        assert (got[(address, port)]["established"], got[(address, port)]["time_wait"]) == (
            established, time_wait)
    listeners = sorted((e["address"], e["port"]) for e in held["listeners_in_range"])
    assert listeners == expected["listeners"]
    assert held["sockets"]["time_wait"] == 15
    # The host itself has no sockets: nothing leaked from its namespaces into it.
    assert result["ansible_facts"]["portpool"]["destinations"]["count"] == 0


def test_match_filter_and_bounds():
    with fresh_host("containers") as (init, ready):
        result = run_facts(init, args=json.dumps({"namespaces": {"match": ["netns pp-*"]}}))
        namespaces, items = _items(result)
        assert list(items) == [ready["namespaces"]["named"]]
        assert namespaces["skipped"]["filtered"] == 1
        result = run_facts(init, args=json.dumps({"namespaces": {"max_count": 1}}))
        namespaces, items = _items(result)
        assert len(items) == 1 and namespaces["skipped"]["limit"] == 1
        assert "max_count 1 reached" in namespaces["reasons"][0]
        result = run_facts(init, args=json.dumps({"namespaces": {"enabled": False}}))
        assert result["ansible_facts"]["portpool"]["namespaces"] is None


def test_not_root_counts_but_does_not_enter():
    with fresh_host("containers") as (init, _ready):
        result = run_facts(init, user="nobody")
        namespaces, items = _items(result)
        # nobody can see the named namespace's file, not root's processes.
        assert namespaces["found"] >= 1
        assert namespaces["inspected"] == 0
        assert namespaces["reasons"] and namespaces["reasons"][0].startswith("not root")
        assert all(item["sysctl"] is None for item in items.values())


def test_host_without_containers_unchanged():
    with fresh_host() as (init, _ready):
        result = run_facts(init)
        namespaces = result["ansible_facts"]["portpool"]["namespaces"]
        assert namespaces["found"] == 0
        assert namespaces["items"] == []
        assert namespaces["reasons"] == []


def run_probe(init, args):
    """`ansible localhost -m portpool_probe` inside the host; the task result."""
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    result = subprocess.run(
        ["nsenter", "-t", str(init), "-n", "-m", "-p", "--wd=%s" % REPO, "--",
         "ansible", "localhost", "-o", "-m", "portpool_probe", "-a", json.dumps(args)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=180, check=False)
    line = next(line for line in result.stdout.splitlines() if " => " in line)
    return result.returncode, json.loads(line.split(" => ", 1)[1])


def test_probe_measures_a_namespace_with_its_own_settings():
    with fresh_host("containers") as (init, _ready):
        facts = run_facts(init)
        (held,) = [item for item in facts["ansible_facts"]["portpool"]["namespaces"]["items"]
                   if item["kind"] == "process"]
        for namespace, low, high in (
                ("pp-blue", 41000, 41999),
                ("/proc/%d/ns/net" % held["holder"]["pid"], *scenario.RANGE)):
            code, result = run_probe(init, {"namespace": namespace, "scope": "full",
                                            "churn_seconds": 0})
            assert code == 0, result
            probe = result["probe"]
            assert probe["range"] == [low, high], probe
            assert probe["settings_from"].startswith("namespace "), probe
            assert probe["matches_expected"] is True, probe
        # The host's own values are untouched and measured as before.
        code, result = run_probe(init, {"scope": "full", "churn_seconds": 0})
        assert code == 0 and result["probe"]["range"] == [20000, 29999]
        assert result["probe"]["settings_from"] == "host"
        code, result = run_probe(init, {"namespace": "pp-blue", "mode": "host"})
        assert code != 0 and "mode=lab" in result["msg"]
        code, result = run_probe(init, {"namespace": "no-such-ns"})
        assert code != 0 and "no-such-ns" in result["msg"]
