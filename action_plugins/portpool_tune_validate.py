# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_tune_validate runs here, in the controller: documentation in library/."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.portpool.project.plugins.module_utils.portpool_tune_plan import (
    validate_fleet,
)


def validate_argument_spec():
    return {
        "hosts": {"type": "dict", "required": True},
        "min_pool_size": {"type": "int", "default": 1024},
    }


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=validate_argument_spec())
        values, errors, warnings = validate_fleet(params["hosts"], params["min_pool_size"])
        result.update(changed=False, values=values, errors=errors)
        if warnings:
            result["warnings"] = warnings
        if errors:
            result.update(failed=True, msg="Invalid portpool settings, nothing was changed on "
                          "any host:\n" + "\n".join(errors))
        else:
            result["msg"] = "settings of %d host(s) are valid" % len(values)
        return result
