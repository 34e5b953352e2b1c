"""What the report writes on disk: modes, planted links, foreign folders, fsync (issue 11).

The report folder holds every host's facts, so it must be private; it may be a
shared folder, so nothing planted in it may redirect a write; and it may be a
folder the user already had, so the report replaces only what it made.
"""

import json
import os
import stat
from pathlib import Path

import pytest
from ansible.module_utils import portpool_files
from ansible.module_utils.portpool_report_render import MARKER_FILE, build_report

from tests.integration.test_report_playbook import SLICES, playbook

TEMPLATES = str(Path(__file__).resolve().parents[2] / "roles" / "portpool_report" / "templates")


@pytest.fixture
def open_umask():
    """umask 0, so only the code's explicit modes decide (restored afterwards)."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_report_files_are_0600_in_0700_folders(tmp_path, open_umask):
    dest = tmp_path / "run"
    build_report(SLICES, str(dest), TEMPLATES, latest_link=False)
    assert mode(dest) == 0o700
    for name in ("fleet.json", "report.md", "report.html", "junit.xml"):
        assert mode(dest / name) == 0o600, name
    assert mode(dest / "prometheus") == 0o700
    for name in os.listdir(dest / "prometheus"):
        assert mode(dest / "prometheus" / name) == 0o600, name


def test_a_link_planted_in_the_folder_is_replaced_never_written_through(tmp_path):
    dest = tmp_path / "shared"
    dest.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (dest / "report.md").symlink_to(victim)
    # The old code's predictable temporary names, for this and nearby pids.
    for pid in range(os.getpid() - 5, os.getpid() + 5):
        (dest / (".report.html.tmp-%d" % pid)).symlink_to(victim)
    build_report(SLICES, str(dest), TEMPLATES, latest_link=False)
    assert victim.read_text() == "precious\n"
    assert not (dest / "report.md").is_symlink()
    assert (dest / "report.md").read_text().startswith("# portpool fleet report")


def test_atomic_write_fsyncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = portpool_files.fsync_dir

    def record(path):
        synced.append((path, (tmp_path / "f").exists()))
        real(path)

    monkeypatch.setattr(portpool_files, "fsync_dir", record)
    portpool_files.atomic_write(str(tmp_path / "f"), "x")
    assert synced == [(str(tmp_path), True)]


def test_a_foreign_prometheus_folder_is_kept_and_the_rest_written(tmp_path):
    dest = tmp_path / "monitoring"
    (dest / "prometheus" / "rules").mkdir(parents=True)
    (dest / "prometheus" / "prometheus.yml").write_text("groups: []\n")
    (dest / "prometheus" / "rules" / "alerts.yml").write_text("groups: []\n")
    completed = playbook(tmp_path, extra_vars={
        "portpool_report_dir": str(dest), "portpool_report_result_dirs": SLICES,
        "portpool_report_latest_link": False})
    assert (dest / "prometheus" / "prometheus.yml").read_text() == "groups: []\n"
    assert (dest / "prometheus" / "rules" / "alerts.yml").exists()
    assert "Prometheus files not written" in completed.stdout + completed.stderr
    assert json.loads((dest / "fleet.json").read_text())["totals"]["hosts"] == 7
    assert (dest / "report.html").exists()


def test_portpool_folders_are_replaced_including_pre_marker_ones(tmp_path):
    dest = tmp_path / "run"
    (dest / "prometheus").mkdir(parents=True)
    (dest / "prometheus" / "old-host.prom").write_text("# old\n")
    build_report(SLICES, str(dest), TEMPLATES, latest_link=False, formats=["prometheus"])
    names = os.listdir(dest / "prometheus")
    assert "old-host.prom" not in names and MARKER_FILE in names
    build_report(SLICES[1:], str(dest), TEMPLATES, latest_link=False, formats=["prometheus"])
    assert len(os.listdir(dest / "prometheus")) == 4
    assert not [name for name in os.listdir(dest) if name.startswith(".")]


def test_a_linked_prometheus_folder_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.prom").write_text("# keep\n")
    dest = tmp_path / "run"
    dest.mkdir()
    (dest / "prometheus").symlink_to(elsewhere)
    outcome = build_report(SLICES, str(dest), TEMPLATES, latest_link=False)
    assert "prometheus" not in outcome["files"]
    assert any("Prometheus files not written" in w for w in outcome["warnings"])
    assert os.listdir(elsewhere) == ["keep.prom"]


def test_private_false_gives_readable_files_for_another_user(tmp_path, open_umask):
    dest = tmp_path / "run"
    build_report(SLICES, str(dest), TEMPLATES, latest_link=False, private=False)
    assert mode(dest) == 0o755 and mode(dest / "prometheus") == 0o755
    assert mode(dest / "report.html") == 0o644
    assert {mode(path) for path in (dest / "prometheus").iterdir()} == {0o644}
