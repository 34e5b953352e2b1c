# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portpool_audit action: judge every host, write one result file per host.

Runs on the controller, inside the portpool_audit action plugin: the registered
results of every host go straight from memory to the rules, with no module
process and no JSON round trip for the whole fleet's facts.
"""

from __future__ import annotations

import json
import os

from .portpool_audit import (
    SEVERITIES,
    SEVERITY_RANK,
    blocking,
    catalogue,
    context,
    context_from_result,
    evaluate,
    host_document,
    policy_from_vars,
    worst_severity,
)
from .portpool_audit_identity import run_identity, stamp
from .portpool_audit_policy import merged_policy
from .portpool_files import (
    atomic_write,
    fsync_dir,
    make_private_dir,
    safe_file_name,
    unique_file_names,
    utc_now,
    utc_stamp,
)
from .portpool_probe_record import filled_in, updated_record, write_record
from .portpool_result_summary import host_summary


def audit_argument_spec():
    return {
        "hosts": {"type": "dict", "required": True},
        # Keyed by host, in place of the same key inside each `hosts` entry: lets
        # the role pass registered results and validated policies without a
        # per-host task to merge them (each such task costs the controller a fork).
        "policies": {"type": "dict"},
        "facts_results": {"type": "dict"},
        "run_dir": {"type": "str"},
        "base_dir": {"type": "path", "required": True},
        # Where new run folders go (reports/<timestamp>), relative to base_dir.
        "root": {"type": "str", "default": "reports"},
        # Self-description of the files (module_utils/portpool_audit_identity.py).
        "run_id": {"type": "str"},
        "slice": {"type": "str"},
        "awx": {"type": "dict", "default": {}},
        # What portpool_probe_record read (`path`, `measurements`): the probes that
        # skipped their hold are filled in from it, and it is written back.
        "probe_record": {"type": "dict"},
    }


def resolve_run_dir(run_dir, base_dir, stamp=None, root="reports"):
    """Absolute run folder; a new `<root>/<timestamp>` one when run_dir is empty."""
    base = os.path.abspath(base_dir)
    if os.path.basename(base.rstrip(os.sep)) == "playbooks":
        base = os.path.dirname(base)
    if run_dir:
        return os.path.normpath(os.path.join(base, run_dir)), False
    stamp = stamp or utc_stamp()
    return os.path.join(base, root or "reports", stamp), True


def make_unique(path):
    """Create `path`, or `path-2`, `path-3`... when a run in the same second took it."""
    candidate, number = path, 1
    while True:
        try:
            # 0700: the run holds every host's facts.
            os.makedirs(candidate, mode=0o700)
            return candidate
        except FileExistsError:
            number += 1
            candidate = "%s-%d" % (path, number)
            if number > 1000:
                raise


def write_json(path, data):
    """Write a result file atomically: the report never reads half of one."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def with_record(facts_result, entries):
    """A registered facts result whose probe skipped its hold, filled in from the record."""
    probe, error = filled_in(facts_result.get("probe"), entries)
    if probe is facts_result.get("probe"):
        return facts_result
    return dict(facts_result, probe=probe, probe_error=error or facts_result.get("probe_error"))


def build_contexts(params):
    """HostContexts, audit times and group lists from the action's dict keyed by host.

    Each value: {"vars": policy variables, "groups", "started", "facts_result": what
    portpool_facts registered (absent: the host left the play before it ran)}.
    """
    contexts, times, groups = [], {}, {}
    policies = params.get("policies")
    facts_results = params.get("facts_results")
    entries = (params.get("probe_record") or {}).get("measurements") or {}
    for name, given in params["hosts"].items():
        info = dict(given) if isinstance(given, dict) else {}
        if policies is not None:
            info["vars"] = policies.get(name)
        if facts_results is not None:
            info["facts_result"] = facts_results.get(name)
        host_groups = list(info.get("groups") or [])
        policy = policy_from_vars(info.get("vars") or {}, name)
        facts_result = info.get("facts_result")
        if not isinstance(facts_result, dict):
            ctx = context(name, policy=policy, groups=host_groups, status="failed",
                          error="no audit input: the host left the play early")
        else:
            ctx = context_from_result(name, host_groups, with_record(facts_result, entries),
                                      policy)
        contexts.append(ctx)
        times[name] = info.get("started") or utc_now()
        groups[name] = host_groups
    return contexts, times, groups


def grouped_errors(contexts):
    """[{"reason", "hosts"}]: each distinct error once, with every host it hit."""
    reasons = {}
    for ctx in contexts:
        if ctx.error:
            reasons.setdefault("%s: %s" % (ctx.status, ctx.error), []).append(ctx.host)
        if ctx.probe_error:
            reasons.setdefault("probe failed (facts judged): %s" % ctx.probe_error,
                               []).append(ctx.host)
    return [{"reason": reason, "hosts": hosts} for reason, hosts in reasons.items()]


def run(params):
    """Evaluate and write every file; return the action's result dict."""
    contexts, times, groups = build_contexts(params)
    path, fresh = resolve_run_dir(params.get("run_dir"), params["base_dir"],
                                  root=params.get("root") or "reports")
    run = run_identity(params.get("run_id"), params.get("slice"), params.get("awx"))
    if fresh:
        path = make_unique(path)
    results_dir = make_private_dir(os.path.join(path, "results"))
    rules_file = os.path.join(path, "rules.json")
    write_json(rules_file, catalogue())
    findings = evaluate(contexts)
    lines, gate = [], []
    counts = dict.fromkeys(SEVERITIES, 0)
    # ASCII names, unique ignoring case: WEB01 and web01 must not share a file on a
    # controller whose folders fold case.
    names = unique_file_names([safe_file_name(ctx.host) for ctx in contexts])
    for ctx, name in zip(contexts, names):
        mine = findings[ctx.host]
        file_path = os.path.join(results_dir, name + ".json")
        document = dict(host_document(ctx, mine, times[ctx.host], groups[ctx.host]),
                        summary=host_summary(ctx.facts, ctx.probe))
        write_json(file_path, stamp(document, run, merged_policy(ctx.policy)))
        for item in mine:
            if not item["waived"]:
                counts[item["severity"]] += 1
        gate.extend(blocking(mine, ctx.policy.get("fail_on") or "high"))
        lines.append({
            "host": ctx.host,
            "status": ctx.status,
            "worst": worst_severity(mine),
            "findings": len(mine),
            "waived": sum(1 for item in mine if item["waived"]),
            "file": file_path,
        })
    fsync_dir(results_dir)  # once for every rename above, not once a file
    record = params.get("probe_record")
    if record and record.get("path"):
        write_record(record["path"], updated_record(
            record.get("measurements") or {},
            [(ctx.host, ctx.probe, times[ctx.host]) for ctx in contexts if ctx.probe],
            run["id"]))
    errors = grouped_errors(contexts)
    gate.sort(key=lambda item: (-SEVERITY_RANK[item["severity"]], item["host"], item["id"]))
    blocking_lines = ["%s %s %s %s: %s" % (
        item["severity"].upper(), item["id"], item["host"], item["title"], item["message"])
        for item in gate]
    return {
        # The audit only reads the hosts; its result files are not a change to them.
        "changed": False,
        "run_dir": path,
        "run": run,
        "results_dir": results_dir,
        "rules_file": rules_file,
        "hosts": lines,
        "counts": counts,
        "blocking": [{key: item[key] for key in ("host", "id", "severity", "title", "message")}
                     for item in gate],
        "blocking_lines": blocking_lines,
        "errors": errors,
        "error_lines": ["%s (hosts: %s)" % (item["reason"], ", ".join(item["hosts"]))
                        for item in errors],
    }
