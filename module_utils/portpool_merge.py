# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portpool_merge action: sliced audits merged into one run folder.

Each slice of an audit (AWX job slicing, `--limit` shards) judged only its own
hosts, so its fleet rules (PP015, drift from the group majority) saw only part
of each group. The merge reads every slice's result files, keeps the newest
per host, refuses hosts judged under different policies, judges the fleet rules
again over the merged fleet from the stored facts, and writes one result file
per host plus rules.json: the report then renders and the gate judges them as
if one unsliced run had written them.
"""

from __future__ import annotations

import json
import os
import time

from .portpool_audit import (
    RULES,
    SEVERITY_RANK,
    FactsError,
    blocking,
    catalogue,
    check_facts,
    context,
    host_hits,
    make_finding,
    recheck,
    sort_findings,
)
from .portpool_audit_identity import policy_hash
from .portpool_files import atomic_write, make_private_dir, parse_time, safe_file_name
from .portpool_report import (
    list_result_files,
    read_result_file,
)

FLEET_RULES = tuple(rule for rule in RULES if rule.fleet)
FLEET_IDS = frozenset(rule.id for rule in FLEET_RULES)


def merge_argument_spec():
    return {
        "result_dirs": {"type": "list", "elements": "path", "required": True},
        "dest": {"type": "path", "required": True},
        "allow_mixed_policies": {"type": "bool", "default": False},
        # The gate's threshold; when omitted each host's own (portpool_preflight_fail_on
        # as its slice saw it).
        "fail_on": {"type": "str", "choices": list(SEVERITY_RANK)},
    }


class MixedPolicies(ValueError):
    """Hosts of one group judged under different policies by different runs."""


def run_of(document):
    """(run id, slice) a result file came from; (None, None) for an older audit's file."""
    run = document.get("run") if isinstance(document.get("run"), dict) else {}
    return run.get("id"), run.get("slice")


def results_folder(folder):
    """A run folder stands for its results/ folder; any other folder is used as it is."""
    inner = os.path.join(folder, "results")
    return inner if os.path.isdir(inner) else folder


def read_newest(result_dirs, warnings):
    """{host: (document, path)}: the newest audited_at per host, the later folder on ties."""
    files, missing = list_result_files(result_dirs)
    for folder in missing:
        warnings.append("result folder %s does not exist" % folder)
    chosen = {}
    for order, (_index, path) in enumerate(files):
        document, problem = read_result_file(path)
        if problem:
            warnings.append(problem)
            continue
        host = document.get("host")
        if not isinstance(host, str) or not host:
            warnings.append("result file %s names no host: skipped" % path)
            continue
        stamp = parse_time(document.get("audited_at"))
        key = (stamp is not None, stamp or 0.0, order)
        previous = chosen.get(host)
        if previous is not None:
            loser = path if key < previous[2] else previous[1]
            warnings.append("%s: duplicate result %s ignored" % (host, loser))
            if key < previous[2]:
                continue
        chosen[host] = (document, path, key)
    return {host: (document, path) for host, (document, path, _key) in chosen.items()}


def policy_conflicts(documents):
    """Groups whose hosts' common policy differs between runs.

    Within one run hosts of a group may differ (host_vars), so a run's policy for a
    group is the one most of its hosts in that group share, and only when at least
    two do: a lone host may carry its own. Across runs those must be the same, or
    the slices were audited under different policies (changed group_vars, extra vars).
    """
    votes = {}  # (group, run) -> {hash: count}
    for document in documents:
        digest = document.get("policy_hash")
        if not digest:
            continue
        # Shards of one run (a shared run id) are still compared with each other.
        run_id = "%s/%s" % run_of(document)
        for group in document.get("groups") or ["ungrouped"]:
            counts = votes.setdefault((group, run_id), {})
            counts[digest] = counts.get(digest, 0) + 1
    by_group = {}
    for (group, run_id), counts in sorted(votes.items(), key=str):
        common, count = max(sorted(counts.items()), key=lambda item: item[1])
        if count >= 2 and count * 2 > sum(counts.values()):
            by_group.setdefault(group, {})[run_id] = common
    conflicts = []
    for group, runs in sorted(by_group.items()):
        if len(set(runs.values())) > 1:
            conflicts.append("group %s: %s" % (group, ", ".join(
                "run %s under policy %s" % (run_id, digest) for run_id, digest in runs.items())))
    return conflicts


def rebuild_context(document, warnings):
    """The HostContext a result file was judged from, or None when its facts are unusable."""
    host = document["host"]
    policy = document.get("policy")
    if not isinstance(policy, dict):
        warnings.append("%s: result file has no policy (older audit): the defaults judge "
                        "its fleet rules" % host)
        policy = {}
    status = document.get("status")
    facts = document.get("facts")
    if status == "ok" and isinstance(facts, dict):
        try:
            check_facts(facts)
        except FactsError as exc:
            warnings.append("%s: facts unusable for the fleet rules: %s" % (host, exc))
            facts, status = None, "failed"
    else:
        facts = None
    groups = [group for group in document.get("groups") or [] if isinstance(group, str)]
    return context(host, facts, document.get("probe") if facts else None, policy=policy,
                   groups=groups, status=status if facts else "failed",
                   probe_error=document.get("probe_error"))


def fleet_findings(contexts):
    """{host: findings of the fleet rules} over every context, as one unsliced run finds them."""
    for ctx in contexts:
        hits = host_hits(ctx) if ctx.facts else []
        ctx.before_ids = {rule.id for rule, _hit in hits}
        ctx.wants = {}
        for _rule, hit in hits:
            ctx.wants.update(hit.get("wants") or {})
    by_name = {ctx.host: ctx for ctx in contexts}
    found = {}
    for rule in FLEET_RULES:
        for host, hits in rule.check(contexts).items():
            ctx = by_name[host]
            for hit in hits:
                offered, refused = recheck(ctx, hit, ctx.before_ids)
                found.setdefault(host, []).append(make_finding(rule, ctx, hit, offered, refused))
    return found


def merged_document(document, path, fleet):
    """The host's document with its fleet findings replaced and its origin named."""
    findings = [item for item in document.get("findings") or []
                if not (isinstance(item, dict) and item.get("id") in FLEET_IDS)]
    merged = dict(document, findings=sort_findings(findings + fleet))
    run_id, slice_id = run_of(document)
    merged["merged_from"] = {"run": run_id, "slice": slice_id, "file": path}
    if isinstance(document.get("policy"), dict) and not document.get("policy_hash"):
        merged["policy_hash"] = policy_hash(document["policy"])
    return merged


def merge(params):
    """Merge, judge the fleet rules again, write; return the action's result dict.

    Raises MixedPolicies (unless allowed) before anything is written.
    """
    warnings = []
    result_dirs = list(dict.fromkeys(results_folder(os.path.abspath(path))
                                     for path in params["result_dirs"]))
    if not result_dirs:
        raise ValueError("result_dirs must name at least one folder")
    newest = read_newest(result_dirs, warnings)
    if not newest:
        raise ValueError("no result file in %s" % ", ".join(result_dirs))
    documents = [document for document, _path in newest.values()]
    conflicts = policy_conflicts(documents)
    if conflicts and not params.get("allow_mixed_policies"):
        raise MixedPolicies(
            "the result folders were audited under different policies (%s). Audit the "
            "slices again under one policy, or set portpool_report_allow_mixed_policies: "
            "true to merge them anyway." % "; ".join(conflicts))
    warnings.extend("mixed policies merged: %s" % item for item in conflicts)
    versions = sorted({str(document.get("portpool_version")) for document in documents
                       if document.get("portpool_version")})
    if len(versions) > 1:
        warnings.append("the results come from portpool versions %s" % ", ".join(versions))
    contexts = [rebuild_context(document, warnings) for document in documents]
    fleet = fleet_findings(contexts)
    dest = os.path.abspath(params["dest"])
    results_dir = os.path.join(dest, "results")
    if results_dir in result_dirs:
        raise ValueError("dest %s is one of the result folders: choose a new folder" % dest)
    make_private_dir(results_dir)
    atomic_write(os.path.join(dest, "rules.json"),
                 json.dumps(catalogue(), indent=1, sort_keys=True) + "\n")
    gate, runs = [], {}
    for host in sorted(newest):
        document, path = newest[host]
        merged = merged_document(document, path, fleet.get(host, []))
        atomic_write(os.path.join(results_dir, safe_file_name(host) + ".json"),
                     json.dumps(merged, indent=1, sort_keys=True, default=str) + "\n")
        origin = merged["merged_from"]
        key = "%s/%s" % (origin["run"], origin["slice"])
        runs[key] = runs.get(key, 0) + 1
        policy = document.get("policy") if isinstance(document.get("policy"), dict) else {}
        threshold = params.get("fail_on") or policy.get("fail_on") or "high"
        usable = [dict(item, host=host, waived=item.get("waived") is True)
                  for item in merged["findings"]
                  if isinstance(item, dict) and item.get("severity") in SEVERITY_RANK]
        gate.extend(blocking(usable, threshold))
    gate.sort(key=lambda item: (-SEVERITY_RANK[item["severity"]], item["host"], item["id"]))
    return {
        "changed": True,
        "run_dir": dest,
        "results_dir": results_dir,
        "hosts": len(newest),
        "runs": runs,
        "merged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "warnings": warnings,
        "blocking": [{key: item.get(key) for key in ("host", "id", "severity", "title", "message")}
                     for item in gate],
        "blocking_lines": ["%s %s %s %s: %s" % (
            item["severity"].upper(), item["id"], item.get("host"), item.get("title"),
            item.get("message")) for item in gate],
    }
