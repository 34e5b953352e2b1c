# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_audit runs here, in the controller: documentation in library/portpool_audit.py."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.portpool.project.plugins.module_utils.portpool_audit_run import (
    audit_argument_spec,
    run,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=audit_argument_spec())
        try:
            result.update(run(params))
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise AnsibleActionFail("portpool_audit: %s: %s" % (type(exc).__name__, exc)) from exc
        return result
