# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_audit_policy runs here, in the controller: documentation in library/."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.portpool.project.plugins.module_utils.portpool_audit_policy import (
    check_hosts,
    grouped_problems,
    policy_argument_spec,
    spec_options,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=policy_argument_spec())
        try:
            with open(params["spec_file"], encoding="utf-8") as handle:
                options = spec_options(handle.read(), params["entry_point"])
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail("portpool_audit_policy: %s: %s"
                                    % (params["spec_file"], exc)) from exc
        by_host, validated = check_hosts(params["policies"], options)
        problems = [problem for found in by_host.values() for problem in found]
        result.update(changed=False, problems=problems, hosts=len(params["policies"]),
                      validated=validated)
        if problems:
            # Each problem once, with the hosts it hit, one per line (not per host).
            result.update(failed=True, msg="Invalid portpool_audit policy, no host was "
                          "contacted:\n" + "\n".join(grouped_problems(by_host)))
        return result
