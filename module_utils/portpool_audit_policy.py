# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit policy: declared once, in roles/portpool_audit/meta/argument_specs.yml.

That spec is the policy's only declaration: its options' types, choices and
defaults. ArgumentSpecValidator's validated values, renamed (policy_key), ARE the
policy; the bounds a spec cannot say (thresholds against each other, rule ids)
are checked here, by the same code the rules use, so the check and the audit
cannot disagree. The portpool_audit_policy action runs the check for every host
before any is contacted, and hands back each host's validated values; the
portpool_audit action reads the policy from them.
"""

from __future__ import annotations

import copy
import json
import os

import yaml  # the controller's PyYAML: this runs in an action, never on a target
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from .portpool_audit_rules import RULE_IDS, SEVERITIES
from .portpool_sysctl import NET_KEYS, dotted_name

# Where the roles lie from here: module_utils/ in the playbook project (reached
# through the collections/ link, hence realpath), plugins/plugin_utils/ in the
# generated collection.
_HERE = os.path.dirname(os.path.realpath(__file__))
ROLES_CANDIDATES = tuple(os.path.normpath(os.path.join(_HERE, up, "roles"))
                         for up in (os.pardir, os.path.join(os.pardir, os.pardir)))
AUDIT_SPEC = os.path.join("portpool_audit", "meta", "argument_specs.yml")

# Options of the spec that are not the audit's policy.
NOT_POLICY = frozenset({"portpool_report_dir"})
# Options shared with other roles, and the policy key each sets; every other
# option portpool_audit_<key> sets <key>.
SHARED_KEYS = {
    "portpool_preflight_fail_on": "fail_on",
    "portpool_tune_file_name": "managed_file",
}
PREFIX = "portpool_audit_"

_OPTIONS = {}
_VALIDATED = {}


def roles_dir():
    """The project's or the collection's roles folder: the one holding portpool_audit."""
    for path in ROLES_CANDIDATES:
        if os.path.isfile(os.path.join(path, AUDIT_SPEC)):
            return path
    raise ValueError("roles/%s not found near %s" % (AUDIT_SPEC, _HERE))


def spec_file():
    """The portpool_audit role's meta/argument_specs.yml."""
    return os.path.join(roles_dir(), AUDIT_SPEC)


def spec_options(spec_text, entry_point):
    """The options of one entry point of a role's meta/argument_specs.yml text."""
    try:
        return yaml.safe_load(spec_text)["argument_specs"][entry_point]["options"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError("no options for entry point %r in the argument spec (%s)"
                         % (entry_point, exc)) from exc


def role_options(path=None, entry_point="main"):
    """The options of the role's spec (read once per file and entry point)."""
    path = path or spec_file()
    if (path, entry_point) not in _OPTIONS:
        with open(path, encoding="utf-8") as handle:
            _OPTIONS[path, entry_point] = spec_options(handle.read(), entry_point)
    return _OPTIONS[path, entry_point]


def policy_key(name):
    """`portpool_audit_min_usable_ports` -> `min_usable_ports`; None for a non-policy option."""
    if name in NOT_POLICY:
        return None
    if name in SHARED_KEYS:
        return SHARED_KEYS[name]
    return name[len(PREFIX):] if name.startswith(PREFIX) else None


def policy_var_names(options=None):
    """{policy key: variable name}, in the spec's order."""
    return {policy_key(name): name for name in (options or role_options())
            if policy_key(name)}


def validated_values(variables, options=None):
    """(every option's value, typed and defaulted, error messages) for one host's variables.

    Unset, null and (for text) empty variables take the spec's default, as they
    did when the role's defaults filled them in. Variables the spec does not
    declare are left out (portpool_variables warns about misspelt ones).
    """
    options = options or role_options()
    given = {}
    for name, value in (variables or {}).items():
        spec = options.get(name)
        if spec is None or value is None:
            continue
        if value == "" and spec.get("type", "str") == "str":
            continue
        given[name] = _unset_dropped(spec, value)
    cache_key = (id(options), json.dumps(given, sort_keys=True, default=repr))
    if cache_key not in _VALIDATED:
        # The validator fills a dict option's default in place: give it copies.
        result = ArgumentSpecValidator(copy.deepcopy(options)).validate(copy.deepcopy(given))
        # The options are kept with the result so their id() is never reused.
        _VALIDATED[cache_key] = (options, result.validated_parameters,
                                 list(result.error_messages))
    _options, values, errors = _VALIDATED[cache_key]
    values = {name: _unset_dropped(options[name], value) for name, value in values.items()}
    return copy.deepcopy(values), list(errors)


def _unset_dropped(spec, value):
    """A dict option with sub-options (portpool_audit_severity) without its null entries.

    The validator lists every sub-option, unset ones as null; dropping them makes
    validated values validate again to themselves.
    """
    if spec.get("type") == "dict" and spec.get("options") and isinstance(value, dict):
        return {key: item for key, item in value.items() if item is not None}
    return value


def as_policy(values):
    """The policy from validated values: each option under its policy key."""
    return {policy_key(name): value for name, value in values.items() if policy_key(name)}


def policy_from_vars(variables, host="this host", options=None):
    """A host's policy from its variables; ValueError names every bad variable."""
    values, errors = validated_values(variables, options)
    if errors:
        raise ValueError("; ".join(_named(message, variables, host) for message in errors))
    problems = bounds_problems(values, host)
    if problems:
        raise ValueError("; ".join(problems))
    return as_policy(values)


def _named(message, variables, host):
    """A validator message led by the variable it is about (it names it somewhere inside)."""
    for name in variables or {}:
        if name in message:
            return "%s of %s: %s" % (name, host, message)
    return "%s: %s" % (host, message)


def default_policy():
    """The policy of a host that sets nothing: every default of the spec."""
    return policy_from_vars({})


def merged_policy(policy):
    """A partial policy (tests, hand-made calls) completed with the defaults."""
    merged = default_policy()
    for key, value in (policy or {}).items():
        if value is not None or key == "min_tw_buckets":
            merged[key] = value
    return merged


def _file_name_ok(name):
    return (isinstance(name, str) and name.endswith(".conf") and "/" not in name
            and name not in (".conf", "..conf"))


def bounds_problems(values, host="this host"):
    """What the spec cannot say about validated values; [] when they are a valid policy.

    Thresholds against each other, rule ids in waivers and severities, the
    namespace keys, and the bounds of the probe's options.
    """
    value = values.get
    checks = (
        ("portpool_audit_min_usable_ports", value("portpool_audit_min_usable_ports") >= 1,
         ">= 1"),
        ("portpool_audit_pool_headroom", value("portpool_audit_pool_headroom") >= 1, ">= 1"),
        ("portpool_audit_destination_warn",
         0 < value("portpool_audit_destination_warn")
         <= value("portpool_audit_destination_high") <= 1,
         "in (0, 1] and not above portpool_audit_destination_high"),
        ("portpool_audit_destination_high", value("portpool_audit_destination_high") <= 1,
         "<= 1"),
        ("portpool_audit_drift_min_hosts", value("portpool_audit_drift_min_hosts") >= 2, ">= 2"),
        ("portpool_preflight_fail_on", value("portpool_preflight_fail_on") in SEVERITIES,
         "one of %s" % ", ".join(SEVERITIES)),
        ("portpool_tune_file_name", _file_name_ok(value("portpool_tune_file_name")),
         "a file name ending in .conf, without a directory"),
        ("portpool_audit_probe_sample_ports", value("portpool_audit_probe_sample_ports") >= 2,
         ">= 2"),
        ("portpool_audit_probe_churn_seconds", value("portpool_audit_probe_churn_seconds") >= 0,
         ">= 0"),
        ("portpool_audit_destinations_top", value("portpool_audit_destinations_top") >= 1,
         ">= 1"),
        ("portpool_audit_namespace_max", value("portpool_audit_namespace_max") >= 0, ">= 0"),
    )
    problems = ["%s of %s must be %s" % (name, host, rule) for name, good, rule in checks
                if not good]
    for item in value("portpool_audit_waivers") or []:
        if not isinstance(item, dict) or item.get("rule") not in (*RULE_IDS, "*"):
            problems.append("portpool_audit_waivers of %s: %r needs a rule id "
                            "(PP001...) or *" % (host, item))
    unknown = [key for key in value("portpool_audit_namespace_keys") or []
               if dotted_name(key) not in NET_KEYS]
    if unknown:
        problems.append("portpool_audit_namespace_keys of %s: %s not a per-namespace "
                        "(net.*) key portpool reads" % (host, ", ".join(map(str, unknown))))
    for rule_id, severity in (value("portpool_audit_severity") or {}).items():
        if rule_id not in RULE_IDS or severity not in SEVERITIES:
            problems.append("portpool_audit_severity of %s: %s: %s is not a rule id and "
                            "severity" % (host, rule_id, severity))
    return problems


def policy_argument_spec():
    return {
        "policies": {"type": "dict", "required": True},
        "spec_file": {"type": "path", "required": True},
        "entry_point": {"type": "str", "default": "main"},
    }


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


def check_hosts(policies, options):
    """({host: [problem, ...]} for the hosts with problems, {host: validated values}).

    Each problem names its host and variable; a host with problems has no values.
    """
    found, validated = {}, {}
    for host, variables in policies.items():
        if not isinstance(variables, dict):
            found[host] = ["%s: its policy variables could not be read (the error above"
                           " names the variable)" % host]
            continue
        values, errors = validated_values(variables, options)
        # Bounds only make sense once the types are right.
        problems = (["%s: %s" % (host, message) for message in errors]
                    or bounds_problems(values, host))
        if problems:
            found[host] = problems
        else:
            validated[host] = values
    return found, validated


def problems_by_host(policies, options):
    """{host: [problem, ...]} for the hosts with problems, each naming host and variable."""
    return check_hosts(policies, options)[0]


def check_policies(policies, options):
    """One message per problem, each naming the host and the variable; [] when all pass."""
    return [problem for problems in problems_by_host(policies, options).values()
            for problem in problems]
