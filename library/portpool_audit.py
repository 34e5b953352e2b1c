#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_audit.py (module_utils/portpool_audit_run.py).

DOCUMENTATION = r"""
---
module: portpool_audit
short_description: Judge portpool facts and probe results and write one result file per host
description:
  - An action that runs on the controller, once per play, after C(portpool_facts) (with
    its C(probe) option, or followed by C(portpool_probe)) ran on every host of the play.
  - Applies the portpool rules (PP001...) to each host's facts and probe, re-checks
    every recommended fix against all rules before offering it, adds the
    fleet rule (drift from the majority of an inventory group), marks waived findings,
    and writes C(<run_dir>/results/<host>.json) for every host, reachable or not, plus
    the rule catalogue C(<run_dir>/rules.json).
  - The rules themselves live in C(module_utils/portpool_audit_rules.py); this action only
    feeds them and writes files. The C(portpool_audit) role calls it.
version_added: "0.1.0"
author: portpool contributors (!UNKNOWN)
options:
  hosts:
    description:
      - One entry per audited host, keyed by inventory name, in play order. Each value
        is a dict with C(vars) (the C(portpool_audit) role's variables as that host
        sees them, from C(portpool_audit_min_usable_ports), ...,
        C(portpool_preflight_fail_on) and C(portpool_tune_file_name); missing ones
        take the rules' defaults), C(groups) (C(group_names)), C(started) (ISO-8601
        UTC time the host's audit began) and C(facts_result) (what C(register:)
        captured for C(portpool_facts) with its C(probe) option, unreachable and failed
        results included; missing when the task never ran).
      - Facts that do not follow C(docs/facts.md) make that host a C(failed) entry with
        the reason; the other hosts are judged as usual.
    type: dict
    required: true
  policies:
    description:
      - Each host's C(vars), keyed by inventory name, in place of the C(vars) inside
        I(hosts) (the C(validated) result of C(portpool_audit_policy), for example).
    type: dict
  facts_results:
    description:
      - Each host's C(facts_result), keyed by inventory name, in place of the one inside
        I(hosts); a host missing here is one whose task never ran.
    type: dict
  run_dir:
    description:
      - The run's folder. A relative path is taken relative to I(base_dir).
      - When omitted, C(reports/<UTC timestamp>) under I(base_dir), made unique.
    type: str
  base_dir:
    description:
      - Folder that relative and default I(run_dir) paths start from, normally the
        project root. When it is a folder named C(playbooks), its parent is used.
    type: path
    required: true
  root:
    description:
      - Folder, relative to I(base_dir) or absolute (a shared path), that new run
        folders go into when I(run_dir) is omitted.
    type: str
    default: reports
  run_id:
    description:
      - The run id written into every result file (C(run.id)). When omitted,
        C(awx-<awx_job_id>) in an AWX job, else a random 12-character id.
    type: str
  slice:
    description:
      - The slice name written into every result file (C(run.slice)), e.g. the
        C(--limit) shard this run covered. When omitted, C(<number>/<count>) from
        AWX's slice variables in I(awx), else none.
    type: str
  awx:
    description:
      - AWX's extra vars C(awx_job_id), C(awx_job_slice_number) and
        C(awx_job_slice_count) when the run is an AWX job; empty values are ignored.
    type: dict
    default: {}
  probe_record:
    description:
      - What M(portpool_probe_record) returned (C(path), C(measurements)). A host's
        probe that skipped its hold (C(on_record)) is filled in from C(measurements),
        with C(record) naming the host that measured it and when; the record, with this
        run's complete lab measurements added, is written back to C(path).
      - Without it the audit neither reads nor writes a record.
    type: dict
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: partial
    details: The result files are the controller's output, not a change on a managed
      host, so they are written in check mode too.
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    description: An action plugin of the same name runs the module's work on the controller.
    support: full
    details: Runs in the controller process (C(action_plugins/portpool_audit.py)); the
      hosts' results are never serialised into a module process.
notes:
  - Writes files on the controller, whatever host the task runs for.
seealso:
  - module: portpool_facts
  - module: portpool_probe
"""

EXAMPLES = r"""
- name: Judge every host and write the result files
  portpool_audit:
    # audit_host on each host: {vars, groups, started, facts_result}
    hosts: >-
      {{ dict(ansible_play_hosts_all
              | zip(ansible_play_hosts_all | map('extract', hostvars, 'audit_host'))) }}
    base_dir: "{{ playbook_dir }}"
  run_once: true
  delegate_to: localhost
  register: audit

- name: Show where the results are
  ansible.builtin.debug:
    msg: "{{ audit.results_dir }}"
"""

RETURN = r"""
run_dir:
  description: The run's folder (absolute).
  returned: always
  type: str
  sample: /srv/portpool/reports/20261123T193024Z
run:
  description: The run block every result file carries (id, slice, AWX job and slice
    numbers, portpool version); see C(docs/scale.md).
  returned: always
  type: dict
  sample: {"id": "awx-4711", "slice": "2/3", "awx_job_id": 4711, "slice_number": 2,
           "slice_count": 3, "portpool_version": "0.2.0"}
results_dir:
  description: Folder holding one C(<host>.json) per host.
  returned: always
  type: str
  sample: /srv/portpool/reports/20261123T193024Z/results
rules_file:
  description: Path of the rule catalogue, C(rules.json).
  returned: always
  type: str
hosts:
  description: One line per host, in play order.
  returned: always
  type: list
  elements: dict
  contains:
    host:
      description: Inventory name.
      type: str
    status:
      description: C(ok), C(unreachable) or C(failed).
      type: str
    worst:
      description: Worst unwaived severity, or null when there is none.
      type: str
    findings:
      description: Number of findings, waived ones included.
      type: int
    waived:
      description: Number of waived findings.
      type: int
    file:
      description: The host's result file.
      type: str
counts:
  description: Unwaived findings per severity over all hosts.
  returned: always
  type: dict
  sample: {"critical": 0, "high": 2, "medium": 1, "low": 0, "info": 1}
blocking:
  description:
    - Unwaived findings at or above each host's C(fail_on) policy, worst first, as
      C(preflight.yml) gates on them.
  returned: always
  type: list
  elements: dict
  sample: [{"host": "web-01", "id": "PP004", "severity": "high", "title": "...", "message": "..."}]
blocking_lines:
  description: I(blocking) as one readable line each.
  returned: always
  type: list
  elements: str
errors:
  description:
    - Each distinct reason a host was not (fully) audited, once, with every host it
      hit. Reasons are unreachable, failed (including malformed facts), or a probe that failed
      while the facts were judged (C(reason), C(hosts)).
  returned: always
  type: list
  elements: dict
  sample: [{"reason": "unreachable: ssh: connection refused", "hosts": ["web-03", "web-07"]}]
error_lines:
  description: I(errors) as one readable line each, as the role prints them once.
  returned: always
  type: list
  elements: str
"""
