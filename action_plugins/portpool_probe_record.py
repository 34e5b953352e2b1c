# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_probe_record runs here, in the controller: documentation in library/."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.portpool.project.plugins.module_utils.portpool_audit_run import (
    resolve_run_dir,
)
from ansible_collections.portpool.project.plugins.module_utils.portpool_probe_record import (
    read_record,
    record_path,
)


def record_argument_spec():
    return {
        "run_dir": {"type": "str"},
        "base_dir": {"type": "path", "required": True},
        "root": {"type": "str", "default": "reports"},
        "max_age_days": {"type": "int", "default": 7},
    }


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, params = self.validate_argument_spec(argument_spec=record_argument_spec())
        run_folder, _fresh = resolve_run_dir(params["run_dir"], params["base_dir"],
                                             root=params["root"])
        path = record_path(run_folder)
        entries, warning = read_record(path, params["max_age_days"])
        result.update(changed=False, path=path, fresh_keys=sorted(entries), measurements=entries)
        if warning:
            result["warnings"] = [warning]
        return result
