# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_variables runs here, in the controller: documentation in library/."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.portpool.project.plugins.module_utils.portpool_variables import (
    empty_settings,
    known_names,
    unknown_variables,
)

ARGUMENT_SPEC = dict(
    variables=dict(type="dict", required=True),
    settings=dict(type="dict"),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            known = known_names()
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail("portpool_variables: %s" % exc) from exc
        unknown = unknown_variables(params["variables"], known)
        empty = empty_settings(params["settings"]) if params["settings"] is not None else []
        result.update(changed=False, unknown=unknown, empty=empty)
        if unknown or empty:
            result["warnings"] = unknown + empty
        return result
