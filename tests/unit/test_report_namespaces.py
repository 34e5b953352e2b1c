"""Containers' namespaces in the report: summary block, host view, fleet chart, Prometheus."""

import json

import pytest
from ansible.module_utils.portpool_report_render import build_report
from ansible.module_utils.portpool_result_summary import host_summary, read_summary
from ansible.module_utils.portpool_sysctl import pool_size
from report_helpers import HOSTILE, TEMPLATES, parse_prometheus


def namespace(name, kind, range_, reuse, time_wait, **labels):
    usable = pool_size(*range_)["usable"]
    return dict({
        "id": "net:[%d]" % (4026530000 + time_wait), "inode": 4026530000 + time_wait,
        "name": name, "kind": kind, "netns": None, "container": None, "pod": None,
        "holder": {"pid": 42, "comm": "nginx"}, "processes": 1, "error": None,
        "sysctl": {"ip_local_port_range": list(range_), "tcp_tw_reuse": reuse,
                   "tcp_timestamps": 1},
        "ephemeral": pool_size(*range_),
        "sockets": {"time_wait": time_wait},
        "destinations": {"count": 1, "top": [
            {"address": "198.18.0.2", "port": 5432, "time_wait": time_wait, "established": 3,
             "total": time_wait + 3, "utilisation": round((time_wait + 3) / usable, 4)}]},
        "listeners_in_range": [],
    }, **labels)


FACTS = {
    "sysctl": {"ip_local_port_range": [15000, 64999], "tcp_tw_reuse": 1, "tcp_timestamps": 1},
    "ephemeral": pool_size(15000, 64999),
    "sockets": {"time_wait": 0},
    "destinations": {"count": 0, "top": []},
    "namespaces": {
        "found": 3, "inspected": 2, "skipped": {"errors": 1}, "reasons": [],
        "stale_files": [], "seconds": 0.02,
        "items": [
            namespace("container web-1", "container", (32768, 60999), 2, 20000,
                      container={"id": "3f2a9c1b7d44", "name": "web-1"}),
            namespace("pod shop/cart", "kubernetes", (32768, 60999), 2, 100,
                      pod={"uid": "u1", "namespace": "shop", "name": "cart"}),
            dict(namespace("netns " + HOSTILE, "named", (32768, 60999), 2, 1),
                 netns=HOSTILE, sysctl=None, ephemeral=None, sockets=None, destinations=None,
                 error="cannot enter: Permission denied"),
        ]},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results = tmp_path_factory.mktemp("ns") / "results"
    results.mkdir()
    document = {"schema": 1, "host": "node1", "status": "ok", "error": None,
                "audited_at": "2026-12-04T15:00:00Z", "groups": ["k8s"], "findings": [],
                "summary": host_summary(FACTS, None)}
    (results / "node1.json").write_text(json.dumps(document))
    dest = results.parent / "report"
    build_report([str(results)], str(dest), str(TEMPLATES))
    return dest


def test_summary_block_carries_each_namespace_and_reads_back():
    block = host_summary(FACTS, None)["namespaces"]
    assert (block["found"], block["inspected"], block["skipped"]) == (3, 2, 1)
    web = block["items"][0]
    assert (web["name"], web["container"], web["range"], web["tcp_tw_reuse"]) == (
        "container web-1", "web-1", [32768, 60999], 2)
    assert web["rate"]["sustainable_per_s"] == round(28232 / 60, 1)
    assert web["rate"]["current_per_s"] == round(20000 / 60, 1)
    assert block["items"][1]["pod"] == "shop/cart"
    assert json.loads(json.dumps(read_summary(host_summary(FACTS, None))))["namespaces"] == \
        read_summary(host_summary(FACTS, None))["namespaces"]
    assert read_summary({"namespaces": {"items": [{"range": "1e308"}], "found": "x"}})[
        "namespaces"]["items"][0]["range"] is None
    assert host_summary({"sysctl": {}}, None)["namespaces"] is None


def test_host_view_lists_namespaces_under_their_host(report):
    html = (report / "report.html").read_text()
    view = html[html.index('id="host-node1"'):]
    assert "Network namespaces (containers, pods): 3 found, 2 read" in view
    assert "container web-1" in view and "pod shop/cart" in view
    assert "cannot enter: Permission denied" in view
    assert HOSTILE not in html  # escaped
    markdown = (report / "report.md").read_text()
    assert "| container web-1 | container | 32768-60999 | 2 | 28232 | 20000 |" in markdown


def test_fleet_chart_and_json_include_namespace_destinations(report):
    fleet = json.loads((report / "fleet.json").read_text())
    assert fleet["top_destinations"][0]["host"] == "node1 [container web-1]"
    assert fleet["hosts"][0]["namespaces"]["items"][0]["name"] == "container web-1"


def test_prometheus_labels_netns_container_pod(report):
    samples, types = parse_prometheus((report / "prometheus" / "node1.prom").read_text())
    assert set(types.values()) == {"gauge"}
    found = {labels: value for (metric, labels), value in samples.items()
             if metric == "portpool_namespace_time_wait_sockets"}
    by_container = {dict(labels)["container"]: value for labels, value in found.items()}
    assert by_container == {"web-1": 20000, "": 100}
    pods = {dict(labels)["pod"] for labels in found}
    assert pods == {"", "shop/cart"}
    assert samples[("portpool_namespaces_found", frozenset({("host", "node1")}))] == 3
    ratios = [labels for (metric, labels) in samples
              if metric == "portpool_namespace_destination_utilisation_ratio"]
    assert {dict(labels)["destination"] for labels in ratios} == {"198.18.0.2:5432"}
