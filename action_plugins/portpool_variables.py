# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""portpool_variables runs here, in the controller: documentation in library/."""

from __future__ import annotations

import glob
import os

import ansible.module_utils
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The project's module_utils reach targets inside AnsiballZ; the controller finds
# them through the package path, next to this folder.
_MODULE_UTILS = os.path.join(_PROJECT, "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.portpool_variables import (  # noqa: E402
    KNOWN_OTHER,
    empty_settings,
    spec_option_names,
    unknown_variables,
)

ARGUMENT_SPEC = dict(
    variables=dict(type="dict", required=True),
    settings=dict(type="dict"),
)


def known_names():
    """The options of every role's argument spec in this project, and KNOWN_OTHER."""
    known = set(KNOWN_OTHER)
    for path in sorted(glob.glob(os.path.join(_PROJECT, "roles", "*", "meta",
                                              "argument_specs.yml"))):
        with open(path, encoding="utf-8") as handle:
            known.update(spec_option_names(handle.read()))
    return known


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
