#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_probe_record.py (module_utils/portpool_probe_record.py).

DOCUMENTATION = r"""
---
module: portpool_probe_record
short_description: Read the lab probe measurements on record for an audit run
description:
  - An action that runs on the controller, once per play, before the hosts are probed.
  - A lab measurement depends only on its configuration key (kernel, copied settings,
    root or not, descriptor limits, options, portpool's version; see
    M(portpool_probe)'s O(portpool_probe#module:on_record)). M(portpool_audit) keeps the
    newest measurement of each key in C(probes.json), in the folder that holds the run
    folders; this reads the ones younger than O(max_age_days).
  - Pass RV(fresh_keys) to the probe's C(on_record) and this whole result to
    M(portpool_audit)'s O(portpool_audit#module:probe_record), which fills in the
    skipped probes and writes the record back.
  - A record that cannot be read is ignored with a warning; every host then measures.
version_added: "0.2.0"
author: portpool contributors (!UNKNOWN)
options:
  run_dir:
    description: The audit's run folder, as given to M(portpool_audit) (relative to
      O(base_dir)); the record lies beside it.
    type: str
  base_dir:
    description: The folder relative paths start from (the playbook's folder).
    type: path
    required: true
  root:
    description: Where new run folders go, relative to O(base_dir), when O(run_dir) is
      not set; the record is C(<root>/probes.json).
    type: str
    default: reports
  max_age_days:
    description: Measurements older than this many days are not handed on, so every
      host measures again at least that often. C(0) hands on none.
    type: int
    default: 7
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    description: An action plugin of the same name runs the module's work on the controller.
    support: full
    details: Runs in the controller process (C(action_plugins/portpool_probe_record.py)).
seealso:
  - module: portpool_probe
  - module: portpool_audit
"""

EXAMPLES = r"""
- name: Read the lab measurements on record
  portpool_probe_record:
    base_dir: "{{ playbook_dir }}"
    max_age_days: 7
  run_once: true
  delegate_to: localhost
  register: record

- name: Probe only what is not on record
  portpool_probe:
    scope: full
    on_record: "{{ record.fresh_keys }}"
  become: true
"""

RETURN = r"""
path:
  description: The record file (it may not exist yet).
  returned: always
  type: str
  sample: /srv/portpool/reports/probes.json
fresh_keys:
  description: The configuration keys on record and fresh enough to hand on.
  returned: always
  type: list
  elements: str
  sample: [0f3c9a1d2b7e4c5a8f6e0d1c2b3a4958]
measurements:
  description: By key, C(probe) (the measurement), C(host) (which host measured it),
    C(measured_at) (UTC) and C(run) (the run's id).
  returned: always
  type: dict
"""
