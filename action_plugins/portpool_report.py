# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_report runs here, in the controller: documentation in library/portpool_report.py."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.portpool.project.plugins.module_utils.portpool_report_run import (
    render,
    report_argument_spec,
)

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=report_argument_spec())
        try:
            rendered, warnings = render(params, self._task.check_mode)
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail(str(exc)) from exc
        for warning in warnings:
            display.warning(warning)
        result.update(rendered)
        return result
