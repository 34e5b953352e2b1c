# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_audit_plan runs here, in the controller: documentation in library/."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.portpool.project.plugins.module_utils.portpool_audit_plan import (
    plan_calls,
)

ARGUMENT_SPEC = dict(
    validated=dict(type="dict", required=True),
    users=dict(type="dict", default={}),
    fresh_keys=dict(type="list", elements="str", default=[]),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        result.update(changed=False, calls=plan_calls(params["validated"], params["users"],
                                                      params["fresh_keys"]))
        return result
