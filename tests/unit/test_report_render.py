"""Rendering and writing every format (module_utils/portpool_report_render.py)."""

import json
import os
from xml.etree import ElementTree

import pytest
from ansible.module_utils.portpool_files import atomic_write, safe_file_name
from ansible.module_utils.portpool_report import FORMATS
from ansible.module_utils.portpool_report_render import (
    BackgroundWriter,
    build_report,
    make_environment,
    read_ahead,
    update_latest_link,
    write_folder,
)
from report_helpers import HOSTILE, SLICE_A, SLICE_B, TEMPLATES, parse_prometheus


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    dest = tmp_path_factory.mktemp("reports") / "20261123T200000Z"
    result = build_report([str(SLICE_A), str(SLICE_B)], str(dest), str(TEMPLATES))
    return dest, result


def test_every_format_is_written(report):
    dest, result = report
    assert set(result["files"]) == set(FORMATS)
    for name in ("fleet.json", "report.md", "report.html", "junit.xml"):
        assert (dest / name).stat().st_size > 0
    assert result["report"] == str(dest / "report.html")
    assert not [name for name in os.listdir(dest) if name.startswith(".")]


def test_latest_link_points_at_the_run(report):
    dest, result = report
    link = dest.parent / "latest"
    assert result["latest"] == str(link)
    assert os.readlink(link) == dest.name


def test_junit_parses_with_expected_counts(report):
    dest, _ = report
    root = ElementTree.parse(dest / "junit.xml").getroot()
    assert root.tag == "testsuites"
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert len(suites) == 7
    rules = 5
    assert int(root.get("tests")) == 7 * (rules + 1)
    cases = root.findall("testsuite/testcase")
    assert len(cases) == 7 * (rules + 1)
    assert int(root.get("errors")) == 3 == len(root.findall("testsuite/testcase/error"))
    assert int(root.get("failures")) == 3 == len(root.findall("testsuite/testcase/failure"))
    assert int(root.get("skipped")) == len(root.findall("testsuite/testcase/skipped"))
    web01 = {case.get("name"): case for case in suites["web01"].findall("testcase")}
    failure = web01["PP004: Listening service port inside the range and not reserved"]
    assert failure.find("failure").get("type") == "high"
    assert web01["PP005: tcp_tw_reuse enabled but tcp_timestamps is 0"].find("skipped") is not None
    low = web01["PP002: Port range ends have the same parity"]
    assert low.find("failure") is None and "[low]" in low.find("system-out").text
    db01 = {case.get("name"): case for case in suites["db01"].findall("testcase")}
    assert db01["audit"].find("error").get("type") == "unreachable"
    hostile = suites[HOSTILE]
    assert hostile.get("hostname") == HOSTILE
    message = hostile.find("testcase/failure").get("message")
    assert "<script>" in message and "\x01" not in message and "\ufffd" in message


def test_prometheus_files_parse_line_by_line(report):
    dest, _ = report
    files = sorted(os.listdir(dest / "prometheus"))
    assert files[0] == ".portpool-report"  # the marker; node_exporter reads only *.prom
    files = files[1:]
    assert len(files) == 7 and all(name.endswith(".prom") for name in files)
    web01, types = parse_prometheus((dest / "prometheus" / "web01.prom").read_text("utf-8"))
    assert set(types.values()) == {"gauge"}
    host = frozenset({("host", "web01")})
    assert web01[("portpool_ephemeral_pool_size_ports", host)] == 1000
    assert web01[("portpool_ephemeral_usable_ports", host)] == 1000
    assert web01[("portpool_tcp_time_wait_sockets", host)] == 800
    assert web01[("portpool_destination_utilisation_max_ratio", host)] == 0.85
    assert web01[("portpool_findings", host | {("severity", "high")})] == 2
    assert web01[("portpool_findings_waived", host)] == 1
    assert web01[("portpool_audit_status", host | {("status", "ok")})] == 1
    db01, _ = parse_prometheus((dest / "prometheus" / "db01.prom").read_text("utf-8"))
    host = frozenset({("host", "db01")})
    assert db01[("portpool_audit_status", host | {("status", "unreachable")})] == 1
    assert ("portpool_ephemeral_usable_ports", host) not in db01
    name = safe_file_name(HOSTILE) + ".prom"
    hostile, _ = parse_prometheus((dest / "prometheus" / name).read_text("utf-8"))
    assert ("portpool_ephemeral_usable_ports", frozenset({("host", HOSTILE)})) in hostile


def test_fleet_json_holds_the_merged_fleet(report):
    dest, _ = report
    document = json.loads((dest / "fleet.json").read_text("utf-8"))
    hosts = {host["host"]: host for host in document["hosts"]}
    assert document["totals"]["status"] == {"ok": 4, "unreachable": 1, "failed": 2}
    assert hosts["app02"]["audited_at"] == "2026-11-23T19:30:00+00:00"
    assert hosts["web01"]["source"].endswith("slice-a/results/web01.json")
    assert hosts[HOSTILE]["findings"][0]["message"].startswith('evil "quote"')
    assert len(document["result_dirs"]) == 2


def test_html_escapes_host_strings(report):
    dest, _ = report
    html = (dest / "report.html").read_text("utf-8")
    assert html.count("<script") == 1  # the report's own sorting script
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in html
    assert 'onerror="' not in html and "<b>grp</b>" not in html
    for remote in ('src="http', "src='http", 'href="http', "@import", "url("):
        assert remote not in html  # self-contained: nothing to fetch
    assert "script-src 'sha256-" in html


def test_markdown_escapes_host_strings(report):
    dest, _ = report
    text = (dest / "report.md").read_text("utf-8")
    assert "<script" not in text and "&lt;script&gt;" in text
    row = next(line for line in text.splitlines() if line.startswith("| &lt;script"))
    assert row.count(" | ") == row.replace("\\|", "").count(" | ")
    assert "| db01 | **unreachable** |" in text


def test_check_mode_writes_nothing(tmp_path):
    result = build_report([str(SLICE_A)], str(tmp_path / "run"), str(TEMPLATES),
                          check_mode=True)
    assert result["files"] == {} and result["latest"] is None
    assert not (tmp_path / "run").exists() and not (tmp_path / "latest").exists()
    assert result["totals"]["hosts"] == 5


def test_formats_subset_and_no_link(tmp_path):
    result = build_report([str(SLICE_A)], str(tmp_path / "run"), str(TEMPLATES),
                          formats=["junit"], latest_link=False)
    assert set(result["files"]) == {"junit"}
    assert sorted(os.listdir(tmp_path / "run")) == ["junit.xml"]
    assert result["report"] == str(tmp_path / "run")
    assert not (tmp_path / "latest").exists()


def test_rendering_again_replaces_the_prometheus_folder(tmp_path):
    run = tmp_path / "run"
    build_report([str(SLICE_A), str(SLICE_B)], str(run), str(TEMPLATES), formats=["prometheus"])
    assert len(os.listdir(run / "prometheus")) == 8
    build_report([str(SLICE_B)], str(run), str(TEMPLATES), formats=["prometheus"])
    assert sorted(os.listdir(run / "prometheus")) == [".portpool-report", "app02.prom",
                                                      "broken.prom", "web01.prom"]
    assert sorted(os.listdir(run)) == ["prometheus"]


def test_write_folder_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out"

    def files():
        yield "a.prom", "x\n"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_folder(str(target), files())
    assert os.listdir(tmp_path) == []


def test_latest_link_moves_and_never_replaces_a_real_folder(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    update_latest_link(str(tmp_path / "one"))
    update_latest_link(str(tmp_path / "two"))
    assert os.readlink(tmp_path / "latest") == "two"
    assert sorted(os.listdir(tmp_path)) == ["latest", "one", "two"]
    (tmp_path / "latest").unlink()
    (tmp_path / "latest").mkdir()
    with pytest.raises(OSError):
        update_latest_link(str(tmp_path / "one"))
    assert (tmp_path / "latest").is_dir()


def test_report_survives_missing_folders_and_warns(tmp_path):
    result = build_report([str(tmp_path / "nowhere")], str(tmp_path / "run"), str(TEMPLATES))
    assert result["totals"]["hosts"] == 0
    assert any("does not exist" in warning for warning in result["warnings"])
    ElementTree.parse(tmp_path / "run" / "junit.xml")


@pytest.mark.parametrize("kind", ["html", "junit", "markdown", "prometheus"])
def test_environments_escape_by_default(kind):
    env = make_environment(str(TEMPLATES), kind)
    out = env.from_string('{{ value }}').render(value='<a href="x">\n\x01\\')
    expected = {
        "html": "&lt;a href=&#34;x&#34;&gt;\n\ufffd\\",
        "junit": "&lt;a href=&#34;x&#34;&gt;\n\ufffd\\",
        "markdown": "&lt;a href=\"x\"&gt; \ufffd\\\\",
        "prometheus": '<a href=\\"x\\">\\n\x01\\\\',
    }[kind]
    assert out == expected


def test_read_ahead_keeps_order_and_reports_unreadable_files(tmp_path):
    paths = []
    for index in range(150):
        path = tmp_path / ("%03d.json" % index)
        path.write_bytes(b"%d" % index)
        paths.append(str(path))
    paths.insert(70, str(tmp_path / "missing.json"))
    contents = list(read_ahead(paths, batch=8, depth=2))
    assert isinstance(contents.pop(70), OSError)
    assert contents == [b"%d" % index for index in range(150)]


def test_read_ahead_can_stop_early(tmp_path):
    paths = [str(tmp_path / "x")] * 500
    (tmp_path / "x").write_bytes(b"x")
    reader = read_ahead(paths, batch=4, depth=1)
    assert next(reader) == b"x"
    reader.close()  # the reading thread ends, nothing hangs


def test_background_writer_raises_the_first_error(tmp_path):
    writer = BackgroundWriter(depth=1)
    writer.submit(atomic_write, str(tmp_path / "ok"), "ok")
    writer.submit(atomic_write, str(tmp_path / "no" / "such" / "dir"), "x")
    writer.submit(atomic_write, str(tmp_path / "skipped"), "x")
    with pytest.raises(OSError):
        writer.finish()
    assert (tmp_path / "ok").read_text() == "ok"
    assert not (tmp_path / "skipped").exists()
    assert sorted(os.listdir(tmp_path)) == ["ok"]


def test_parallel_rendering_writes_the_same_files(tmp_path):
    outputs = {}
    for parallel in (False, True):
        dest = tmp_path / str(parallel)
        result = build_report([str(SLICE_A), str(SLICE_B)], str(dest), str(TEMPLATES),
                              parallel=parallel, generated_at="2026-11-23T20:00:00Z",
                              latest_link=False)
        assert set(result["files"]) == set(FORMATS)
        assert ("child_private_kb" in result["stats"]) == parallel
        outputs[parallel] = {
            path.relative_to(dest).as_posix(): path.read_bytes().replace(
                str(dest).encode(), b"DEST")
            for path in sorted(dest.rglob("*")) if path.is_file()}
    assert outputs[True] == outputs[False]


def test_a_failing_forked_renderer_fails_the_report(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    for path in TEMPLATES.iterdir():
        if path.name != "junit.xml.j2":
            (templates / path.name).write_bytes(path.read_bytes())
    with pytest.raises(RuntimeError, match="json, junit, prometheus failed: TemplateNotFound"):
        build_report([str(SLICE_A)], str(tmp_path / "run"), str(templates), parallel=True)


def test_a_folder_listed_twice_is_read_once(tmp_path):
    result = build_report([str(SLICE_A), str(SLICE_A) + "/"], str(tmp_path / "run"),
                          str(TEMPLATES), formats=["json"])
    assert result["file_count"] == 5
    assert not [warning for warning in result["warnings"] if "duplicate" in warning]
