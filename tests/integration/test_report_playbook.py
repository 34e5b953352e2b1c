"""The report role end to end: ansible-playbook on localhost, every format checked,
and the HTML report opened in headless Chromium through the DevTools protocol.

The result folders are the unit-test fixtures: two slices (merged, one host in
both), ok, unreachable and failed hosts, an unreadable file and a host whose
name and finding carry `<script>` that would set document.title if it ran.
"""

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "report"
SLICES = [str(FIXTURES / "slice-a" / "results"), str(FIXTURES / "slice-b" / "results")]
PLAYBOOK = ROOT / "tests" / "integration" / "report_playbook.yml"
HOSTILE = '<script>document.title="pwned"</script>'
TITLE = "portpool fleet report"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def playbook(cwd, *args, extra_vars):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), LANG="C.UTF-8",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-i", str(ROOT / "inventories" / "local" / "hosts.yml"), str(PLAYBOOK),
               "-e", json.dumps(extra_vars), *args]
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One playbook run from a scratch directory with the default output folder."""
    cwd = tmp_path_factory.mktemp("cwd")
    completed = playbook(cwd, extra_vars={"portpool_report_result_dirs": SLICES})
    latest = cwd / "reports" / "latest"
    assert latest.is_symlink(), completed.stdout
    return cwd, latest.resolve(), completed.stdout


def test_default_folder_is_a_timestamp_under_the_working_directory(run):
    cwd, dest, _ = run
    assert dest.parent == (cwd / "reports").resolve()
    assert len(dest.name) == 16 and dest.name.endswith("Z") and dest.name[8] == "T"
    assert sorted(os.listdir(dest)) == ["fleet.json", "junit.xml", "prometheus",
                                        "report.html", "report.md"]


def test_console_summary_ends_the_play(run):
    _, dest, stdout = run
    summary = stdout[stdout.index("Summarise the fleet"):]
    assert "portpool: 7 host(s): 4 ok, 1 unreachable, 2 failed" in summary
    assert "HOST" in summary and "db01" in summary and "unreachable" in summary
    assert "report: %s" % (dest / "report.html") in summary


def test_junit_validates_with_expected_counts(run):
    _, dest, _ = run
    root = ElementTree.parse(dest / "junit.xml").getroot()
    counts = {key: int(root.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": 42, "failures": 3, "errors": 3, "skipped": 16}
    assert len(root.findall("testsuite/testcase")) == 42


def test_fleet_json_and_prometheus(run):
    _, dest, _ = run
    document = json.loads((dest / "fleet.json").read_text("utf-8"))
    status = {host["host"]: host["status"] for host in document["hosts"]}
    assert status["db01"] == "unreachable" and status["app01"] == "failed"
    assert status[HOSTILE] == "ok"
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    try:
        from report_helpers import parse_prometheus
    finally:
        sys.path.pop(0)
    names = os.listdir(dest / "prometheus")
    assert ".portpool-report" in names  # the marker: the next report may replace it
    for name in (name for name in names if name.endswith(".prom")):
        samples, _types = parse_prometheus((dest / "prometheus" / name).read_text("utf-8"))
        assert any(key[0] == "portpool_audit_status" for key in samples)


def test_check_mode_still_writes_the_chosen_formats(tmp_path):
    dest = tmp_path / "out" / "run"
    playbook(tmp_path, "--check", extra_vars={
        "portpool_report_dir": str(dest), "portpool_report_result_dirs": SLICES[:1],
        "portpool_report_formats": ["junit", "markdown"], "portpool_report_latest_link": False})
    assert sorted(os.listdir(dest)) == ["junit.xml", "report.md"]
    assert not (tmp_path / "out" / "latest").exists()


class DevTools:
    """Headless Chromium driven over --remote-debugging-pipe (fds 3 and 4)."""

    def __init__(self, profile):
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--remote-debugging-pipe",
                "--user-data-dir=%s" % profile, "about:blank"]
        try:
            self.pid = os.posix_spawn(CHROMIUM, argv, dict(os.environ, LANG="C"), file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2), (os.POSIX_SPAWN_DUP2, commands_read, 3),
                (os.POSIX_SPAWN_DUP2, events_write, 4)])
        finally:
            for fd in (commands_read, events_write, devnull):
                os.close(fd)
        self._buffer = b""
        self._next = 0
        self.session = None

    def call(self, method, params=None, timeout=30):
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next:
                assert "error" not in reply, reply
                return reply["result"]

    def _receive(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            assert left > 0, "Chromium did not answer in time"
            ready, _, _ = select.select([self._events], [], [], left)
            if ready:
                chunk = os.read(self._events, 65536)
                assert chunk, "Chromium closed the DevTools pipe"
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True})
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def close(self):
        with contextlib.suppress(OSError):
            os.write(self._commands, json.dumps({"id": 0, "method": "Browser.close"}).encode()
                     + b"\0")
        for fd in (self._commands, self._events):
            os.close(fd)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return
            time.sleep(0.1)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)


PROBE = r"""
(() => {
  const table = document.getElementById("hosts");
  const hosts = () => Array.from(table.tBodies[0].rows, row => row.cells[0].textContent);
  const usable = Array.from(table.tHead.rows[0].cells)
    .find(cell => cell.textContent.trim() === "Usable");
  const before = hosts();
  usable.click();
  const ascending = hosts();
  usable.click();
  const descending = hosts();
  const cells = Array.from(document.querySelectorAll("td"), cell => cell.textContent);
  return {
    title: document.title,
    sortable: document.documentElement.getAttribute("data-sortable"),
    scripts: document.scripts.length,
    injected: document.querySelectorAll("img, td script, svg script").length
      + Array.from(document.querySelectorAll("b"))
          .filter(b => ["grp", "bold"].includes(b.textContent)).length,
    charts: Array.from(document.querySelectorAll("figure svg.chart"),
                       svg => [svg.closest("figure").id, svg.querySelectorAll("g.bar").length]),
    statuses: Array.from(table.querySelectorAll("tbody .badge[class*=status-]"),
                         badge => badge.textContent),
    before, ascending, descending,
    hostileAsText: cells.includes('<script>document.title="pwned"</script>'),
    messageAsText: cells.some(text => text.includes('<script>document.title="pwned2"</script>')),
  };
})()
"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/install-system-deps)")
def test_html_report_in_headless_chromium(run, tmp_path):
    _, dest, _ = run
    browser = DevTools(tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        browser.session = browser.call("Target.attachToTarget",
                                       {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Page.navigate", {"url": (dest / "report.html").as_uri()})
        deadline = time.monotonic() + 30
        while browser.evaluate("document.readyState") != "complete":
            assert time.monotonic() < deadline, "report.html did not load"
            time.sleep(0.1)
        seen = browser.evaluate(PROBE)
    finally:
        browser.close()
    assert seen["title"] == TITLE  # the hostile script would have set it
    assert seen["sortable"] == "ready"  # the report's own script ran (CSP hash right)
    assert seen["scripts"] == 1 and seen["injected"] == 0
    assert seen["hostileAsText"] and seen["messageAsText"]
    charts = dict(seen["charts"])
    # Findings by severity are the summary cards; no chart repeats them.
    assert set(charts) == {"chart-pool", "chart-destinations", "chart-rules"}
    assert charts["chart-pool"] == 4 and charts["chart-destinations"] == 5
    assert charts["chart-rules"] == 5
    assert sorted(seen["statuses"]) == sorted(
        ["ok"] * 4 + ["unreachable"] + ["failed"] * 2)
    assert seen["before"] == sorted(seen["before"], key=str.casefold)
    assert seen["ascending"] == ["app01", "broken", "db01", "web01", "app02", "web02", HOSTILE]
    assert seen["descending"] == [HOSTILE, "app02", "web02", "web01", "app01", "broken", "db01"]
