# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_merge runs here, in the controller: documentation in library/portpool_merge.py."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.portpool.project.plugins.module_utils.portpool_merge import (
    merge,
    merge_argument_spec,
)

display = Display()

# How many of the merge's warnings reach the console.
MAX_WARNINGS = 50


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=merge_argument_spec())
        try:
            merged = merge(params)
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail("portpool_merge: %s" % exc) from exc
        for warning in merged["warnings"][:MAX_WARNINGS]:
            display.warning(warning)
        result.update(merged)
        return result
