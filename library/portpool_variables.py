#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_variables.py (module_utils/portpool_variables.py).

DOCUMENTATION = r"""
---
module: portpool_variables
short_description: Warn about misspelt portpool variables and empty tune settings
description:
  - An action that runs on the controller, once per play, before any host is contacted.
  - Warns about every C(portpool_*) variable that no role declares (the options of every
    role's C(meta/argument_specs.yml), plus the playbook variables and exported facts
    listed in C(module_utils/portpool_variables.py)), naming its hosts and the closest
    known name; such a variable would otherwise be ignored without a word.
  - With O(settings), also warns about the hosts whose merged tune settings are empty.
  - Never fails and changes nothing.
version_added: "0.1.0"
author: portpool contributors (!UNKNOWN)
options:
  variables:
    description: Inventory name to the names of that host's variables (any; only
      C(portpool_*) names are checked).
    type: dict
    required: true
  settings:
    description: Inventory name to that host's merged C(portpool_tune) settings.
    type: dict
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
    details: Runs in the controller process (C(action_plugins/portpool_variables.py)).
"""

EXAMPLES = r"""
- name: Warn about misspelt portpool variables
  portpool_variables:
    variables: >-
      {{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars)
      | map('list') | map('select', 'match', 'portpool_') | map('list'))) }}
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
unknown:
  description: One warning per unknown variable name (also raised as warnings).
  returned: always
  type: list
  elements: str
  sample: ["portpool_tune_setting (set for proxy1, proxy2) is not a portpool variable:
    did you mean portpool_tune_settings?"]
empty:
  description: The warning for the hosts whose merged settings are empty, if any.
  returned: always
  type: list
  elements: str
"""
