#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_merge.py (module_utils/portpool_merge.py).

DOCUMENTATION = r"""
---
module: portpool_merge
short_description: Merge the result folders of sliced audits into one run folder
description:
  - Reads every C(*.json) result file of each folder in O(result_dirs) (one folder per
    audit slice, from AWX job slicing or C(--limit) shards), keeps the newest
    C(audited_at) per host (the later folder on ties), and writes one result file per
    host into C(<dest>/results/) plus the rule catalogue C(<dest>/rules.json).
  - Refuses, before writing anything, when the policy most hosts of an inventory group
    were judged under differs between runs (each result file carries its policy hash),
    unless O(allow_mixed_policies) is set.
  - Judges the fleet rules (PP015, drift from the group majority) again over the
    merged fleet from the stored facts, replacing each slice's own fleet findings, so the
    merged findings equal those of one unsliced run.
  - Each merged file names where it came from in C(merged_from) (run id, slice, file).
  - Runs on the controller; renders nothing. The C(portpool_report) module renders the
    merged folder (C(playbooks/report.yml) does both, then gates).
version_added: "0.2.0"
author:
  - portpool contributors (!UNKNOWN)
options:
  result_dirs:
    description:
      - Folders holding one C(<host>.json) per host (each slice's C(results/)); a run
        folder stands for its C(results/). A missing folder gives a warning.
    type: list
    elements: path
    required: true
  dest:
    description:
      - The merged run's folder; C(results/) and C(rules.json) are written in it. It
        must not be one of the O(result_dirs) run folders.
    type: path
    required: true
  allow_mixed_policies:
    description:
      - Merge even when runs judged the same group under different policies (warns).
    type: bool
    default: false
  fail_on:
    description:
      - Threshold of RV(blocking). When omitted, each host's own
        C(portpool_preflight_fail_on) as its slice saw it.
    type: str
    choices: [info, low, medium, high, critical]
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    description: An action plugin of the same name runs the module's work on the controller.
    support: full
    details: Runs in the controller process (C(action_plugins/portpool_merge.py)).
seealso:
  - module: portpool_audit
  - module: portpool_report
"""

EXAMPLES = r"""
- name: Merge three slices into one run folder
  portpool_merge:
    result_dirs:
      - /srv/portpool/reports/slice-1/results
      - /srv/portpool/reports/slice-2/results
      - /srv/portpool/reports/slice-3/results
    dest: /srv/portpool/reports/merged
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
run_dir:
  description: The merged run's folder (absolute).
  returned: always
  type: str
results_dir:
  description: Its C(results/) folder, one merged file per host.
  returned: always
  type: str
hosts:
  description: How many hosts the merge holds.
  returned: always
  type: int
runs:
  description: Hosts per C(<run id>/<slice>) they came from.
  returned: always
  type: dict
  sample: {"a1b2c3d4e5f6/1of3": 34, "0f9e8d7c6b5a/2of3": 33}
warnings:
  description: Missing folders, unreadable or duplicate files, older files without a policy.
  returned: always
  type: list
  elements: str
blocking:
  description: Unwaived merged findings at or above the threshold, worst first.
  returned: always
  type: list
  elements: dict
blocking_lines:
  description: I(blocking) as one line each, as C(preflight.yml) prints them.
  returned: always
  type: list
  elements: str
"""
