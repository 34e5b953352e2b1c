# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-host view of the report and the "fix first" order. Pure functions.

Each host's measurement (pool, probe hold, new-connection rates) is turned
into short label/text pairs here, once, so the HTML and Markdown templates
say the same thing and only place it.
"""

from __future__ import annotations

SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")
FIX_FIRST_HOSTS = 10


def _count(value):
    return "-" if value is None else f"{value:,}"


def _rate(value):
    return "-" if value is None else f"{value:,.1f}/s"


def pool_text(pool):
    if pool["usable"] is None:
        return None
    span = ("%d-%d, " % (pool["low"], pool["high"])
            if pool["low"] is not None and pool["high"] is not None else "")
    return "%s%s ports, %s usable (%s reserved in the range)" % (
        span, _count(pool["size"]), _count(pool["usable"]), _count(pool["reserved_in_range"]))


def probe_text(probe):
    """'held 998 of 1,000 expected, stopped by EADDRNOTAVAIL (lab, quick, 40000-40999)'."""
    if not probe or probe["held"] is None:
        return None
    where = [part for part in (probe["mode"], probe["scope"]) if part]
    if probe["measured_range"]:
        where.append("%d-%d" % tuple(probe["measured_range"]))
    text = "held %s of %s expected, stopped by %s" % (
        _count(probe["held"]), _count(probe["expected"]), probe["stopped_by"] or "-")
    if where:
        text += " (%s)" % ", ".join(where)
    if probe["matches_expected"] is False:
        text += "; does not match the expected count"
    return text


def missing_text(probe):
    if not probe or not probe["missing_ports"]:
        return None
    ports = probe["missing_ports"]
    shown = ", ".join(str(port) for port in ports[:20])
    return shown + (" and %d more" % (len(ports) - 20) if len(ports) > 20 else "")


def rate_texts(rate, usable):
    """(current, sustainable) sentences for the busiest destination."""
    if not rate or rate["sustainable_per_s"] is None:
        return None, None
    target = rate["destination"] or "one destination"
    current = None
    if rate["current_per_s"] is not None:
        current = "%s to %s (its TIME_WAIT sockets / 60 s)" % (
            _rate(rate["current_per_s"]), target)
        if rate["sustainable_per_s"]:
            current += ", %.0f%% of sustainable" % (
                100.0 * rate["current_per_s"] / rate["sustainable_per_s"])
    if rate["reuse"]:
        how = "%s usable / %s ms tcp_tw_reuse delay%s" % (
            _count(usable), _count(rate["reuse_delay_ms"]),
            "" if rate["reuse_delay_source"] == "sysctl" else " (default)")
    else:
        how = "%s usable / 60 s TIME_WAIT" % _count(usable)
    return current, "%s to %s (%s)" % (_rate(rate["sustainable_per_s"]), target, how)


def measurement(record):
    """The label/text pairs of a host's view, in reading order; empty ones left out."""
    current, sustainable = rate_texts(record["rate"], record["pool"]["usable"])
    pairs = [
        ("Pool", pool_text(record["pool"])),
        ("Probe", probe_text(record["probe"])),
        ("Missing ports", missing_text(record["probe"])),
        ("New connections now", current),
        ("Sustainable", sustainable),
        ("TIME_WAIT", _count(record["time_wait"]) if record["time_wait"] is not None
         else None),
    ]
    return [{"label": label, "text": text} for label, text in pairs if text]


def namespace_rows(namespaces, destinations=5, normalise=dict):
    """One row per network namespace of a host, for the host view and Prometheus.

    `normalise` types a raw destination entry (the report's own normaliser).
    """
    rows = []
    for item in (namespaces or {}).get("items") or []:
        top = [normalise(entry) for entry in item["destinations"][:destinations]]
        current, sustainable = rate_texts(item["rate"], item["pool"]["usable"])
        rows.append({
            "id": item["id"], "name": item["name"] or item["id"], "kind": item["kind"],
            "netns": item["netns"], "container": item["container"], "pod": item["pod"],
            "error": item["error"],
            "range": "%d-%d" % tuple(item["range"]) if item["range"] else None,
            "tcp_tw_reuse": item["tcp_tw_reuse"], "usable": item["pool"]["usable"],
            "time_wait": item["time_wait"], "top": top,
            "worst": top[0] if top else None,
            "current": current, "sustainable": sustainable,
            "current_per_s": (item["rate"] or {}).get("current_per_s"),
            "sustainable_per_s": (item["rate"] or {}).get("sustainable_per_s"),
        })
    return rows


def namespace_note(namespaces):
    """'2 found, 2 read' plus why any were not read, or None when none were found."""
    if not namespaces or not namespaces["found"]:
        return None
    note = "%s found, %s read" % (_count(namespaces["found"]), _count(namespaces["inspected"]))
    if namespaces["reasons"]:
        note += " (%s)" % "; ".join(namespaces["reasons"])
    return note


def _worst_unwaived(rule):
    for severity in reversed(SEVERITY_ORDER):
        if rule["counts"].get(severity):
            return severity
    return None


def fix_first(rules, rule_findings, files):
    """Rules with unwaived findings, the one to fix first on top.

    Order: worst unwaived severity, then the most hosts, then the rule id.
    Each entry names its first hosts with their file names (for links) and
    one recommendation.
    """
    ranked = []
    for rule in rules:
        worst = _worst_unwaived(rule)
        if worst is None:
            continue
        items = [(host, finding) for host, finding in rule_findings.get(rule["id"], ())
                 if not finding["waived"]]
        hosts = list(dict.fromkeys(host for host, _finding in items))
        ranked.append({
            "id": rule["id"], "title": rule["title"], "severity": worst,
            "hosts": len(hosts),
            "first_hosts": [{"host": host, "file": files[host]}
                            for host in hosts[:FIX_FIRST_HOSTS]],
            "recommendation": next((finding["recommendation"] for _host, finding in items
                                    if finding["recommendation"]), ""),
        })
    ranked.sort(key=lambda entry: (-SEVERITY_ORDER.index(entry["severity"]),
                                   -entry["hosts"], entry["id"]))
    return ranked
