#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_tune_validate.py (module_utils/portpool_tune_plan.py).

DOCUMENTATION = r"""
---
module: portpool_tune_validate
short_description: Check every host's portpool tune settings before any host is contacted
description:
  - An action that runs on the controller, once per play, before C(portpool_settings)
    touches any host.
  - Checks each host's merged settings as C(portpool_settings) does on the host (managed
    keys only, values the kernel accepts, a port range and reservations that leave at
    least I(min_pool_size) usable ports).
  - Fails with every problem of every host, each naming the host and the variable
    (from the host's C(layers)) that set the value.
version_added: "0.2.0"
author: portpool contributors (!UNKNOWN)
options:
  hosts:
    description:
      - Inventory name to C({settings, layers}) for every host of the play, where
        C(settings) are the host's merged settings and C(layers) the ordered
        C([[variable name, dict], ...]) they were merged from.
    type: dict
    required: true
  min_pool_size:
    description: The fewest usable ports (range minus reserved ports in it) a range may leave.
    type: int
    default: 1024
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
    details: Runs in the controller process (C(action_plugins/portpool_tune_validate.py)).
seealso:
  - module: portpool_settings
  - module: portpool_audit_policy
"""

EXAMPLES = r"""
- name: Validate every host's settings before any host is contacted
  portpool_tune_validate:
    hosts:
      web-01:
        settings: {ip_local_port_range: "15000 64999", tcp_tw_reuse: 1}
        layers: [[portpool_tune_settings, {ip_local_port_range: "15000 64999"}]]
    min_pool_size: 1024
  run_once: true
  any_errors_fatal: true
"""

RETURN = r"""
values:
  description: Canonical values by host and dotted key.
  returned: always
  type: dict
  sample: {"web-01": {"net.ipv4.ip_local_port_range": "15000 64999"}}
errors:
  description: One message per problem, each starting with the host (empty when all pass).
  returned: always
  type: list
  elements: str
  sample: ["web-01: portpool_tune_settings.tcp_tw_recycle is refused: ..."]
"""
