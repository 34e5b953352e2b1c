#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_audit_policy.py (module_utils/portpool_audit_policy.py).

DOCUMENTATION = r"""
---
module: portpool_audit_policy
short_description: Check every host's portpool_audit policy before any host is contacted
description:
  - An action that runs on the controller, once per play, before the audit contacts
    any host.
  - Checks each host's C(portpool_audit) variables against the role's
    C(meta/argument_specs.yml) (types, choices, required keys), then, for a host whose
    types are right, the bounds a spec cannot express (C(portpool_audit_destination_warn)
    not above C(portpool_audit_destination_high), rule ids in waivers and severities,
    the probe's sample size...). The bounds are the same code the rules apply.
  - Fails with every problem of every host, each naming the host and the variable.
version_added: "0.1.0"
author: portpool contributors (!UNKNOWN)
options:
  policies:
    description:
      - Inventory name to that host's variables (as the C(portpool_audit) role
        collects them), for every host of the play.
    type: dict
    required: true
  spec_file:
    description: Path of the role's C(meta/argument_specs.yml).
    type: path
    required: true
  entry_point:
    description: Entry point of I(spec_file) whose options the variables must match.
    type: str
    default: main
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
    details: Runs in the controller process (C(action_plugins/portpool_audit_policy.py)).
seealso:
  - module: portpool_audit
"""

EXAMPLES = r"""
- name: Check every host's policy before any host is contacted
  portpool_audit_policy:
    policies: >-
      {{ dict(ansible_play_hosts_all
              | zip(ansible_play_hosts_all | map('extract', hostvars, 'policy'))) }}
    spec_file: "{{ role_path }}/meta/argument_specs.yml"
  run_once: true
  delegate_to: localhost
  any_errors_fatal: true
"""

RETURN = r"""
hosts:
  description: How many hosts' policies were checked.
  returned: always
  type: int
  sample: 16
problems:
  description: One message per problem (empty when every policy is valid).
  returned: always
  type: list
  elements: str
  sample:
    - "portpool_audit_drift_min_hosts of web-01 must be >= 2"
    - "web-02: argument 'portpool_audit_min_usable_ports' is of type str and we were
      unable to convert to int: ..."
validated:
  description:
    - Per host whose policy is valid, every option of the spec with its typed value,
      defaults filled in. The audit's policy is read from these values.
  returned: always
  type: dict
  sample: {"web-01": {"portpool_audit_min_usable_ports": 16384,
                      "portpool_preflight_fail_on": "high"}}
"""
