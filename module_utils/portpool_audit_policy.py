# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portpool_audit_policy action: every host's policy, checked before any host is contacted.

Types, choices and required keys come from the role's meta/argument_specs.yml, as
ansible.builtin.validate_argument_spec checks them; the bounds a spec cannot say
(thresholds against each other, rule ids) come from portpool_audit.policy_problems,
the same code the rules use, so the check and the audit cannot disagree.
"""

from __future__ import annotations

import yaml  # the controller's PyYAML: this runs in an action, never on a target
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.portpool_audit import policy_problems


def policy_argument_spec():
    return {
        "policies": {"type": "dict", "required": True},
        "spec_file": {"type": "path", "required": True},
        "entry_point": {"type": "str", "default": "main"},
    }


def spec_options(spec_text, entry_point):
    """The options of one entry point of a role's meta/argument_specs.yml text."""
    try:
        return yaml.safe_load(spec_text)["argument_specs"][entry_point]["options"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError("no options for entry point %r in the argument spec (%s)"
                         % (entry_point, exc)) from exc


def check_policies(policies, options):
    """One message per problem, each naming the host and the variable; [] when all pass."""
    problems = []
    for host, variables in policies.items():
        if not isinstance(variables, dict):
            problems.append("%s: its policy variables were not collected" % host)
            continue
        result = ArgumentSpecValidator(options).validate(dict(variables))
        errors = ["%s: %s" % (host, message) for message in result.error_messages]
        # Bounds only make sense once the types are right.
        problems.extend(errors or policy_problems(variables, host))
    return problems
