# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_audit_inputs runs here, in the controller: documentation in library/."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.portpool.project.plugins.module_utils.portpool_files import utc_now

ARGUMENT_SPEC = dict(names=dict(type="list", elements="str", required=True))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        # A task's own variables hold every source at its precedence (play and role
        # variables, set_fact, extra vars); hostvars, all a run_once task could read
        # for the other hosts, lack the play's.
        policy = {name: self._templar.template(task_vars[name])
                  for name in params["names"] if name in task_vars}
        user = task_vars.get("ansible_user")
        result.update(changed=False, vars=policy, groups=list(task_vars["group_names"]),
                      user=None if user is None else self._templar.template(user),
                      started=utc_now())
        return result
