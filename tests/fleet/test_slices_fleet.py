"""Sliced audits merged end to end: three --limit runs, three result folders, one merge.

Group web holds four hosts, one of which ("odd") has a different port range: PP015
fires in an unsliced run. Split into three slices of two hosts, no slice sees
enough of web to judge drift; playbooks/report.yml merges the slices, judges PP015
again over the whole fleet, and its fleet.json must hold the unsliced findings.
"""

import json

import pytest

from tests.fleet.harness import Fleet, HostSpec

SLICES = (("w1", "d1"), ("w2", "odd"), ("w3", "d2"))


@pytest.fixture(scope="module")
def fleet():
    specs = [HostSpec(name, groups=("web",)) for name in ("w1", "w2", "w3")]
    specs.append(HostSpec("odd", groups=("web",),
                          sysctls={"net.ipv4.ip_local_port_range": "40000 60999"}))
    specs += [HostSpec(name, groups=("db",)) for name in ("d1", "d2")]
    with Fleet.create(specs) as made:
        yield made


def fleet_findings(run_dir):
    """{host: sorted (rule, severity, waived)} and PP015's messages, from fleet.json."""
    document = json.loads((run_dir / "fleet.json").read_text())
    found = {host["host"]: sorted((item["id"], item["severity"], item["waived"])
                                  for item in host["findings"]) for host in document["hosts"]}
    drift = {host["host"]: [item["message"] for item in host["findings"] if item["id"] == "PP015"]
             for host in document["hosts"]}
    return found, drift, document


def ok(result):
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_three_slices_merged_equal_one_unsliced_run(fleet, tmp_path):
    whole = tmp_path / "whole"
    ok(fleet.playbook("playbooks/audit.yml", extra_vars={"portpool_report_dir": str(whole)}))
    expected, expected_drift, _ = fleet_findings(whole)
    assert ("PP015", "low", False) in expected["odd"], expected
    assert "40000 60999" in expected_drift["odd"][0]

    folders = []
    for number, hosts in enumerate(SLICES, 1):
        folder = tmp_path / ("slice-%d" % number)
        # Slice 1 keeps its facts out of the event log (what AWX would store).
        lean = number == 1
        result = fleet.playbook(
            "playbooks/audit.yml", "--limit", ",".join(hosts), *(["-v"] if lean else []),
            extra_vars={"portpool_report_dir": str(folder),
                        "portpool_audit_slice": "shard-%d" % number,
                        "portpool_audit_lean_events": lean})
        ok(result)
        if lean:
            assert "hidden due to" in result.stdout and '"sockets"' not in result.stdout
            stored = json.loads((folder / "results" / "w1.json").read_text())
            assert stored["facts"]["sysctl"]["ip_local_port_range"]
        sliced, _, _ = fleet_findings(folder)
        assert set(sliced) == set(hosts)
        assert not any(rule == "PP015" for items in sliced.values() for rule, _s, _w in items)
        folders.append(str(folder))

    merged = tmp_path / "merged"
    result = fleet.playbook("playbooks/report.yml", extra_vars={
        "portpool_report_results": folders, "portpool_report_dir": str(merged),
        "portpool_preflight_fail_on": "low"})
    # The gate sees the merged drift, which no slice saw: it fails on PP015.
    assert result.returncode != 0 and "LOW PP015 odd" in result.stdout, result.stdout[-4000:]
    found, drift, document = fleet_findings(merged)
    assert found == expected
    assert drift == expected_drift
    origins = {host["host"]: host["origin"] for host in document["hosts"]}
    assert origins["odd"]["slice"] == "shard-2" and origins["d2"]["slice"] == "shard-3"
    assert len({origin["run"] for origin in origins.values()}) == 3
    assert "Run / slice" in (merged / "report.html").read_text()
    for name in ("report.md", "junit.xml", "prometheus/odd.prom"):
        assert (merged / name).is_file(), name

    # Without the gate the same merge renders and exits 0.
    ok(fleet.playbook("playbooks/report.yml", extra_vars={
        "portpool_report_results": folders, "portpool_report_dir": str(tmp_path / "again"),
        "portpool_report_gate": False}))


def test_slices_audited_under_different_policies_are_refused(fleet, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    ok(fleet.playbook("playbooks/audit.yml", "--limit", "w1,w2", extra_vars={
        "portpool_report_dir": str(first)}))
    ok(fleet.playbook("playbooks/audit.yml", "--limit", "w3,odd", extra_vars={
        "portpool_report_dir": str(second), "portpool_audit_min_usable_ports": 30000}))
    result = fleet.playbook("playbooks/report.yml", extra_vars={
        "portpool_report_results": [str(first), str(second)],
        "portpool_report_dir": str(tmp_path / "m")})
    assert result.returncode != 0
    assert "different policies" in result.stdout and "group web" in result.stdout
    assert not (tmp_path / "m").exists()
    ok(fleet.playbook("playbooks/report.yml", extra_vars={
        "portpool_report_results": [str(first), str(second)],
        "portpool_report_dir": str(tmp_path / "m"), "portpool_report_gate": False,
        "portpool_report_allow_mixed_policies": True}))
