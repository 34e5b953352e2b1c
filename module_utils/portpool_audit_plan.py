# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the audit asks of each host, decided once on the controller.

The per-host facts task only looks its call up (one plain variable reference
per argument, no filters): in a forked worker, every filter or test a task
templates loads its plugins again, and a filter over the fleet-wide validated
values costs tens of milliseconds per host (docs/scale.md).
"""

from __future__ import annotations


def facts_call(values, user, fresh_keys):
    """One host's call: its portpool_facts arguments, become, and whether its event is lean.

    `values` are the host's validated policy variables, `user` its ansible_user
    (None when unset), `fresh_keys` the lab measurements on record to reuse.
    """
    probe = None
    if values["portpool_audit_probe"]:
        reuse = values["portpool_audit_probe_reuse_days"] > 0
        probe = {
            "mode": values["portpool_audit_probe_mode"],
            "scope": values["portpool_audit_probe_scope"],
            "sample_ports": values["portpool_audit_probe_sample_ports"],
            "churn_seconds": values["portpool_audit_probe_churn_seconds"],
            # A host asked to measure every run (reuse days 0) is handed no key.
            "on_record": list(fresh_keys) if reuse else [],
        }
    become = values["portpool_audit_become"]
    if become is None:
        # The probe's lab needs root: become unless the connection already is root.
        become = (user or "root") != "root"
    return {
        "become": bool(become),
        "lean_events": bool(values["portpool_audit_lean_events"]),
        "facts": {
            "processes": list(values["portpool_audit_processes"]),
            "destinations_top": values["portpool_audit_destinations_top"],
            "namespaces": {
                "enabled": bool(values["portpool_audit_namespaces"]),
                "match": list(values["portpool_audit_namespace_match"]),
                "max_count": values["portpool_audit_namespace_max"],
            },
            "probe": probe,
        },
    }


def plan_calls(validated, users, fresh_keys):
    """{host: facts_call(...)} for every host with validated values."""
    return {host: facts_call(values, users.get(host), fresh_keys)
            for host, values in validated.items()}
