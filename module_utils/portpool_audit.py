# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit engine: facts in, findings out, every fix re-checked before it is shown.

The jobs live in their own files:
- portpool_audit_facts: the facts schema (docs/facts.md) and HostContext;
- portpool_audit_rules: the rules PP001... and their catalogue;
- portpool_audit_advice: structured fixes, rendered and applied to a copy of the facts;
- portpool_audit_policy: the role's variables as a policy;
- this file: waivers, severities, the re-check, the per-host result document.
Nothing here touches the system: the portpool_audit action feeds it what
portpool_facts returned and writes the results.
"""

from __future__ import annotations

import fnmatch
import json

from .portpool_audit_advice import apply_fix, describe_values, render

# The audit's API: callers import these names from here.
from .portpool_audit_facts import (  # noqa: F401  # pylint: disable=unused-import
    FactsError,
    HostContext,
    check_facts,
    show,
)
from .portpool_audit_policy import (  # noqa: F401  # pylint: disable=unused-import
    default_policy,
    merged_policy,
    policy_from_vars,
)
from .portpool_audit_rules import (  # noqa: F401  # pylint: disable=unused-import
    RULE_IDS,
    RULES,
    RULES_BY_ID,
    SEVERITIES,
    SEVERITY_RANK,
    catalogue,
    fix_parity,
    suggest_range,
)

SCHEMA = 1
STATUSES = ("ok", "unreachable", "failed")


def context(host, facts=None, probe=None, *, policy=None, groups=(), status="ok",
            error=None, probe_error=None):
    """A HostContext with the policy merged over the defaults."""
    return HostContext(host, facts, probe, policy=merged_policy(policy), groups=groups,
                       status=status, error=error, probe_error=probe_error)


# --------------------------------------------------------------------------- engine

def waiver_for(rule_id, host, groups, waivers):
    """The first waiver matching rule, host (glob) or group, or None."""
    for waiver in waivers or []:
        if waiver.get("rule") not in (rule_id, "*", "all"):
            continue
        hosts = waiver.get("hosts") or []
        wgroups = waiver.get("groups") or []
        if not hosts and not wgroups:
            return waiver
        if any(fnmatch.fnmatchcase(host, pattern) for pattern in hosts):
            return waiver
        if set(wgroups) & set(groups):
            return waiver
    return None


def host_hits(ctx):
    """(rule, hit) of every host rule for one host (unaudited hosts: only PP017)."""
    out = []
    for rule in RULES:
        if rule.fleet:
            continue
        if ctx.status != "ok" and rule.id != "PP017" and not ctx.facts:
            continue
        out.extend((rule, hit) for hit in rule.check(ctx))
    return out


def recheck(ctx, hit, before_ids):
    """Split a hit's fixes into offered ones and refused ones with the reason.

    Each fix is carried out on a copy of the host's facts and the host judged again
    with every host rule: a fix after which a rule fires that did not fire before
    would trade one finding for another, so it is not offered.
    """
    offered, refused = [], []
    cache = ctx.fix_verdicts  # one host often repeats a fix
    for fix in hit["fixes"]:
        key = json.dumps(fix, sort_keys=True)
        if key not in cache:
            cache[key] = _verdict(ctx, fix, before_ids)
        if cache[key]:
            refused.append({"fix": fix, "reason": cache[key]})
        else:
            offered.append(fix)
    return offered, refused


def _verdict(ctx, fix, before_ids):
    """None when the fix raises no new rule, else the reason it is not offered."""
    try:
        after = host_hits(ctx.with_facts(apply_fix(ctx.facts, fix)))
    except (ValueError, TypeError, KeyError) as exc:
        return "its value is not one the kernel accepts (%s)" % exc
    new = sorted({rule.id for rule, _hit in after} - before_ids)
    if not new:
        return None
    return "it would raise %s" % ", ".join(
        "%s (%s)" % (rule_id, RULES_BY_ID[rule_id].title) for rule_id in new)


def recommendation(hit, offered, refused):
    """The finding's recommendation text: the advice, then each offered fix."""
    parts = [hit["advice"]]
    if len(offered) == 1:
        parts.append(render(offered[0]))
    elif offered:
        parts.append(" Or: ".join("Option %d: %s" % (number, render(fix))
                                  for number, fix in enumerate(offered, 1)))
    for item in refused:
        parts.append("Not offered: %s, because %s." % (
            describe_values(item["fix"]["settings"]) or render(item["fix"]), item["reason"]))
    return " ".join(part for part in parts if part)


def make_finding(rule, ctx, hit, offered=None, refused=()):
    severity = (ctx.policy.get("severity") or {}).get(rule.id) or hit.get("severity") \
        or rule.severity
    waiver = waiver_for(rule.id, ctx.host, ctx.groups, ctx.policy.get("waivers"))
    offered = hit["fixes"] if offered is None else offered
    return {
        "id": rule.id,
        "severity": severity,
        "title": rule.title,
        "host": ctx.host,
        "message": hit["message"],
        "recommendation": recommendation(hit, offered, refused),
        "fixes": offered,
        "fixes_refused": [{"settings": item["fix"]["settings"], "reason": item["reason"]}
                          for item in refused],
        "waived": waiver is not None,
    }


def _judge_host(ctx):
    """Findings of the host rules, fixes re-checked; sets ctx.wants for the fleet rules."""
    hits = host_hits(ctx)
    before = {rule.id for rule, _hit in hits}
    ctx.before_ids = before
    ctx.wants = {}
    for _rule, hit in hits:
        ctx.wants.update(hit.get("wants") or {})
    findings = []
    for rule, hit in hits:
        offered, refused = recheck(ctx, hit, before) if ctx.facts else (hit["fixes"], [])
        findings.append(make_finding(rule, ctx, hit, offered, refused))
    return findings


def evaluate_host(ctx):
    """Findings of every host rule for one host (unaudited hosts: only PP017)."""
    return sort_findings(_judge_host(ctx))


def sort_findings(findings):
    """Worst first, then by rule id (stable for one rule's several findings)."""
    return sorted(findings, key=lambda item: (-SEVERITY_RANK[item["severity"]], item["id"]))


def evaluate(contexts):
    """Findings per host name for a list of HostContext, fleet rules included."""
    result = {ctx.host: _judge_host(ctx) for ctx in contexts}
    by_name = {ctx.host: ctx for ctx in contexts}
    for rule in RULES:
        if not rule.fleet:
            continue
        for host, hits in rule.check(contexts).items():
            ctx = by_name[host]
            for hit in hits:
                offered, refused = recheck(ctx, hit, ctx.before_ids)
                result[host].append(make_finding(rule, ctx, hit, offered, refused))
    return {host: sort_findings(found) for host, found in result.items()}


def worst_severity(findings, include_waived=False):
    ranks = [SEVERITY_RANK[item["severity"]] for item in findings
             if include_waived or not item["waived"]]
    return SEVERITIES[max(ranks)] if ranks else None


def blocking(findings, fail_on):
    """Unwaived findings at or above `fail_on`."""
    floor = SEVERITY_RANK[fail_on]
    return [item for item in findings
            if not item["waived"] and SEVERITY_RANK[item["severity"]] >= floor]


# --------------------------------------------------------------------------- inputs

def error_text(result):
    """One short line for a failed or unreachable task result."""
    msg = result.get("msg") or result.get("stderr") or result.get("module_stderr")
    if not msg and result.get("exception"):
        msg = str(result["exception"]).strip().splitlines()[-1]
    return " ".join(str(msg or "failed").split())[:2000]


def context_from_result(host, groups, facts_result, policy):
    """Build a HostContext from the registered result of portpool_facts on one host.

    `facts_result` is what `register:` captured (None when the task never ran).
    Status: unreachable or failed as the task was; failed when the facts are
    missing or do not follow docs/facts.md. A probe failure alone (the module's
    `probe_error`, or an older module failing with "probe: ..." and the facts) keeps
    the host ok: its facts are judged and PP019 reports the probe.
    """
    facts_result = facts_result or {}
    facts = (facts_result.get("ansible_facts") or {}).get("portpool")
    probe = facts_result.get("probe")
    probe_error = facts_result.get("probe_error")
    status, error = "ok", None
    if facts_result.get("unreachable"):
        status, error = "unreachable", error_text(facts_result)
    elif facts_result.get("failed"):
        text = error_text(facts_result)
        if facts and text.startswith("probe:"):
            probe_error = text[len("probe:"):].strip()
        else:
            status, error = "failed", "portpool_facts: %s" % text
    elif not facts:
        status, error = "failed", "portpool_facts returned no facts"
    if status == "ok":
        try:
            check_facts(facts)
        except FactsError as exc:
            status, error = "failed", "malformed facts (see docs/facts.md): %s" % exc
    if status != "ok":
        facts = probe = None
    return context(host, facts, probe, policy=policy, groups=groups, status=status,
                   error=error, probe_error=probe_error)


def host_document(ctx, findings, audited_at, groups=None):
    """The per-host result file's content (schema 1)."""
    return {
        "schema": SCHEMA,
        "host": ctx.host,
        "status": ctx.status,
        "error": ctx.error,
        "probe_error": ctx.probe_error,
        "audited_at": audited_at,
        "groups": list(groups if groups is not None else ctx.groups),
        "facts": ctx.facts or None,
        "probe": ctx.probe or None,
        "findings": findings,
    }
