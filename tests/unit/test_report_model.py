"""Reading, merging and aggregating host results (module_utils/portpool_report.py)."""

import json

import pytest
from ansible.module_utils.portpool_files import parse_time
from ansible.module_utils.portpool_report import (
    build_model,
    destination_candidates,
    fleet_document,
    junit_cases,
    load_results,
    load_rules,
    merge_records,
    nice_axis,
    safe_file_name,
    summarise_result,
    summary_table,
    unique_file_names,
)
from ansible.module_utils.portpool_result_summary import host_summary
from report_helpers import HOSTILE, RULES, SLICE_A, SLICE_B

OPTIONS = {
    "fail_on": "high", "top_destinations": 20, "chart_hosts": 50, "console_hosts": 20,
    "title": "t", "generated_at": "2026-11-23T20:00:00Z", "result_dirs": [],
    "dest": "/r", "report_path": "/r/report.html",
}


def model_of(dirs, rules_paths=(RULES,), **options):
    warnings = []
    records, _count = load_results([str(d) for d in dirs], 20, warnings)
    rules = load_rules([str(p) for p in rules_paths], warnings)
    return build_model(records, rules, dict(OPTIONS, **options)), warnings


def finding(rule_id="PP001", severity="high", waived=False):
    return {"id": rule_id, "severity": severity, "title": "T " + rule_id, "host": "h",
            "message": "m", "recommendation": "r", "waived": waived}


def result(host="h", **fields):
    data = {"schema": 1, "host": host, "status": "ok", "error": None,
            "audited_at": "2026-11-23T19:00:00Z", "groups": [], "facts": None,
            "probe": None, "findings": []}
    data.update(fields)
    if "summary" not in fields and data["facts"] is not None:
        # What the audit writes beside the facts; the report reads only this.
        data["summary"] = host_summary(data["facts"], data["probe"])
    return data


def test_parse_time_accepts_z_offsets_and_naive_utc():
    assert parse_time("2026-11-23T19:00:00Z") == parse_time("2026-11-23T20:00:00+01:00")
    assert parse_time("2026-11-23T19:00:00") == parse_time("2026-11-23T19:00:00Z")
    assert parse_time("yesterday") is None
    assert parse_time(None) is None


def test_null_facts_give_null_metrics_not_errors():
    record = summarise_result(result(status="unreachable", error="ssh: timeout"), "h.json")
    assert record["status"] == "unreachable"
    assert record["pool"] == dict.fromkeys(("low", "high", "size", "reserved_in_range",
                                            "usable"))
    assert record["time_wait"] is None and record["worst_destination"] is None
    assert record["findings"] == [] and record["worst"] is None


def test_malformed_values_are_dropped_not_trusted():
    facts = {"ephemeral": {"size": "1000", "usable": True},
             "sockets": {"time_wait": 3.0},
             "destinations": {"top": [None, {"utilisation": "0.9"}, {"utilisation": float("nan")},
                                      {"address": "198.18.0.1", "port": 80, "utilisation": 0.4}],
                              "count": 4}}
    record = summarise_result(result(facts=facts, findings="nope"), "h.json")
    assert record["pool"]["size"] is None and record["pool"]["usable"] is None
    assert record["time_wait"] == 3
    assert record["worst_destination"]["address"] == "198.18.0.1"
    assert record["findings"] == []


def test_unknown_status_schema_and_unreadable_file_become_failed_hosts():
    warnings = []
    assert summarise_result(result(status="weird"), "x.json")["status"] == "failed"
    assert summarise_result(result(schema=2), "x.json")["status"] == "failed"
    record = summarise_result(None, "/r/results/lost-host.json", warnings=warnings)
    assert (record["host"], record["status"]) == ("lost-host", "failed")


def test_unknown_severity_is_counted_as_info_with_a_warning():
    warnings = []
    record = summarise_result(result(findings=[finding(severity="urgent")]), "h.json",
                              warnings=warnings)
    assert record["findings"][0]["severity"] == "info"
    assert warnings and "urgent" in warnings[0]


def test_counts_and_worst_ignore_waived_findings():
    record = summarise_result(result(findings=[
        finding("PP001", "critical", waived=True), finding("PP002", "medium"),
        finding("PP003", "low")]), "h.json")
    assert record["worst"] == "medium"
    assert record["unwaived"] == 2 and record["waived"] == 1
    assert record["counts"]["critical"] == 0
    assert [f["id"] for f in record["findings"]] == ["PP001", "PP002", "PP003"]


def test_destination_candidates_keeps_the_busiest_by_utilisation():
    entries = [{"utilisation": value, "n": value} for value in (0.1, 0.9, 0.5, -1, True)]
    kept = destination_candidates(entries, 2)
    assert [entry["n"] for _value, entry in kept] == [0.9, 0.5]
    assert destination_candidates("nope", 5) == []


def test_merge_newest_audited_at_wins_whatever_the_folder_order():
    old = summarise_result(result(audited_at="2026-11-23T18:00:00Z", groups=["old"]), "a")
    new = summarise_result(result(audited_at="2026-11-23T19:00:00Z", groups=["new"]), "b")
    for order in ([(0, old), (1, new)], [(0, new), (1, old)]):
        warnings = []
        merged = merge_records(order, warnings)
        assert merged["h"]["groups"] == ["new"]
        assert len(warnings) == 1 and "duplicate" in warnings[0]


def test_merge_ties_go_to_the_later_folder_and_timeless_results_lose():
    first = summarise_result(result(groups=["first"]), "a")
    second = summarise_result(result(groups=["second"]), "b")
    assert merge_records([(0, first), (1, second)])["h"]["groups"] == ["second"]
    timeless = summarise_result(result(audited_at=None, groups=["timeless"]), "c")
    assert merge_records([(0, first), (5, timeless)])["h"]["groups"] == ["first"]


def test_fixture_fleet_merges_two_slices():
    model, warnings = model_of([SLICE_A, SLICE_B])
    hosts = {record["host"]: record for record in model["hosts"]}
    assert set(hosts) == {"web01", "web02", "db01", "app01", "app02", "broken", HOSTILE}
    # web01 from slice-b is older: slice-a's findings win, the stale PP099 is gone.
    assert "PP099" not in {f["id"] for f in hosts["web01"]["findings"]}
    assert hosts["broken"]["status"] == "failed"
    assert any("broken.json" in warning for warning in warnings)
    assert model["totals"]["status"] == {"ok": 4, "unreachable": 1, "failed": 2}
    assert model["totals"]["findings"] == {"info": 0, "low": 1, "medium": 1, "high": 2,
                                           "critical": 1}
    assert model["totals"]["waived"] == 1
    assert model["totals"]["worst"] == "critical"


def test_rules_come_from_rules_json_and_from_findings():
    model, _ = model_of([SLICE_A, SLICE_B])
    rules = {rule["id"]: rule for rule in model["rules"]}
    assert rules["PP009"]["counts"]["high"] == 1 and rules["PP009"]["counts"]["medium"] == 1
    assert rules["PP009"]["hosts"] == 2
    assert rules["PP005"]["waived"] == 1 and rules["PP005"]["total"] == 0
    assert rules["PP001"]["title"] == "Usable pool below the policy minimum"


def test_without_rules_json_titles_and_severities_come_from_findings():
    model, _ = model_of([SLICE_A], rules_paths=())
    rules = {rule["id"]: rule for rule in model["rules"]}
    assert set(rules) == {"PP001", "PP002", "PP004", "PP005", "PP009"}
    assert rules["PP004"]["title"] == "Listening service port inside the range and not reserved"
    assert rules["PP004"]["severity"] == "high"


def test_unreadable_rules_file_is_a_warning(tmp_path):
    bad = tmp_path / "rules.json"
    bad.write_text("{nope", encoding="utf-8")
    warnings = []
    assert load_rules([str(bad), str(tmp_path / "missing.json")], warnings) == {}
    assert "unreadable rules file" in warnings[0]


@pytest.mark.parametrize("findings, fail_on, kind", [
    ([finding("PP001", "high")], "high", "failure"),
    ([finding("PP001", "medium")], "high", "passed"),
    ([finding("PP001", "medium")], "medium", "failure"),
    ([finding("PP001", "critical", waived=True)], "high", "skipped"),
    ([finding("PP001", "critical", waived=True), finding("PP001", "low")], "high", "passed"),
    ([finding("PP001", "low"), finding("PP001", "high")], "high", "failure"),
])
def test_junit_verdicts(findings, fail_on, kind):
    record = summarise_result(result(findings=findings), "h.json")
    cases, counts = junit_cases(record, ["PP001", "PP002"], fail_on)
    assert cases["PP001"]["kind"] == kind
    assert "PP002" not in cases
    assert counts["tests"] == 3
    assert counts["failures"] == (kind == "failure")
    assert counts["skipped"] == (kind == "skipped")


def test_junit_unreachable_host_is_one_error_and_skips_its_rules():
    record = summarise_result(result(status="unreachable", error="x"), "h.json")
    cases, counts = junit_cases(record, ["PP001", "PP002"], "high")
    assert cases == {}
    assert counts == {"tests": 3, "failures": 0, "errors": 1, "skipped": 2}


def test_fleet_top_destinations_span_hosts_busiest_first():
    model, _ = model_of([SLICE_A, SLICE_B])
    top = model["top_destinations"]
    assert [(d["host"], d["address"]) for d in top[:2]] == [
        ("web01", "198.18.0.10"), ("app02", "198.18.0.30")]
    assert top[0]["utilisation"] == 0.85
    assert len(top) == 5


def test_top_destinations_limit_applies():
    model, _ = model_of([SLICE_A, SLICE_B], top_destinations=2)
    assert len(model["top_destinations"]) == 2


def test_charts_are_precomputed_geometry():
    model, _ = model_of([SLICE_A, SLICE_B], chart_hosts=2)
    pool = model["charts"]["pool"]
    assert (pool["shown"], pool["of"]) == (2, 4)
    assert [row["label"] for row in pool["rows"]] == ["web01", "app02"]
    for chart in model["charts"].values():
        for row in chart["rows"]:
            for segment in row["segments"]:
                assert 0 < segment["w"] <= chart["bar_width"]
    severity = {row["label"]: row for row in model["charts"]["severity"]["rows"]}
    assert severity["critical"]["value_label"] == "1"


def test_summary_lists_problems_first_and_strips_control_characters():
    model, _ = model_of([SLICE_A, SLICE_B], console_hosts=4)
    lines = model["summary"].split("\n")
    assert lines[0].startswith("portpool: 7 host(s): 4 ok, 1 unreachable, 2 failed")
    assert lines[1].split()[:2] == ["HOST", "STATUS"]
    assert [line.split()[0] for line in lines[2:5]] == ["app01", "broken", "db01"]
    assert lines[-2] == "... 3 more host(s) in the report"
    assert lines[-1] == "report: /r/report.html"
    assert all(line == line.rstrip() for line in lines)
    record = summarise_result(result(host="evil\x1b[2J", findings=[finding()]), "h.json")
    table = summary_table([record], model["totals"], 5, "/r")
    assert "\x1b" not in table and "evil?[2J" in table


def test_fleet_document_is_json_and_complete():
    model, _ = model_of([SLICE_A, SLICE_B])
    document = json.loads(json.dumps(fleet_document(model)))
    hosts = {host["host"]: host for host in document["hosts"]}
    assert hosts["db01"]["status"] == "unreachable" and hosts["db01"]["pool"]["usable"] is None
    assert hosts["web01"]["worst_destination"]["port"] == 443
    assert hosts["web01"]["findings_by_severity"]["high"] == 2
    assert document["totals"]["hosts"] == 7
    assert "candidates" not in hosts["web01"] and "junit" not in hosts["web01"]


@pytest.mark.parametrize("maximum, axis", [
    (2, (2, 1)), (1, (1, 1)), (0, (1, 1)), (7, (8, 2)), (64512, (80000, 20000)),
    (28232, (30000, 10000)), (100, (100, 25)),
])
def test_nice_axis_has_whole_round_steps(maximum, axis):
    assert nice_axis(maximum) == axis


def test_host_file_names_stay_unique():
    hosts = [summarise_result(result(host=name), name) for name in
             ("a/b", safe_file_name("a/b"), "Web01", "web01")]
    unique_file_names(hosts)
    names = [record["file"] for record in hosts]
    assert len({name.casefold() for name in names}) == 4
