"""portpool_facts over SSH: each fleet host reports its own settings and sysctl.d winner."""

import json

import pytest

from tests.fleet.harness import HostSpec

pytestmark = [pytest.mark.root, pytest.mark.fleet]

SPECS = [
    HostSpec("f01", sysctls={"net.ipv4.ip_local_port_range": "40000 40999"},
             sysctl_d={"50-pool.conf": "net.ipv4.ip_local_port_range = 40000\t40999\n"}),
    HostSpec("f02", sysctls={"net.ipv4.ip_local_port_range": "50001 50500",
                             "net.ipv4.ip_local_reserved_ports": "50200",
                             "net.ipv4.tcp_tw_reuse": "0"},
             sysctl_d={"50-legacy.conf": "net.ipv4.tcp_tw_reuse = 0\n",
                       "60-override.conf": "net.ipv4.tcp_tw_reuse = 1\n"},
             listeners=(50100, 50200)),
    HostSpec("f03", become=True,
             sysctl_d={"10-base.conf": "net.ipv4.tcp_fin_timeout = 45\n"},
             sysctl_conf="net.ipv4.tcp_fin_timeout = 30\n"),
]


@pytest.fixture(scope="module")
def facts():
    from tests.fleet.harness import Fleet

    with Fleet.create(SPECS) as fleet:
        result = fleet.ansible("all", "-o", "-m", "portpool_facts", "-a", "processes=sshd")
        runtime = {name: fleet.sysctl(name, "net.ipv4.ip_local_port_range")
                   for name in fleet.hosts}
    assert result.returncode == 0, result.stdout + result.stderr
    found = {}
    for line in result.stdout.splitlines():
        host, _, rest = line.partition(" | SUCCESS => ")
        if rest:
            found[host] = json.loads(rest)
    assert set(found) == {"f01", "f02", "f03"}, result.stdout
    return found, runtime


def portpool(facts, host):
    return facts[0][host]["ansible_facts"]["portpool"]


def test_each_host_reports_its_own_range(facts):
    _found, runtime = facts
    for host in ("f01", "f02", "f03"):
        low, high = portpool(facts, host)["sysctl"]["ip_local_port_range"]
        assert "%d %d" % (low, high) == runtime[host]
    assert portpool(facts, "f01")["ephemeral"]["usable"] == 1000
    assert portpool(facts, "f02")["ephemeral"]["usable"] == 499
    assert portpool(facts, "f03")["ephemeral"]["size"] == 28232  # a fresh namespace's default


def test_sysctl_d_winner_per_host(facts):
    f01 = portpool(facts, "f01")["persisted"]
    assert f01["keys"]["ip_local_port_range"]["file"] == "/etc/sysctl.d/50-pool.conf"
    assert "ip_local_port_range" not in f01["drift"]  # tab vs space is no drift

    f02 = portpool(facts, "f02")["persisted"]
    reuse = f02["keys"]["tcp_tw_reuse"]
    assert (reuse["value"], reuse["file"]) == ("1", "/etc/sysctl.d/60-override.conf")
    assert reuse["also"] == [{"file": "/etc/sysctl.d/50-legacy.conf", "line": 1, "value": "0"}]
    assert f02["drift"]["tcp_tw_reuse"]["runtime"] == "0"
    assert f02["keys"]["ip_local_port_range"] is None

    f03 = portpool(facts, "f03")["persisted"]
    fin = f03["keys"]["tcp_fin_timeout"]
    assert (fin["value"], fin["file"]) == ("30", "/etc/sysctl.conf")
    assert fin["also"][0]["file"] == "/etc/sysctl.d/10-base.conf"
    assert f03["drift"]["tcp_fin_timeout"] == {
        "runtime": "60", "persisted": "30", "file": "/etc/sysctl.conf"}


def test_listeners_in_range_per_host(facts):
    assert portpool(facts, "f02")["listeners_in_range"] == [
        {"address": "0.0.0.0", "port": 50100, "family": "ipv4", "reserved": False},
        {"address": "0.0.0.0", "port": 50200, "family": "ipv4", "reserved": True},
    ]
    assert portpool(facts, "f01")["listeners_in_range"] == []


def test_read_only_and_root_sees_sshd_limits(facts):
    for host in ("f01", "f02", "f03"):
        result = facts[0][host]
        assert result["changed"] is False
        facts_ = result["ansible_facts"]["portpool"]
        assert facts_["sockets"]["source"] == "netlink"
        sshd = [p for p in facts_["limits"]["processes"] if p["pid"] is not None]
        assert sshd, host
        assert sshd[0]["max_open_files"] is not None  # f03 too: become made it root
