"""What the report shows per host: measurement, rates, views, charts, fix-first, Prometheus."""

import json
import re
from html.parser import HTMLParser

import pytest
from ansible.module_utils.portpool_report import build_model, load_results, load_rules
from ansible.module_utils.portpool_report_render import build_report
from ansible.module_utils.portpool_result_summary import host_summary
from report_helpers import RULES, SLICE_A, SLICE_B, TEMPLATES, parse_prometheus

OPTIONS = {
    "fail_on": "high", "top_destinations": 20, "chart_hosts": 50, "console_hosts": 20,
    "title": "t", "generated_at": "2026-11-23T20:00:00Z", "result_dirs": [],
    "dest": "/r", "report_path": "/r/report.html",
}


def finding(rule_id, severity="high", waived=False, host="h"):
    return {"id": rule_id, "severity": severity, "title": "T " + rule_id, "host": host,
            "message": "m", "recommendation": "fix " + rule_id, "waived": waived}


def write_result(folder, host, findings=(), top=None):
    facts = {"sysctl": {"tcp_tw_reuse": 2, "tcp_timestamps": 1},
             "ephemeral": {"low": 32768, "high": 60999, "size": 28232,
                           "reserved_in_range": 0, "usable": 28232},
             "sockets": {"time_wait": 0},
             "destinations": {"top": top or [], "count": len(top or [])}}
    data = {"schema": 1, "host": host, "status": "ok", "error": None,
            "audited_at": "2026-11-23T19:00:00Z", "groups": [], "facts": None,
            "probe": None, "findings": list(findings), "summary": host_summary(facts, None)}
    (folder / (host + ".json")).write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    dest = tmp_path_factory.mktemp("reports") / "run"
    build_report([str(SLICE_A), str(SLICE_B)], str(dest), str(TEMPLATES), latest_link=False)
    return dest


def test_fleet_json_carries_each_hosts_measurement_and_rates(report):
    hosts = {h["host"]: h for h in json.loads((report / "fleet.json").read_text())["hosts"]}
    web01 = hosts["web01"]
    assert (web01["probe"]["held"], web01["probe"]["expected"]) == (998, 1000)
    assert web01["probe"]["stopped_by"] == "EADDRNOTAVAIL"
    assert web01["probe"]["missing_ports"] == [40000, 40998]
    # 1000 usable / 60 s; 700 TIME_WAIT to the busiest destination / 60 s.
    assert web01["rate"]["sustainable_per_s"] == 16.7 and web01["rate"]["current_per_s"] == 11.7
    assert hosts["db01"]["rate"] is None and hosts["db01"]["probe"] is None


def test_markdown_shows_held_expected_stopped_by_missing_and_both_rates(report):
    text = (report / "report.md").read_text()
    section = text[text.index('<a id="host-web01"></a>'):]
    section = section[:section.index("\n### ")]
    assert "- Probe: held 998 of 1,000 expected, stopped by EADDRNOTAVAIL" in section
    assert "- Missing ports: 40000, 40998" in section
    assert "- New connections now: 11.7/s to 198.18.0.10:443" in section
    assert "- Sustainable: 16.7/s to 198.18.0.10:443 (1,000 usable / 60 s TIME" in section
    assert "| [web01](#host-web01) |" in text


class Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and (attrs.get("href") or "").startswith("#"):
            self.links.append(attrs["href"][1:])


def test_html_links_every_host_to_its_view_and_every_link_lands(report):
    parser = Anchors()
    parser.feed((report / "report.html").read_text())
    assert {"host-web01", "host-db01", "host-app02"} <= parser.ids
    assert "host-web01" in parser.links and "rule-PP009" in parser.links
    assert set(parser.links) <= parser.ids, set(parser.links) - parser.ids


def test_html_host_view_has_the_probe_and_rates(report):
    html = (report / "report.html").read_text()
    view = html[html.index('id="host-web01"'):]
    view = view[:view.index("</details>")]
    assert "held 998 of 1,000 expected, stopped by EADDRNOTAVAIL" in view
    assert "40000, 40998" in view and "16.7/s to 198.18.0.10:443" in view


def test_destination_chart_has_warn_and_high_threshold_lines(report):
    html = (report / "report.html").read_text()
    chart = html[html.index('id="chart-destinations"'):]
    chart = chart[:chart.index("</figure>")]
    lines = re.findall(r'class="threshold threshold-(\w+)" x1="([\d.]+)"', chart)
    # The chart's axis is 0-100 % over 340 px: warn at 50 %, high at 80 %.
    assert lines == [("warn", "170.0"), ("high", "272.0")]


def model_for(folder, **options):
    warnings = []
    records, _ = load_results([str(folder)], 20, warnings)
    return build_model(records, load_rules([str(RULES)], warnings), dict(OPTIONS, **options))


def test_rule_sections_fold_empty_rules_and_chips_are_not_repeated(tmp_path):
    write_result(tmp_path, "proxy3", [finding("PP005", "medium"), finding("PP015", "medium"),
                                      finding("PP015", "low")])
    model = model_for(tmp_path)
    assert [rule["id"] for rule in model["rule_sections"]] == ["PP005", "PP015"]
    quiet = [rule["id"] for rule in model["quiet_rules"]]
    assert "PP001" in quiet and "PP005" not in quiet
    assert model["hosts"][0]["chips"] == [("PP005", "medium", False), ("PP015", "medium", False)]


def test_fix_first_orders_by_severity_then_hosts(tmp_path):
    write_result(tmp_path, "a", [finding("PP009", "high"), finding("PP002", "low")])
    write_result(tmp_path, "b", [finding("PP009", "high"), finding("PP004", "high")])
    write_result(tmp_path, "c", [finding("PP001", "critical", waived=True),
                                 finding("PP011", "medium")])
    model = model_for(tmp_path)
    order = [(item["id"], item["severity"], item["hosts"]) for item in model["fix_first"]]
    assert order == [("PP009", "high", 2), ("PP004", "high", 1), ("PP011", "medium", 1),
                     ("PP002", "low", 1)]
    assert model["fix_first"][0]["first_hosts"] == [{"host": "a", "file": "a"},
                                                    {"host": "b", "file": "b"}]
    assert [rule["id"] for rule in model["rule_sections"]][:4] == \
        ["PP009", "PP004", "PP011", "PP002"]


def dest(port, utilisation, time_wait=10):
    return {"address": "198.18.0.9", "port": port, "time_wait": time_wait, "established": 0,
            "total": time_wait, "utilisation": utilisation}


def test_prometheus_exports_top_n_destinations_and_zero_without_one(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    write_result(results, "busy", top=[dest(port, port / 10) for port in (1, 2, 3, 4)])
    write_result(results, "idle")
    build_report([str(results)], str(tmp_path / "out"), str(TEMPLATES), latest_link=False,
                 host_destinations=3, formats=["prometheus"])
    busy, _ = parse_prometheus((tmp_path / "out" / "prometheus" / "busy.prom").read_text())
    series = {dict(labels)["destination"]: value for (name, labels), value in busy.items()
              if name == "portpool_destination_utilisation_ratio"}
    assert series == {"198.18.0.9:4": 0.4, "198.18.0.9:3": 0.3, "198.18.0.9:2": 0.2}
    idle, _ = parse_prometheus((tmp_path / "out" / "prometheus" / "idle.prom").read_text())
    host = frozenset({("host", "idle")})
    assert idle[("portpool_destination_utilisation_max_ratio", host)] == 0
    assert idle[("portpool_new_connections_current_per_second", host)] == 0
    assert idle[("portpool_new_connections_sustainable_per_second", host)] == 470.5


def test_the_report_reads_the_summary_never_the_raw_facts(tmp_path):
    write_result(tmp_path, "new")
    data = json.loads((tmp_path / "new.json").read_text())
    data["facts"] = {"ephemeral": {"usable": 7}, "sockets": {"time_wait": 7}}
    (tmp_path / "new.json").write_text(json.dumps(data))
    old = dict(data, host="old", summary=None)
    (tmp_path / "old.json").write_text(json.dumps(old))
    warnings = []
    records, _ = load_results([str(tmp_path)], 20, warnings)
    assert records["new"]["pool"]["usable"] == 28232 and records["new"]["time_wait"] == 0
    assert records["old"]["pool"]["usable"] is None and records["old"]["rate"] is None
    assert [w for w in warnings if "no summary block" in w] == [
        "1 host result(s) have no summary block (written by an older audit), so their "
        "pool and rates are not shown: old"]
