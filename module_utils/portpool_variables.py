# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which portpool_* variables exist, and the warnings for the ones that do not.

A misspelt variable (portpool_tune_setting, portpool_audit_min_usable_port) is
otherwise silently ignored: Ansible's argument specs only see the names they
declare. The known names are the options of every role's argument spec (read
at run time, so a new option is known at once) plus KNOWN_OTHER below: the
variables no spec declares (playbook variables and the facts the roles set).
"""

from __future__ import annotations

import difflib
import glob
import os

import yaml

from .portpool_audit_policy import roles_dir

PREFIX = "portpool_"

# Every portpool_* variable that no role argument spec declares, in one place.
KNOWN_OTHER = frozenset({
    # Playbook variable (play keywords cannot see role options).
    "portpool_tune_serial",
    # Facts set by portpool_tune (tasks_from: apply, rollback).
    "portpool_tune_outcome",
    "portpool_tune_reason",
    "portpool_tune_target",
    "portpool_tune_changed_keys",
    "portpool_tune_file_changed",
    "portpool_tune_before",
    "portpool_tune_after",
    "portpool_tune_reserved_added",
    "portpool_tune_overrides",
    "portpool_tune_boot_overrides",
    "portpool_tune_pool",
    "portpool_tune_stopped",
    "portpool_tune_rollback",
    # Facts set by portpool_audit (on localhost).
    "portpool_audit_result",
    # Variables of playbooks/report.yml (merge of sliced audits, docs/scale.md).
    "portpool_report_results",
    "portpool_report_allow_mixed_policies",
    "portpool_report_gate",
    # Run-level names each result file carries (run.slice, run.id); one value per run.
    "portpool_audit_slice",
    "portpool_audit_run_id",
})


def spec_option_names(text):
    """Every option name of every entry point in one meta/argument_specs.yml text."""
    specs = (yaml.safe_load(text) or {}).get("argument_specs") or {}
    names = set()
    for entry in specs.values():
        names.update((entry or {}).get("options") or {})
    return names


def known_names():
    """The options of every role's argument spec, and KNOWN_OTHER."""
    known = set(KNOWN_OTHER)
    for path in sorted(glob.glob(os.path.join(roles_dir(), "*", "meta", "argument_specs.yml"))):
        with open(path, encoding="utf-8") as handle:
            known.update(spec_option_names(handle.read()))
    return known


def unknown_variables(variables, known):
    """Warnings for the portpool_* names in `variables` that `known` does not hold.

    variables: host -> variable names (any; only portpool_* ones are checked);
    known: the known names. One warning per unknown name, naming its hosts and
    the closest known name when there is one.
    """
    hosts_by_name = {}
    for host, names in variables.items():
        for name in names:
            if name.startswith(PREFIX) and name not in known:
                hosts_by_name.setdefault(name, []).append(host)
    warnings = []
    for name in sorted(hosts_by_name):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        hint = "did you mean %s?" % close[0] if close else "it is ignored"
        warnings.append("%s (set for %s) is not a portpool variable: %s" % (
            name, hosts_text(hosts_by_name[name]), hint))
    return warnings


def empty_settings(settings):
    """A warning for the hosts whose merged portpool_tune settings are empty."""
    hosts = [host for host, merged in settings.items() if not merged]
    if not hosts:
        return []
    return ["%s: the merged portpool_tune settings are empty (portpool_tune_default_settings, "
            "portpool_tune_settings and portpool_tune_host_settings), so nothing is managed "
            "there; is a variable misspelt, or a group_vars file named after another group?"
            % hosts_text(hosts)]


def hosts_text(hosts, limit=10):
    """`a, b, c` or `a, b, ... (25 hosts)`: long fleets stay one readable line."""
    if len(hosts) <= limit:
        return ", ".join(hosts)
    return "%s, ... (%d hosts)" % (", ".join(hosts[:limit]), len(hosts))
