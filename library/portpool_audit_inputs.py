#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_audit_inputs.py.

DOCUMENTATION = r"""
---
module: portpool_audit_inputs
short_description: Read one host's portpool_audit policy variables without contacting it
description:
  - An action that runs on the controller, once per host, and never connects to it.
  - Returns the values of the variables named in O(names) that the host sets, at
    Ansible's own precedence (inventory, play and role variables, C(set_fact), extra
    variables) and templated in the host's context, with the host's groups, its
    C(ansible_user) and the time.
  - M(portpool_audit_policy) then checks every host's values at once, before any host is
    contacted. A C(run_once) task could not read them itself, since C(hostvars) lack the
    play's variables.
version_added: "0.2.0"
author: portpool contributors (!UNKNOWN)
options:
  names:
    description: The variables to read (the options of the role's argument spec); the
      ones the host does not set are left out.
    type: list
    elements: str
    required: true
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
    details: Runs in the controller process (C(action_plugins/portpool_audit_inputs.py)).
seealso:
  - module: portpool_audit_policy
"""

EXAMPLES = r"""
- name: Read each host's policy variables
  portpool_audit_inputs:
    names: [portpool_audit_min_usable_ports, portpool_audit_processes]
  register: inputs

- name: Check every host's policy
  portpool_audit_policy:
    policies: >-
      {{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all
              | map('extract', hostvars, 'inputs') | map(attribute='vars'))) }}
    spec_file: "{{ role_path }}/meta/argument_specs.yml"
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
vars:
  description: The variables of O(names) this host sets, by name, with their values.
  returned: always
  type: dict
  sample: {portpool_audit_min_usable_ports: 20000}
groups:
  description: The host's groups (C(group_names)).
  returned: always
  type: list
  elements: str
  sample: [web]
user:
  description: The host's C(ansible_user), or null when it sets none; with
    C(portpool_audit_become) null, the audit becomes root unless this is root.
  returned: always
  type: str
  sample: deploy
started:
  description: When the host's audit started, in UTC.
  returned: always
  type: str
  sample: "2026-12-05T07:41:31Z"
"""
