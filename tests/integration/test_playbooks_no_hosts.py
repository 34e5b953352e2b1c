"""audit.yml and preflight.yml with no host: a clear failure, and no stale report passes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OLD_RUN = "20260101T000000Z"


def _playbook(tmp_path, playbook):
    # From an empty working folder, so reports/ is the test's own.
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "empty.yml"), str(REPO / playbook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("playbook", ["audit.yml", "playbooks/preflight.yml"])
def test_no_host_fails_clearly_and_names_the_stale_latest_link(tmp_path, playbook):
    (tmp_path / "empty.yml").write_text("all:\n  hosts: {}\n")
    (tmp_path / "reports" / OLD_RUN).mkdir(parents=True)
    (tmp_path / "reports" / "latest").symlink_to(OLD_RUN)
    result = _playbook(tmp_path, playbook)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "No host to audit" in output and "no report was written" in output, output[-3000:]
    assert "reports/latest still points at an earlier run" in output
    assert str(tmp_path / "reports" / OLD_RUN) in output.replace("\n        ", " ")
    # No internal templating error, no new run folder; the old link is left as it was.
    assert "HostVarsVars" not in output and "portpool_audit_result" not in output
    assert sorted(path.name for path in (tmp_path / "reports").iterdir()) == [OLD_RUN, "latest"]
    assert os.readlink(tmp_path / "reports" / "latest") == OLD_RUN


def test_no_host_and_no_earlier_report_still_fails_clearly(tmp_path):
    (tmp_path / "empty.yml").write_text("all:\n  hosts: {}\n")
    result = _playbook(tmp_path, "audit.yml")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "No host to audit" in output and "reports/latest" not in output
    assert not (tmp_path / "reports").exists()
