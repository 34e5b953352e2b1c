"""Namespace rules (PP020-PP022): containers' pools judged in their own terms."""

import copy
import json
from pathlib import Path

import pytest
from ansible.module_utils import portpool_audit as audit
from ansible.module_utils import portpool_audit_namespaces as rules
from ansible.module_utils.portpool_audit_advice import apply_fix
from ansible.module_utils.portpool_sysctl import pool_size

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
DOCKER_ITEM = {
    "id": "net:[4026532301]", "inode": 4026532301, "name": "container web-1",
    "kind": "container", "netns": None,
    "container": {"id": "3f2a9c1b7d44", "name": "web-1"}, "pod": None,
    "holder": {"pid": 5123, "comm": "nginx"}, "processes": 3, "error": None,
}


def namespace(range_=(32768, 60999), reuse=2, reserved=(), destinations=(), listeners=(),
              **extra):
    item = dict(copy.deepcopy(DOCKER_ITEM), **extra)
    usable = pool_size(range_[0], range_[1], [list(span) for span in reserved])["usable"]
    item.update({
        "sysctl": {"ip_local_port_range": list(range_), "tcp_tw_reuse": reuse,
                   "tcp_timestamps": 1, "ip_local_reserved_ports": [list(s) for s in reserved]},
        "ephemeral": pool_size(range_[0], range_[1], [list(span) for span in reserved]),
        "sockets": {"time_wait": sum(d["time_wait"] for d in destinations)},
        "destinations": {"count": len(destinations), "top": [
            dict(d, utilisation=round(d["total"] / usable, 4)) for d in destinations]},
        "listeners_in_range": list(listeners),
    })
    return item


@pytest.fixture
def tuned_host():
    facts = json.loads((FIXTURES / "facts_clean.json").read_text())
    facts["sysctl"]["ip_local_port_range"] = [15000, 64999]
    facts["sysctl"]["tcp_tw_reuse"] = 1
    facts["ephemeral"] = pool_size(15000, 64999)
    return facts


def judge(facts, **policy):
    return audit.evaluate_host(audit.context("h1", facts, None, policy=policy))


def with_namespaces(facts, *items):
    facts = copy.deepcopy(facts)
    facts["namespaces"] = {"found": len(items), "inspected": len(items), "items": list(items),
                           "skipped": {}, "reasons": [], "stale_files": [], "seconds": 0.01}
    return facts


def test_defaults_inside_a_tuned_host_are_flagged_with_runtime_advice(tuned_host):
    found = judge(with_namespaces(tuned_host, namespace()))
    (finding,) = [f for f in found if f["id"] == "PP020"]
    assert "container web-1" in finding["message"]
    assert "kernel's defaults" in finding["message"]
    (fix,) = finding["fixes"]
    assert fix["settings"] == {"net.ipv4.ip_local_port_range": "15000 64999",
                               "net.ipv4.tcp_tw_reuse": "1"}
    assert fix["shell"] == [
        "nsenter --net=/proc/5123/ns/net sysctl -w 'net.ipv4.ip_local_port_range=15000 64999'",
        "nsenter --net=/proc/5123/ns/net sysctl -w 'net.ipv4.tcp_tw_reuse=1'"]
    assert fix["container"][0] == ("docker run --sysctl 'net.ipv4.ip_local_port_range=15000 "
                                   "64999' --sysctl 'net.ipv4.tcp_tw_reuse=1' ...")
    assert fix["file"] is None and fix["file_lines"] == []


def test_a_wider_namespace_range_or_an_untuned_host_is_fine(tuned_host):
    assert not [f for f in judge(with_namespaces(tuned_host, namespace((10000, 65000), 1)))
                if f["id"].startswith("PP02")]
    untuned = copy.deepcopy(tuned_host)
    untuned["sysctl"].update(ip_local_port_range=[32768, 60999], tcp_tw_reuse=2)
    untuned["ephemeral"] = pool_size(32768, 60999)
    assert not [f for f in judge(with_namespaces(untuned, namespace()))
                if f["id"].startswith("PP02")]


def test_the_policy_desired_value_wins_over_the_host(tuned_host):
    found = judge(with_namespaces(tuned_host, namespace((15000, 64999), 1)),
                  desired={"tcp_tw_reuse": 0})
    (finding,) = [f for f in found if f["id"] == "PP020"]
    assert finding["fixes"][0]["settings"] == {"net.ipv4.tcp_tw_reuse": "0"}


def test_kubernetes_pod_and_named_namespace_advice(tuned_host):
    pod = namespace(kind="kubernetes", name="pod shop/cart",
                    pod={"uid": "u", "namespace": "shop", "name": "cart"})
    named = namespace(kind="named", name="netns blue", netns="blue", inode=7, id="net:[7]")
    found = [f for f in judge(with_namespaces(tuned_host, pod, named)) if f["id"] == "PP020"]
    by_name = {f["fixes"][0]["namespace"]["name"]: f["fixes"][0] for f in found}
    assert by_name["pod shop/cart"]["container"][:3] == [
        "spec.securityContext.sysctls:", "  - name: net.ipv4.ip_local_port_range",
        '    value: "15000 64999"']
    assert by_name["netns blue"]["shell"][0].startswith(
        "ip netns exec blue sysctl -w 'net.ipv4.ip_local_port_range=")
    assert by_name["netns blue"]["container"] == []


def test_destination_near_a_namespace_pool(tuned_host):
    busy = namespace((15000, 64999), 1, destinations=[
        {"address": "198.18.0.2", "port": 5432, "time_wait": 45000, "established": 10,
         "total": 45010}])
    (finding,) = [f for f in judge(with_namespaces(tuned_host, busy)) if f["id"] == "PP021"]
    assert finding["severity"] == "high"
    assert "198.18.0.2:5432" in finding["message"]
    low, high = (int(x) for x in
                 finding["fixes"][0]["settings"]["net.ipv4.ip_local_port_range"].split())
    assert high == 64999 and low % 2 != high % 2
    assert high - low + 1 >= 45010 / 0.5 or low == 1024


def test_listener_inside_a_namespace_range(tuned_host):
    item = namespace((15000, 64999), 1, listeners=[
        {"address": "0.0.0.0", "port": 40500, "family": "ipv4", "reserved": False}])
    (finding,) = [f for f in judge(with_namespaces(tuned_host, item)) if f["id"] == "PP022"]
    assert finding["fixes"][0]["settings"] == {"net.ipv4.ip_local_reserved_ports": "40500"}


def test_each_offered_namespace_fix_clears_its_finding(tuned_host):
    items = [namespace(listeners=[{"address": "0.0.0.0", "port": 40500, "family": "ipv4",
                                   "reserved": False}])]
    facts = with_namespaces(tuned_host, *items)
    for finding in judge(facts):
        if not finding["id"].startswith("PP02"):
            continue
        for fix in finding["fixes"]:
            after = apply_fix(facts, fix)
            assert finding["message"] not in [f["message"] for f in judge(after)]
            # The host itself is untouched by a namespace's fix.
            assert after["sysctl"] == facts["sysctl"]


def test_unread_namespaces_are_not_judged(tuned_host):
    unread = dict(copy.deepcopy(DOCKER_ITEM), sysctl=None, ephemeral=None, sockets=None,
                  destinations=None, listeners_in_range=None, error="cannot enter")
    assert rules.namespaces(audit.context("h1", with_namespaces(tuned_host, unread))) == []
