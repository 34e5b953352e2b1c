#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portpool_audit
short_description: Judge portpool facts and probe results and write one result file per host
description:
  - Runs on the controller (delegated to localhost, once per play) after
    C(portpool_facts) and C(portpool_probe) ran on every host of the play.
  - Applies the portpool rules (PP001...) to each host's facts and probe, adds the
    fleet rule (drift from the majority of an inventory group), marks waived findings,
    and writes C(<run_dir>/results/<host>.json) for every host, reachable or not, plus
    the rule catalogue C(<run_dir>/rules.json).
  - The rules themselves live in C(module_utils/portpool_audit.py); this module only
    feeds them and writes files. The C(portpool_audit) role calls it.
version_added: "0.1.0"
author: portpool contributors
options:
  names:
    description:
      - Inventory names of the audited hosts, in play order. The other list options
        are parallel to it (same length, same order); a missing or null entry means
        the host produced nothing for that option.
    type: list
    elements: str
    required: true
  hosts:
    description:
      - What the role collected on each host before contacting it, a dict with
        C(vars) (the C(portpool_audit) role's variables as that host sees them, from
        C(portpool_audit_min_usable_ports), ..., C(portpool_preflight_fail_on);
        missing ones take the rules' defaults), C(groups) (C(group_names)) and
        C(started) (ISO-8601 UTC time the host's audit began).
    type: list
    elements: raw
    default: []
  facts_results:
    description:
      - What C(register:) captured for C(portpool_facts) on each host, unreachable and
        failed results included; null when the task never ran.
    type: list
    elements: raw
    default: []
  probe_results:
    description: What C(register:) captured for C(portpool_probe) on each host.
    type: list
    elements: raw
    default: []
  run_dir:
    description:
      - The run's folder. A relative path is taken relative to I(base_dir).
      - When omitted, C(reports/<UTC timestamp>) under I(base_dir), made unique.
    type: str
  base_dir:
    description:
      - Folder that relative and default I(run_dir) paths start from, normally the
        project root. When it is a folder named C(playbooks), its parent is used.
    type: path
    required: true
attributes:
  check_mode:
    support: partial
    details: The result files are the controller's output, not a change on a managed
      host, so they are written in check mode too.
  diff_mode:
    support: none
notes:
  - Writes files only on the machine it runs on; delegate it to localhost.
seealso:
  - module: portpool_facts
  - module: portpool_probe
"""

EXAMPLES = r"""
- name: Judge every host and write the result files
  portpool_audit:
    names: "{{ ansible_play_hosts_all }}"
    hosts: "{{ ansible_play_hosts_all | map('extract', hostvars, 'audit_host') }}"
    facts_results: "{{ ansible_play_hosts_all | map('extract', hostvars, 'facts') }}"
    probe_results: "{{ ansible_play_hosts_all | map('extract', hostvars, 'probe') }}"
    base_dir: "{{ playbook_dir }}"
  run_once: true
  delegate_to: localhost
  register: audit

- name: Show where the results are
  ansible.builtin.debug:
    msg: "{{ audit.results_dir }}"
"""

RETURN = r"""
run_dir:
  description: The run's folder (absolute).
  returned: always
  type: str
  sample: /srv/portpool/reports/20261123T193024Z
results_dir:
  description: Folder holding one C(<host>.json) per host.
  returned: always
  type: str
  sample: /srv/portpool/reports/20261123T193024Z/results
rules_file:
  description: Path of the rule catalogue, C(rules.json).
  returned: always
  type: str
hosts:
  description: One line per host, in play order.
  returned: always
  type: list
  elements: dict
  contains:
    host:
      description: Inventory name.
      type: str
    status:
      description: C(ok), C(unreachable) or C(failed).
      type: str
    worst:
      description: Worst unwaived severity, or null when there is none.
      type: str
    findings:
      description: Number of findings, waived ones included.
      type: int
    waived:
      description: Number of waived findings.
      type: int
    file:
      description: The host's result file.
      type: str
counts:
  description: Unwaived findings per severity over all hosts.
  returned: always
  type: dict
  sample: {"critical": 0, "high": 2, "medium": 1, "low": 0, "info": 1}
blocking:
  description:
    - Unwaived findings at or above each host's C(fail_on) policy, worst first, as
      C(preflight.yml) gates on them.
  returned: always
  type: list
  elements: dict
  sample: [{"host": "web-01", "id": "PP004", "severity": "high", "title": "...", "message": "..."}]
blocking_lines:
  description: I(blocking) as one readable line each.
  returned: always
  type: list
  elements: str
"""

import json
import os
import re
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.portpool_audit import (
    SEVERITIES,
    SEVERITY_RANK,
    HostContext,
    blocking,
    catalogue,
    context_from_results,
    evaluate,
    host_document,
    policy_from_vars,
    worst_severity,
)


def get_argument_spec():
    return {
        "names": {"type": "list", "elements": "str", "required": True},
        "hosts": {"type": "list", "elements": "raw", "default": []},
        "facts_results": {"type": "list", "elements": "raw", "default": []},
        "probe_results": {"type": "list", "elements": "raw", "default": []},
        "run_dir": {"type": "str"},
        "base_dir": {"type": "path", "required": True},
    }


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def resolve_run_dir(run_dir, base_dir, stamp=None):
    """Absolute run folder; a new `reports/<timestamp>` one when run_dir is empty."""
    base = os.path.abspath(base_dir)
    if os.path.basename(base.rstrip(os.sep)) == "playbooks":
        base = os.path.dirname(base)
    if run_dir:
        return os.path.normpath(os.path.join(base, run_dir)), False
    stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return os.path.join(base, "reports", stamp), True


def make_unique(path):
    """Create `path`, or `path-2`, `path-3`... when a run in the same second took it."""
    candidate, number = path, 1
    while True:
        try:
            os.makedirs(candidate)
            return candidate
        except FileExistsError:
            number += 1
            candidate = "%s-%d" % (path, number)
            if number > 1000:
                raise


def safe_name(host):
    """A file name for an inventory name: path separators and odd characters become _."""
    name = re.sub(r"[^A-Za-z0-9._@:+-]", "_", str(host))
    return "_" + name if name.startswith(".") or not name else name


def write_json(path, data):
    """Write JSON atomically (temp file in the same folder, then rename)."""
    folder = os.path.dirname(path)
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True, default=str)
            out.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _at(items, index, default=None):
    value = items[index] if index < len(items) else None
    return default if value is None else value


def build_contexts(params):
    """HostContexts, audit times and group lists from the module's parallel lists."""
    contexts, times, groups = [], {}, {}
    for index, name in enumerate(params["names"]):
        info = _at(params["hosts"], index, {})
        host_groups = list(info.get("groups") or [])
        policy = policy_from_vars(info.get("vars") or {}, name)
        facts_result = _at(params["facts_results"], index)
        if facts_result is None:
            ctx = HostContext(name, policy=policy, groups=host_groups, status="failed",
                              error="no audit input: the host left the play early")
        else:
            ctx = context_from_results(name, host_groups, facts_result,
                                       _at(params["probe_results"], index), policy)
        contexts.append(ctx)
        times[name] = info.get("started") or utc_now()
        groups[name] = host_groups
    return contexts, times, groups


def run(params):
    """Evaluate and write every file; return the module's result dict."""
    contexts, times, groups = build_contexts(params)
    path, fresh = resolve_run_dir(params.get("run_dir"), params["base_dir"])
    if fresh:
        path = make_unique(path)
    results_dir = os.path.join(path, "results")
    os.makedirs(results_dir, exist_ok=True)
    rules_file = os.path.join(path, "rules.json")
    write_json(rules_file, catalogue())
    findings = evaluate(contexts)
    lines, gate = [], []
    counts = dict.fromkeys(SEVERITIES, 0)
    for ctx in contexts:
        mine = findings[ctx.host]
        file_path = os.path.join(results_dir, safe_name(ctx.host) + ".json")
        write_json(file_path, host_document(ctx, mine, times[ctx.host], groups[ctx.host]))
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
    gate.sort(key=lambda item: (-SEVERITY_RANK[item["severity"]], item["host"], item["id"]))
    blocking_lines = ["%s %s %s %s: %s" % (
        item["severity"].upper(), item["id"], item["host"], item["title"], item["message"])
        for item in gate]
    return {
        "changed": True,
        "run_dir": path,
        "results_dir": results_dir,
        "rules_file": rules_file,
        "hosts": lines,
        "counts": counts,
        "blocking": [{key: item[key] for key in ("host", "id", "severity", "title", "message")}
                     for item in gate],
        "blocking_lines": blocking_lines,
    }


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    try:
        result = run(module.params)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg="portpool_audit: %s: %s" % (type(exc).__name__, exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
