"""One malformed result file becomes a failed entry; everything else is written (M4, L9-L13)."""

import json
import os

import pytest
from ansible.module_utils.portpool_files import safe_file_name, unique_file_names
from ansible.module_utils.portpool_report import console_text, markdown_text
from ansible.module_utils.portpool_report_render import build_report, read_ahead
from ansible.module_utils.portpool_result_summary import host_summary
from report_helpers import TEMPLATES, parse_prometheus

FACTS = {"sysctl": {"tcp_tw_reuse": 2, "tcp_timestamps": 1},
         "ephemeral": {"low": 32768, "high": 60999, "size": 28232, "reserved_in_range": 0,
                       "usable": 28232},
         "sockets": {"time_wait": 5},
         "destinations": {"top": [{"address": "198.18.0.7", "port": 80, "time_wait": 5,
                                   "established": 0, "total": 5, "utilisation": 0.01}],
                          "count": 1}}


def good(host="good"):
    return {"schema": 1, "host": host, "status": "ok", "error": None,
            "audited_at": "2026-11-23T19:00:00Z", "groups": [], "facts": None, "probe": None,
            "findings": [], "summary": host_summary(FACTS, None)}


def hostile_summary():
    summary = host_summary(FACTS, None)
    summary["destinations"][0]["utilisation"] = 1e308
    summary["time_wait"] = 1e308
    summary["pool"]["usable"] = 10 ** 300
    summary["rate"]["sustainable_per_s"] = 1e308
    return summary


CASES = {
    "huge-number": json.dumps(dict(good("huge-number"), summary=hostile_summary())),
    "deep": "[" * 200000 + "]" * 200000,
    "deep-findings": json.dumps(dict(good("deep-findings"))).replace(
        '"findings": []', '"findings": [' + "[" * 5000 + "]" * 5000 + "]"),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    (results / "good.json").write_text(json.dumps(good()), encoding="utf-8")
    for name, text in CASES.items():
        (results / (name + ".json")).write_text(text, encoding="utf-8")
    with open(results / "huge.json", "wb") as handle:   # sparse: no disk, 17 MiB
        handle.truncate(17 * 1024 * 1024)
    dest = results.parent / "out"
    outcome = build_report([str(results)], str(dest), str(TEMPLATES), latest_link=False)
    return dest, outcome


def hosts(dest):
    return {h["host"]: h for h in json.loads((dest / "fleet.json").read_text())["hosts"]}


def test_every_format_is_written_despite_the_bad_files(run):
    dest, outcome = run
    assert set(outcome["files"]) == {"json", "markdown", "html", "junit", "prometheus"}
    assert hosts(dest)["good"]["status"] == "ok"
    assert hosts(dest)["good"]["pool"]["usable"] == 28232


def test_deep_nesting_and_huge_files_are_failed_entries_with_the_reason(run):
    dest, _ = run
    by_host = hosts(dest)
    assert by_host["deep"]["status"] == "failed"
    assert "nested too deeply" in by_host["deep"]["error"]
    assert by_host["huge"]["status"] == "failed"
    assert "larger than the 16 MiB limit" in by_host["huge"]["error"]
    assert "huge.json" in by_host["huge"]["error"]


def test_out_of_range_numbers_are_clamped_or_dropped(run):
    dest, _ = run
    host = hosts(dest)["huge-number"]
    assert host["status"] == "ok"
    assert host["worst_destination"]["utilisation"] == 100.0
    assert host["time_wait"] is None and host["pool"]["usable"] is None
    assert host["rate"]["sustainable_per_s"] is None
    prom = (dest / "prometheus" / "huge-number.prom").read_text()
    parse_prometheus(prom)


def test_deep_findings_keep_the_host(run):
    dest, _ = run
    assert "deep-findings" in hosts(dest)


def test_read_ahead_holds_a_bounded_number_of_bytes(tmp_path):
    paths = []
    for index in range(6):
        path = tmp_path / ("%d.json" % index)
        path.write_bytes(b"x" * 1000)
        paths.append(str(path))
    seen = list(read_ahead(paths, batch=64, depth=1, chunk_bytes=2500))
    assert [len(item) for item in seen] == [1000] * 6


def test_bidi_and_escape_characters_are_neutralised():
    name = "\u202egnp.exe-rtl esc\x1b[31mred"
    assert "\u202e" not in console_text(name) and "\x1b" not in console_text(name)
    text = markdown_text(name)
    assert "\u202e" not in text and "\x1b" not in text and "\ufffd" in text
    for char in "\u2066\u2067\u2068\u2069\u200e\u200f\u061c":
        assert char not in markdown_text("a" + char) and char not in console_text("a" + char)


def test_file_names_are_ascii_and_unique_ignoring_case():
    assert safe_file_name("p\u00f6rt") == "p_rt-" + safe_file_name("p\u00f6rt").split("-")[-1]
    assert safe_file_name("p\u00f6rt").isascii() and safe_file_name("\u0661\u0662").isascii()
    assert unique_file_names(["WEB01", "web01", "Web01"]) == ["WEB01", "web01-2", "Web01-3"]


def test_hosts_differing_only_in_case_get_separate_prometheus_files(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps(good("WEB01")))
    (results / "b.json").write_text(json.dumps(good("web01")))
    build_report([str(results)], str(tmp_path / "out"), str(TEMPLATES), latest_link=False,
                 formats=["prometheus"])
    names = sorted(os.listdir(tmp_path / "out" / "prometheus"))
    assert len({name.casefold() for name in names}) == len(names) == 3
