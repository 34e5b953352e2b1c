# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portpool_audit_policy action: every host's policy, checked before any host is contacted.

Types, choices and required keys come from the role's meta/argument_specs.yml, as
ansible.builtin.validate_argument_spec checks them; the bounds a spec cannot say
(thresholds against each other, rule ids) come from policy_problems below,
the same code the rules use, so the check and the audit cannot disagree.
"""

from __future__ import annotations

import yaml  # the controller's PyYAML: this runs in an action, never on a target
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.portpool_audit_rules import RULE_IDS, SEVERITIES
from ansible.module_utils.portpool_sysctl import NET_KEYS, dotted_name

# Reserved ports are host-specific (each host reserves its own listeners), so they
# are not drift by default.
DEFAULT_DRIFT_KEYS = (
    "ip_local_port_range",
    "ip_unprivileged_port_start",
    "tcp_tw_reuse",
    "tcp_timestamps",
    "tcp_max_tw_buckets",
    "tcp_fin_timeout",
)

DEFAULT_POLICY = {
    "min_usable_ports": 16384,
    "pool_headroom": 2.0,
    "destination_warn": 0.5,
    "destination_high": 0.8,
    "service_ports": [],
    "min_tw_buckets": None,
    "processes": [],
    "bind_zero_programs": [],
    "desired": {},
    "drift_keys": list(DEFAULT_DRIFT_KEYS),
    "drift_min_hosts": 3,
    # Keys a container's namespace should match the host (or the policy) on: a new
    # namespace starts from the kernel's defaults, not the host's tuned values.
    "namespace_keys": ["ip_local_port_range", "tcp_tw_reuse"],
    "severity": {},
    "waivers": [],
    "fail_on": "high",
    "managed_file": "60-portpool.conf",
}



def merged_policy(policy):
    merged = dict(DEFAULT_POLICY)
    for key, value in (policy or {}).items():
        if value is not None or key == "min_tw_buckets":
            merged[key] = value
    return merged


# Role variables (roles/portpool_audit) and the policy keys they set.
POLICY_VARS = {
    "portpool_audit_min_usable_ports": ("min_usable_ports", int),
    "portpool_audit_pool_headroom": ("pool_headroom", float),
    "portpool_audit_destination_warn": ("destination_warn", float),
    "portpool_audit_destination_high": ("destination_high", float),
    "portpool_audit_service_ports": ("service_ports", list),
    "portpool_audit_min_tw_buckets": ("min_tw_buckets", int),
    "portpool_audit_processes": ("processes", list),
    "portpool_audit_bind_zero_programs": ("bind_zero_programs", list),
    "portpool_audit_desired": ("desired", dict),
    "portpool_audit_drift_keys": ("drift_keys", list),
    "portpool_audit_drift_min_hosts": ("drift_min_hosts", int),
    "portpool_audit_namespace_keys": ("namespace_keys", list),
    "portpool_audit_severity": ("severity", dict),
    "portpool_audit_waivers": ("waivers", list),
    "portpool_preflight_fail_on": ("fail_on", str),
    "portpool_tune_file_name": ("managed_file", str),
}


# Role variables that are task options, not policy, with the bounds the argument
# spec cannot express: (converter, test, rule).
OPTION_BOUNDS = {
    "portpool_audit_probe_sample_ports": (int, lambda value: value >= 2, ">= 2"),
    "portpool_audit_probe_churn_seconds": (float, lambda value: value >= 0, ">= 0"),
    "portpool_audit_destinations_top": (int, lambda value: value >= 1, ">= 1"),
    "portpool_audit_namespace_max": (int, lambda value: value >= 0, ">= 0"),
}


def policy_from_vars(variables, host="this host"):
    """Turn the role's variables into a policy dict; ValueError names every bad variable."""
    policy, problems = _read_policy(variables, host)
    if problems:
        raise ValueError("; ".join(problems))
    return policy


def policy_problems(variables, host="this host"):
    """Every reason the role's variables are not a valid policy for host; [] when they are.

    Covers what meta/argument_specs.yml cannot say: thresholds against each other,
    rule ids in waivers and severities, and the bounds of the probe's options.
    """
    problems = _read_policy(variables, host)[1]
    for name, (kind, good, rule) in OPTION_BOUNDS.items():
        if name not in (variables or {}):
            continue
        try:
            ok = good(kind(variables[name]))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append("%s of %s must be %s" % (name, host, rule))
    return problems


def _file_name_ok(name):
    return (isinstance(name, str) and name.endswith(".conf") and "/" not in name
            and name not in (".conf", "..conf"))


def _read_policy(variables, host):
    policy, problems = {}, []
    for name, (key, kind) in POLICY_VARS.items():
        if name not in (variables or {}):
            continue
        value = variables[name]
        if value is None or (kind is str and value == ""):
            policy[key] = None
            continue
        try:
            if kind in (int, float):
                value = kind(value)
            elif not isinstance(value, kind):
                raise TypeError("expected a %s" % kind.__name__)
        except (TypeError, ValueError) as exc:
            problems.append("%s of %s: %r is not valid (%s)" % (name, host, value, exc))
            continue
        policy[key] = value
    if problems:
        return policy, problems
    merged = merged_policy(policy)
    checks = (
        ("portpool_audit_min_usable_ports", merged["min_usable_ports"] >= 1, ">= 1"),
        ("portpool_audit_pool_headroom", merged["pool_headroom"] >= 1, ">= 1"),
        ("portpool_audit_destination_warn",
         0 < merged["destination_warn"] <= merged["destination_high"] <= 1,
         "in (0, 1] and not above portpool_audit_destination_high"),
        ("portpool_audit_destination_high", merged["destination_high"] <= 1, "<= 1"),
        ("portpool_audit_drift_min_hosts", merged["drift_min_hosts"] >= 2, ">= 2"),
        ("portpool_preflight_fail_on", merged["fail_on"] in SEVERITIES,
         "one of %s" % ", ".join(SEVERITIES)),
        ("portpool_tune_file_name", _file_name_ok(merged["managed_file"]),
         "a file name ending in .conf, without a directory"),
    )
    for name, good, rule in checks:
        if not good:
            problems.append("%s of %s must be %s" % (name, host, rule))
    for item in merged["waivers"]:
        if not isinstance(item, dict) or item.get("rule") not in (*RULE_IDS, "*"):
            problems.append("portpool_audit_waivers of %s: %r needs a rule id "
                            "(PP001...) or *" % (host, item))
    unknown = [key for key in merged["namespace_keys"] or []
               if dotted_name(key) not in NET_KEYS]
    if unknown:
        problems.append("portpool_audit_namespace_keys of %s: %s not a per-namespace "
                        "(net.*) key portpool reads" % (host, ", ".join(map(str, unknown))))
    for rule_id, severity in (merged["severity"] or {}).items():
        if rule_id not in RULE_IDS or severity not in SEVERITIES:
            problems.append("portpool_audit_severity of %s: %s: %s is not a rule id and "
                            "severity" % (host, rule_id, severity))
    return policy, problems



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


def grouped_problems(problems_by_host):
    """Each distinct problem once, with every host it hit: ["hosts a, b: text", ...].

    A problem names its host as "HOST: text" (the argument spec) or "VAR of HOST ..."
    (the bounds); the host is taken out so identical problems group together.
    """
    groups = {}
    for host, problems in problems_by_host.items():
        for problem in problems:
            prefix = "%s: " % host
            if problem.startswith(prefix):
                text = problem[len(prefix):]
            else:
                text = problem.replace(" of %s" % host, "", 1)
            groups.setdefault(text, []).append(host)
    return ["%s %s: %s" % ("hosts" if len(hosts) > 1 else "host", ", ".join(hosts), text)
            for text, hosts in groups.items()]


def problems_by_host(policies, options):
    """{host: [problem, ...]} for the hosts with problems, each naming host and variable."""
    found = {}
    for host, variables in policies.items():
        if not isinstance(variables, dict):
            found[host] = ["%s: its policy variables were not collected" % host]
            continue
        result = ArgumentSpecValidator(options).validate(dict(variables))
        errors = ["%s: %s" % (host, message) for message in result.error_messages]
        # Bounds only make sense once the types are right.
        problems = errors or policy_problems(variables, host)
        if problems:
            found[host] = problems
    return found


def check_policies(policies, options):
    """One message per problem, each naming the host and the variable; [] when all pass."""
    return [problem for problems in problems_by_host(policies, options).values()
            for problem in problems]
