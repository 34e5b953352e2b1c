"""portpool_facts run as Ansible runs it, inside a network namespace the test makes.

tests/integration/facts_scenario.py builds a known population under
`unshare --net` (so it vanishes with the process) and holds it; the module runs
via `nsenter --net` into that namespace with `ansible localhost -m
portpool_facts`, and its counts must equal what ss reports for the same filter.
TIME_WAIT lasts 60 s, so each scenario is measured in one go by a
fresh population per module run, and ss is asked before and after to prove
the population did not move meanwhile.
"""

import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.integration import facts_scenario as scenario

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parent.parent.parent
LOW, HIGH = scenario.RANGE
IN_RANGE = "( sport >= :%d and sport <= :%d )" % (LOW, HIGH)
LISTENER_PORTS = {scenario.LISTEN_RESERVED, scenario.LISTEN_UNRESERVED}
SS_STATES = {"ESTAB": "established", "TIME-WAIT": "time_wait", "LISTEN": "listen",
             "SYN-SENT": "syn_sent", "SYN-RECV": "syn_recv", "FIN-WAIT-1": "fin_wait1",
             "FIN-WAIT-2": "fin_wait2", "CLOSE-WAIT": "close_wait", "LAST-ACK": "last_ack",
             "CLOSING": "closing", "UNCONN": "close"}


@contextlib.contextmanager
def population(*args):
    """Start facts_scenario.py in a new network namespace; yield its pid; always stop it."""
    proc = subprocess.Popen(
        ["unshare", "--net", sys.executable, str(Path(scenario.__file__)), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready "), "scenario did not start: %r" % line
        yield proc.pid
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def in_netns(pid, argv, **kwargs):
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    env.update(kwargs.pop("env", {}))
    return subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % pid, "--", *argv],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
                          check=False, **kwargs)


def run_module(pid, *extra, args=""):
    """`ansible localhost -m portpool_facts` inside the namespace; the task result."""
    result = in_netns(pid, ["ansible", "localhost", "-o", "-m", "portpool_facts", "-a", args,
                            *extra])
    assert result.returncode == 0, result.stdout + result.stderr
    for line in result.stdout.splitlines():
        if line.startswith("localhost | SUCCESS => "):
            return json.loads(line.split(" => ", 1)[1])
    raise AssertionError("no result line in: " + result.stdout)


def ss_rows(pid, *filters):
    """(state, local, peer) rows of `ss -Htan <filters>` inside the namespace."""
    result = in_netns(pid, ["ss", "-Htan", *filters])
    assert result.returncode == 0, result.stderr
    rows = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if fields[0] in SS_STATES:
            rows.append((fields[0], fields[3], fields[4]))
        else:  # a single-state filter: ss leaves the State column out
            rows.append((None, fields[2], fields[3]))
    return rows


def split_endpoint(text):
    address, _, port = text.rpartition(":")
    return address.strip("[]"), int(port)


def ss_snapshot(pid):
    """What ss says: state counts per family, destinations and listeners in range."""
    states = {}
    for family in ("-4", "-6"):
        states[family] = Counter(SS_STATES[state] for state, _l, _p in ss_rows(pid, family))
    destinations = {}
    for state, local, peer in ss_rows(pid, "state", "connected", IN_RANGE):
        if split_endpoint(local)[1] in LISTENER_PORTS:
            continue  # the accepted side of a listener inside the range
        entry = destinations.setdefault(split_endpoint(peer), Counter())
        entry[SS_STATES[state]] += 1
    listeners = sorted(split_endpoint(local) for _s, local, _p in
                       ss_rows(pid, "state", "listening", IN_RANGE))
    return {"states": states, "destinations": destinations, "listeners": listeners}


def measure(*extra, args=""):
    """A fresh population, measured by ss, the module, then ss again.

    TIME_WAIT ends after 60 s, so each module run gets its own population and
    ss is asked right before and after it.
    """
    with population() as pid:
        before = ss_snapshot(pid)
        result = run_module(pid, *extra, args=args)
        after = ss_snapshot(pid)
    assert before == after, "the socket population moved while it was measured"
    return before, result


@pytest.fixture(scope="module")
def measured():
    """ss's view and the module's result for netlink, /proc and check mode."""
    runs = {
        "netlink": measure(),
        "proc": measure(args="socket_source=proc"),
        "check": measure("--check"),
    }
    return runs


@pytest.mark.parametrize("source", ["netlink", "proc"])
def test_state_counts_equal_ss(measured, source):
    expected, result = measured[source]
    sockets = result["ansible_facts"]["portpool"]["sockets"]
    assert sockets["source"] == source
    for label, family in (("ipv4", "-4"), ("ipv6", "-6")):
        got = {state: count for state, count in sockets[label].items() if count}
        assert got == dict(expected["states"][family]), label
    assert sockets["time_wait"] == (expected["states"]["-4"]["time_wait"]
                                    + expected["states"]["-6"]["time_wait"])
    assert sockets["time_wait"] == 15  # 7 + 4 + 3 to IPv4 destinations, 1 to ::1


@pytest.mark.parametrize("source", ["netlink", "proc"])
def test_destinations_equal_ss(measured, source):
    expected, result = measured[source]
    facts = result["ansible_facts"]["portpool"]
    usable = facts["ephemeral"]["usable"]
    got = {(e["address"], e["port"]): e for e in facts["destinations"]["top"]}
    assert facts["destinations"]["count"] == len(expected["destinations"])
    assert set(got) == set(expected["destinations"])
    for key, counts in expected["destinations"].items():
        entry = got[key]
        assert entry["time_wait"] == counts["time_wait"], key
        assert entry["established"] == counts["established"], key
        assert entry["total"] == sum(counts.values()), key
        assert entry["utilisation"] == round(entry["total"] / usable, 4)
    totals = [e["total"] for e in facts["destinations"]["top"]]
    assert totals == sorted(totals, reverse=True)
    # The plan itself, so a broken scenario cannot make both sides agree on nothing.
    for address, port, established, time_wait in scenario.PLAN:
        assert got[(address, port)]["established"] == established
        assert got[(address, port)]["time_wait"] == time_wait


def test_listeners_in_range_with_reserved_flag(measured):
    expected, result = measured["netlink"]
    facts = result["ansible_facts"]["portpool"]
    got = sorted((e["address"], e["port"]) for e in facts["listeners_in_range"])
    assert got == expected["listeners"]
    flags = {e["port"]: e["reserved"] for e in facts["listeners_in_range"]}
    assert flags == {scenario.LISTEN_RESERVED: True, scenario.LISTEN_UNRESERVED: False}


def test_namespace_settings_and_read_only(measured):
    results = {name: result for name, (_expected, result) in measured.items()}
    for result in results.values():
        assert result["changed"] is False
        facts = result["ansible_facts"]["portpool"]
        assert facts["sysctl"]["ip_local_port_range"] == [LOW, HIGH]
        assert facts["sysctl"]["ip_local_reserved_ports"] == [[45000, 45000], [47000, 47010]]
        assert facts["ephemeral"] == {"low": LOW, "high": HIGH, "size": 10000,
                                      "reserved_in_range": 12, "usable": 9988}
        assert facts["sockets"]["TCPTimeWaitOverflow"] == 0
    # Check mode reports the same facts (separate populations: compare the plan's part).
    check = results["check"]["ansible_facts"]["portpool"]
    netlink = results["netlink"]["ansible_facts"]["portpool"]
    for key in ("sysctl", "ephemeral", "listeners_in_range"):
        assert check[key] == netlink[key], key
    assert check["destinations"]["count"] == netlink["destinations"]["count"]


def test_time_wait_overflow_counted():
    with population("--max-tw-buckets", "4") as pid:
        result = run_module(pid, args="destinations_top=2")
        tw_rows = ss_rows(pid, "state", "time-wait")
    sockets = result["ansible_facts"]["portpool"]["sockets"]
    assert result["ansible_facts"]["portpool"]["sysctl"]["tcp_max_tw_buckets"] == 4
    assert sockets["time_wait"] == len(tw_rows) <= 4
    # 15 connections were closed client-first; those past the limit skipped TIME_WAIT.
    assert sockets["TCPTimeWaitOverflow"] == 15 - len(tw_rows)
    assert len(result["ansible_facts"]["portpool"]["destinations"]["top"]) == 2
