"""Each host's audit policy is read at Ansible's own variable precedence.

The role's policy check (tasks/validate.yml) sees every source a task would: a
group variable below a host variable, play variables above both, a set_fact
above play variables, the role's import vars above the play's, extra
variables above all, and a play variable templated from each host's own
variables. No host is contacted: the check runs before any connection.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

INVENTORY = """all:
  vars:
    # Never used: the policy check contacts no host.
    ansible_connection: ssh
    ansible_host: 127.0.0.1
    ansible_port: 1
  children:
    web:
      vars:
        portpool_audit_destinations_top: 5
        portpool_audit_processes: [from-group]
      hosts:
        a:
          portpool_audit_destinations_top: 7
          namespace_limit: 3
        b:
          namespace_limit: 4
"""

PLAYBOOK = """- name: Check the policy of every host
  hosts: all
  gather_facts: false
  vars:
    portpool_audit_processes: [from-play]
    portpool_audit_namespace_max: "{{ namespace_limit }}"
    portpool_audit_probe_churn_seconds: 1
    portpool_audit_min_usable_ports: 1000
  tasks:
    - name: Set a policy variable on one host
      ansible.builtin.set_fact:
        portpool_audit_probe_churn_seconds: 2
      when: inventory_hostname == 'b'

    - name: Validate the policy variables
      ansible.builtin.import_role:
        name: portpool_audit
        tasks_from: validate
      vars:
        portpool_audit_probe_sample_ports: 300

    - name: Write what the check handed back
      ansible.builtin.copy:
        content: "{{ __portpool_audit_checked.validated | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      run_once: true
      delegate_to: localhost
      vars:
        ansible_connection: local
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""


def _playbook(tmp_path, *argv):
    """Run ansible-playbook with this repository's configuration and venv."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["ansible-playbook", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)


def test_each_host_policy_follows_ansible_precedence(tmp_path):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "check.yml").write_text(PLAYBOOK)
    out = tmp_path / "validated.json"
    result = _playbook(tmp_path, "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "check.yml"),
                       "-e", "out=%s" % out, "-e", '{"portpool_audit_min_usable_ports": 2000}')
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    validated = json.loads(out.read_text())
    assert set(validated) == {"a", "b"}
    expected = {
        # host beats group; group applies where the host sets nothing
        "portpool_audit_destinations_top": {"a": 7, "b": 5},
        # play beats inventory
        "portpool_audit_processes": {"a": ["from-play"], "b": ["from-play"]},
        # a play variable templated in each host's own context
        "portpool_audit_namespace_max": {"a": 3, "b": 4},
        # set_fact beats play
        "portpool_audit_probe_churn_seconds": {"a": 1.0, "b": 2.0},
        # import_role vars
        "portpool_audit_probe_sample_ports": {"a": 300, "b": 300},
        # extra vars beat play
        "portpool_audit_min_usable_ports": {"a": 2000, "b": 2000},
    }
    for name, by_host in expected.items():
        assert {host: validated[host][name] for host in by_host} == by_host, name
    # Unset options come back with the spec's defaults.
    assert validated["a"]["portpool_audit_namespaces"] is True


def test_an_unreadable_policy_variable_stops_the_run_naming_host_and_variable(tmp_path):
    (tmp_path / "hosts.yml").write_text(INVENTORY.replace(
        "namespace_limit: 3", 'portpool_audit_namespace_max: "{{ no_such_variable }}"'))
    result = _playbook(tmp_path, "-i", str(tmp_path / "hosts.yml"), str(REPO / "audit.yml"),
                       "-e", "portpool_report_root=%s" % (tmp_path / "reports"))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "'no_such_variable' is undefined" in output, output[-3000:]
    assert ("Invalid portpool_audit policy, no host was contacted:\nhost a: its policy "
            "variables could not be read" in output), output[-3000:]
    assert "Gather portpool facts" not in output
    assert not (tmp_path / "reports").exists()
