"""portpool_facts against `ss` on the running kernel, netlink and /proc sources.

The population and ss's view come from the integration test's helpers
(tests/integration/facts_scenario.py); the module is called directly (see
module_run.py) inside the population's namespace. Also checks that the keys the
kernel lacks (tcp_tw_reuse_delay before 6.14) are reported as null, judged by
/proc/sys itself, and that sockets past tcp_max_tw_buckets are counted.
"""

import os

import pytest

from tests.integration import facts_scenario as scenario
from tests.integration.test_facts_namespace import population, ss_rows, ss_snapshot
from tests.kernels.module_run import ModuleServer

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def server():
    with ModuleServer("portpool_facts") as running:
        yield running


def facts_in(server, pid, args):
    result = server.call(args, join_netns="/proc/%d/ns/net" % pid)
    assert not result.get("failed"), result.get("msg")
    return result["ansible_facts"]["portpool"]


@pytest.mark.parametrize("source", ["netlink", "proc"])
def test_states_and_destinations_equal_ss(server, source):
    with population() as pid:
        before = ss_snapshot(pid)
        facts = facts_in(server, pid, {"socket_source": source})
        after = ss_snapshot(pid)
    assert before == after, "the socket population moved while it was measured"
    sockets = facts["sockets"]
    assert sockets["source"] == source
    for label, family in (("ipv4", "-4"), ("ipv6", "-6")):
        got = {state: count for state, count in sockets[label].items() if count}
        assert got == dict(before["states"][family]), label
    got = {(entry["address"], entry["port"]): entry for entry in facts["destinations"]["top"]}
    assert set(got) == set(before["destinations"])
    for address, port, established, time_wait in scenario.PLAN:
        assert got[(address, port)]["established"] == established
        assert got[(address, port)]["time_wait"] == time_wait
    listeners = sorted((entry["address"], entry["port"]) for entry in facts["listeners_in_range"])
    assert listeners == before["listeners"]
    # Present or absent as the kernel shows it, never guessed from the release.
    for key in ("tcp_tw_reuse_delay", "tcp_tw_recycle"):
        present = os.path.exists("/proc/sys/net/ipv4/" + key)
        assert (facts["sysctl"][key] is not None) is present, key


def test_time_wait_overflow_counted(server):
    with population("--max-tw-buckets", "4") as pid:
        facts = facts_in(server, pid, {"destinations_top": 2})
        tw_rows = ss_rows(pid, "state", "time-wait")
    assert facts["sysctl"]["tcp_max_tw_buckets"] == 4
    assert facts["sockets"]["time_wait"] == len(tw_rows) <= 4
    # 15 connections were closed client-first; those past the limit skipped TIME_WAIT.
    assert facts["sockets"]["TCPTimeWaitOverflow"] == 15 - len(tw_rows)
