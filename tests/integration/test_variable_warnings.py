"""audit.yml and rollback.yml warn about misspelt portpool_* variables before any host work."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Port 1 on loopback refuses at once: the host is unreachable, and nothing is changed.
INVENTORY = """all:
  hosts:
    ghost:
      ansible_host: 127.0.0.1
      ansible_port: 1
      ansible_connection: ssh
      portpool_audit_min_usable_port: 30000
      portpool_tune_file_nme: 99-portpool.conf
"""


@pytest.mark.parametrize(("playbook", "typo", "meant"), [
    ("audit.yml", "portpool_audit_min_usable_port", "portpool_audit_min_usable_ports"),
    ("playbooks/rollback.yml", "portpool_tune_file_nme", "portpool_tune_file_name"),
])
def test_misspelt_variables_are_warned_about_with_the_closest_name(tmp_path, playbook, typo,
                                                                   meant):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp_path / "cp"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(REPO / playbook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert ("%s (set for ghost) is not a portpool variable: did you mean %s?" % (typo, meant)
            in output), output[-3000:]
