#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_audit_plan.py (module_utils/portpool_audit_plan.py).

DOCUMENTATION = r"""
---
module: portpool_audit_plan
short_description: Decide once what the audit asks of each host
description:
  - An action that runs on the controller, once per play, after
    M(portpool_audit_policy) and M(portpool_probe_record).
  - From each host's validated policy, its C(ansible_user) (as
    M(portpool_audit_inputs) read it) and the lab measurements on
    record, returns each host's M(portpool_facts) arguments, whether to become root,
    and whether its event is lean (C(no_log)).
  - The per-host task then only looks its call up. A per-host task that templated the
    same decisions with filters would load and run them again in every forked worker,
    about 16 ms of controller CPU per host on the test fleet (C(docs/scale.md)).
version_added: "0.2.0"
author: portpool contributors (!UNKNOWN)
options:
  validated:
    description: Inventory name to that host's validated policy variables
      (RV(portpool_audit_policy#module:validated)).
    type: dict
    required: true
  users:
    description: Inventory name to that host's C(ansible_user); a host left out, or
      with null, connects as root. With C(portpool_audit_become) null, a host becomes
      root unless it connects as root.
    type: dict
    default: {}
  fresh_keys:
    description: The lab measurements on record to reuse
      (RV(portpool_probe_record#module:fresh_keys)); a host whose
      C(portpool_audit_probe_reuse_days) is 0 is handed none.
    type: list
    elements: str
    default: []
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
    details: Runs in the controller process (C(action_plugins/portpool_audit_plan.py)).
seealso:
  - module: portpool_audit_policy
  - module: portpool_probe_record
  - module: portpool_facts
"""

EXAMPLES = r"""
- name: Decide each host's facts call
  portpool_audit_plan:
    validated: "{{ checked.validated }}"
    users: >-
      {{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all
              | map('extract', hostvars, 'inputs') | map(attribute='user'))) }}
    fresh_keys: "{{ record.fresh_keys }}"
  run_once: true
  delegate_to: localhost
  register: plan

- name: Gather portpool facts
  portpool_facts:
    processes: "{{ plan.calls[inventory_hostname].facts.processes }}"
    probe: "{{ plan.calls[inventory_hostname].facts.probe }}"
  become: "{{ plan.calls[inventory_hostname].become }}"
"""

RETURN = r"""
calls:
  description: By inventory name, C(facts) (M(portpool_facts)' arguments), C(become)
    and C(lean_events) (whether the facts task hides its result from the event log).
  returned: always
  type: dict
  sample:
    web1:
      become: false
      lean_events: false
      facts:
        processes: [haproxy]
        destinations_top: 20
        namespaces: {enabled: true, match: [], max_count: 64}
        probe: {mode: lab, scope: quick, sample_ports: 1000, churn_seconds: 1.5,
                on_record: [0f3c9a1d2b7e4c5a8f6e0d1c2b3a4958]}
"""
