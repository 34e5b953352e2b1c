# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure functions behind the fleet report: read, merge and aggregate host results.

The audit writes one JSON result file per host. This module turns any set of
folders of such files into one report model (plain dicts and lists) that the
templates only render. Nothing here renders or writes files; escaping helpers
for the output formats live here too, so they can be tested alone.

A host result (schema 1)::

    {"schema": 1, "host": "web01", "status": "ok" | "unreachable" | "failed",
     "error": null, "audited_at": "2026-11-23T19:30:25Z", "groups": ["proxies"],
     "facts": {...} | null, "probe": {...} | null,
     "summary": {...} | null,
     "findings": [{"id": "PP001", "severity": "high", "title": "...",
                   "host": "web01", "message": "...", "recommendation": "...",
                   "waived": false}]}

The report reads only `summary` (module_utils/portpool_result_summary.py,
docs/report.md) and the findings: never the raw facts or probe.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import os
import re

from .portpool_files import parse_time, safe_file_name
from .portpool_files import unique_file_names as unique_names
from .portpool_report_host import (
    fix_first,
    measurement,
    namespace_note,
    namespace_rows,
)
from .portpool_result_summary import MAX_COUNT, MAX_UTILISATION, read_summary

RESULT_SCHEMA = 1
MODEL_SCHEMA = 1
SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
STATUSES = ("ok", "unreachable", "failed")
FORMATS = ("json", "markdown", "html", "junit", "prometheus")
# Colour bands of the destination chart, the audit policy's default thresholds.
UTILISATION_WARN = 0.5
UTILISATION_HIGH = 0.8

# A result file above this size is refused (failed entry): memory stays bounded.
MAX_RESULT_BYTES = 16 * 1024 * 1024
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Bidirectional overrides and isolates reorder what follows them on screen
# (a host name could display as another); they have no place in a report.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONSOLE_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff%s]" % _BIDI)
_DISPLAY_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f%s]" % _BIDI)


# --- small typed accessors: result files come from other machines -------------

def as_int(value):
    """An int, or None for anything that is not an integer (bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int):
        return None
    # Counts beyond 2**53 are nonsense from a broken host, and break float maths.
    return value if -MAX_COUNT <= value <= MAX_COUNT else None


def as_float(value):
    """A float, or None for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def as_str(value, default=""):
    """A string; None gives `default`, other types their str()."""
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def as_dict(value):
    return value if isinstance(value, dict) else {}


def worse(first, second):
    """The more severe of two severities (None is below everything)."""
    if first is None:
        return second
    if second is None:
        return first
    return first if SEVERITY_RANK[first] >= SEVERITY_RANK[second] else second


def severity_at_least(severity, threshold):
    return SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK[threshold]


# --- escaping for the output formats -----------------------------------------

def display_text(value):
    """A string with control and bidirectional-override characters made visible (U+FFFD)."""
    text = as_str(value)
    if text.isprintable():  # no Cc or Cf character: nothing to replace (the usual case)
        return text
    return _DISPLAY_UNSAFE.sub("\ufffd", text)


def prometheus_label(value):
    """Escape a label value for the Prometheus text format (backslash, quote, newline)."""
    return (as_str(value).replace("\\", "\\\\").replace('"', '\\"')
            .replace("\n", "\\n"))


def xml_text(value):
    """Replace characters XML 1.0 cannot carry, even as references, by U+FFFD.

    Markup-significant characters are left to the template's autoescape.
    """
    return _XML_INVALID.sub("\ufffd", as_str(value))


_MD_ESCAPES = {
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\\": "\\\\", "`": "\\`",
    "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "#": "\\#", "\n": " ", "\r": " ",
    "\t": " ",
}
_MD_SPECIAL = re.compile("[&<>|\\\\`*_\\[\\]#\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f%s]"
                         % _BIDI)


def markdown_text(value):
    """Escape a string for a Markdown table cell or line.

    HTML-significant characters become entities (Markdown renderers pass raw
    HTML through), Markdown syntax characters are backslash-escaped and line
    breaks become spaces so a value stays in its table cell. Other control
    characters (ESC, which a terminal `cat` would obey) and bidirectional
    overrides become U+FFFD.
    """
    text = as_str(value)
    if not _MD_SPECIAL.search(text):
        return text
    return _MD_SPECIAL.sub(lambda match: _MD_ESCAPES.get(match.group(0), "\ufffd"), text)


def console_text(value, width=None):
    """A single-line, printable version of a string for the console, cut to width."""
    text = _CONSOLE_UNSAFE.sub("?", as_str(value))
    if width is not None and len(text) > width:
        text = text[: max(width - 1, 0)] + "~"
    return text


# --- reading result files ----------------------------------------------------

def list_result_files(result_dirs):
    """Every `*.json` file of each folder, as (folder index, path), in name order.

    Missing folders are reported, not fatal: slices may come in late.
    """
    files = []
    missing = []
    for index, folder in enumerate(result_dirs):
        try:
            with os.scandir(folder) as entries:
                names = sorted(entry.name for entry in entries
                               if entry.name.endswith(".json")
                               and not entry.name.startswith(".")
                               and entry.is_file())
        except (FileNotFoundError, NotADirectoryError):
            missing.append(folder)
            continue
        files.extend((index, os.path.join(folder, name)) for name in names)
    return files, missing


class ResultTooLarge(OSError):
    """A result file above MAX_RESULT_BYTES: refused before it fills memory."""


def read_bytes(path, limit=MAX_RESULT_BYTES):
    """A file's bytes, or the OSError that reading it raised (ResultTooLarge above limit)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        return exc
    if len(data) > limit:
        return ResultTooLarge("larger than the %d MiB limit for a result file"
                              % (limit // (1024 * 1024)))
    return data


def parse_result(path, raw):
    """The parsed result of one file's bytes, or (None, reason) when unusable."""
    if isinstance(raw, OSError):
        return None, "unreadable result file %s: %s" % (path, raw)
    try:
        data = json.loads(raw)
    except RecursionError:
        return None, "unreadable result file %s: nested too deeply" % path
    except ValueError as exc:
        return None, "unreadable result file %s: %s" % (path, exc)
    if not isinstance(data, dict):
        return None, "result file %s does not hold a JSON object" % path
    return data, None


def read_result_file(path):
    """The parsed result of one file, or (None, reason) when it cannot be read."""
    return parse_result(path, read_bytes(path))


def _destination(entry):
    entry = as_dict(entry)
    return {
        "address": as_str(entry.get("address")),
        "port": as_int(entry.get("port")),
        "time_wait": as_int(entry.get("time_wait")),
        "established": as_int(entry.get("established")),
        "total": as_int(entry.get("total")),
        "utilisation": min(as_float(entry.get("utilisation")) or 0.0, MAX_UTILISATION),
    }


def _first(item):
    return item[0]


def destination_candidates(entries, limit):
    """The `limit` busiest destinations of a host as (utilisation, raw entry).

    Only entries with a finite, non-negative utilisation count. The raw
    entries are kept as they are and normalised (`_destination`) only when
    they make it into the report, which keeps 10,000 hosts cheap.
    """
    if not isinstance(entries, list):
        return []
    keyed = []
    for entry in entries:
        if type(entry) is dict:  # pylint: disable=unidiomatic-typecheck
            value = entry.get("utilisation")
            kind = type(value)
            if (kind is float or kind is int) and 0 <= value < float("inf"):
                keyed.append((min(value, MAX_UTILISATION), entry))
    keyed.sort(key=_first, reverse=True)
    del keyed[limit:]
    return keyed


def _finding(entry, warnings, host):
    entry = as_dict(entry)
    severity = as_str(entry.get("severity")).lower()
    if severity not in SEVERITY_RANK:
        warnings.append("%s: finding %s has unknown severity %r, counted as info"
                        % (host, as_str(entry.get("id"), "?"), entry.get("severity")))
        severity = "info"
    return {
        "id": as_str(entry.get("id"), "unknown"),
        "severity": severity,
        "title": as_str(entry.get("title")),
        "message": as_str(entry.get("message")),
        "recommendation": as_str(entry.get("recommendation")),
        "waived": entry.get("waived") is True,
    }


def _finding_order(finding):
    return (-SEVERITY_RANK[finding["severity"]], finding["waived"], finding["id"])


def unique_ids(findings):
    """Each rule id once, as (id, worst severity, all waived): one chip per rule."""
    chips = {}
    for finding in findings:
        rule_id = finding["id"]
        severity, waived = chips.get(rule_id, (None, True))
        if finding["waived"]:
            chips.setdefault(rule_id, (finding["severity"], waived))
        else:
            chips[rule_id] = (worse(severity if not waived else None, finding["severity"]),
                              False)
    return [(rule_id, severity, waived) for rule_id, (severity, waived) in chips.items()]


def failed_record(source, reason):
    """The record of a result file that could not be used: a failed host with the reason."""
    stem = os.path.splitext(os.path.basename(source))[0]
    return summarise_result({"host": stem, "status": "failed", "error": reason}, source)


def result_origin(data):
    """{"run", "slice"} a result came from (a merged file's merged_from, else its run), or None.

    Written by audits since 0.2.0 (docs/scale.md); older files have neither.
    """
    origin = data.get("merged_from")
    if not isinstance(origin, dict):
        origin = data.get("run")
    if not isinstance(origin, dict):
        return None
    run_id = origin.get("run", origin.get("id"))
    return {"run": as_str(run_id) or None, "slice": as_str(origin.get("slice")) or None}


def summarise_result(data, source, top_destinations=20, warnings=None):
    """Keep what the report needs of one host result: its summary and findings.

    `data` is a parsed result file, or None for an unreadable one (then the
    host is named after the file and reported as failed). Returns the host
    record every later step works from. The raw facts and probe are never
    read: the audit's `summary` block carries the measurement.
    """
    if warnings is None:
        warnings = []
    stem = os.path.splitext(os.path.basename(source))[0]
    if data is None:
        data = {"host": stem, "status": "failed",
                "error": "result file could not be read"}
    host = as_str(data.get("host")) or stem
    status = data.get("status")
    error = data.get("error")
    if data.get("schema", RESULT_SCHEMA) != RESULT_SCHEMA:
        error = "unsupported result schema %r in %s" % (data.get("schema"), source)
        status = "failed"
    elif status not in STATUSES:
        error = "unknown status %r in %s" % (status, source)
        status = "failed"
    summary = read_summary(data.get("summary"))
    no_summary = summary is None and status == "ok"
    if summary is None:
        summary = read_summary({})
    candidates = destination_candidates(summary["destinations"], top_destinations)
    findings = data.get("findings")
    findings = ([_finding(entry, warnings, host) for entry in findings]
                if isinstance(findings, list) else [])
    findings.sort(key=_finding_order)
    counts = dict.fromkeys(SEVERITIES, 0)
    waived = 0
    worst = None
    for finding in findings:
        if finding["waived"]:
            waived += 1
        else:
            counts[finding["severity"]] += 1
            worst = worse(worst, finding["severity"])
    groups = data.get("groups")
    audited_at = as_str(data.get("audited_at")) or None
    return {
        "host": host,
        "file": safe_file_name(host),
        "source": source,
        "status": status,
        "error": as_str(error) or None,
        "audited_at": audited_at,
        "audited_ts": parse_time(audited_at),
        "origin": result_origin(data),
        "groups": [as_str(group) for group in groups] if isinstance(groups, list) else [],
        "pool": summary["pool"],
        "time_wait": summary["time_wait"],
        "destination_count": summary["destination_count"],
        "rate": summary["rate"],
        "probe": summary["probe"],
        "namespaces": summary["namespaces"],
        "candidates": candidates,
        "worst_destination": _destination(candidates[0][1]) if candidates else None,
        "findings": findings,
        "chips": unique_ids(findings),
        "no_summary": no_summary,
        "counts": counts,
        "unwaived": sum(counts.values()),
        "waived": waived,
        "worst": worst,
    }


def merge_records(records, warnings=None):
    """One record per host: the newest `audited_at` wins.

    `records` is an iterable of (order, record); on equal times (or none) the
    higher order wins, i.e. the later folder in the list. A record without a
    readable time loses to any record with one.
    """
    if warnings is None:
        warnings = []
    chosen = {}
    keys = {}
    for order, record in records:
        stamp = record["audited_ts"]
        key = (stamp is not None, stamp or 0.0, order)
        host = record["host"]
        previous = keys.get(host)
        if previous is None:
            chosen[host] = record
            keys[host] = key
            continue
        if key >= previous:
            loser, chosen[host], keys[host] = chosen[host], record, key
        else:
            loser = record
        warnings.append("%s: duplicate result %s ignored, newer one is %s"
                        % (host, loser["source"], chosen[host]["source"]))
    return chosen


def load_results(result_dirs, top_destinations=20, warnings=None, reader=None):
    """Read every result file of every folder and merge them by host.

    `reader(paths)` yields each path's bytes (or OSError) in order; the
    default reads them one by one. Returns (records by host, files read).
    """
    if warnings is None:
        warnings = []
    files, missing = list_result_files(result_dirs)
    for folder in missing:
        warnings.append("result folder %s does not exist" % folder)
    paths = [path for _index, path in files]
    contents = reader(paths) if reader else map(read_bytes, paths)

    def records():
        for order, (path, raw) in enumerate(zip(paths, contents)):
            data, problem = parse_result(path, raw)
            if problem:
                warnings.append(problem)
                yield order, failed_record(path, problem)
                continue
            try:
                yield order, summarise_result(data, path, top_destinations, warnings)
            except (RecursionError, OverflowError, ValueError, TypeError) as exc:
                # One broken file becomes a failed entry; every other host is still written.
                reason = "unusable result file %s: %s: %s" % (path, type(exc).__name__, exc)
                warnings.append(reason)
                yield order, failed_record(path, reason)

    merged = merge_records(records(), warnings)
    old = sorted(host for host, record in merged.items() if record["no_summary"])
    if old:
        # Once for the fleet: an old audit's files all lack it.
        warnings.append("%d host result(s) have no summary block (written by an older audit), "
                        "so their pool and rates are not shown: %s%s"
                        % (len(old), ", ".join(old[:5]), ", ..." if len(old) > 5 else ""))
    return merged, len(files)


def load_rules(paths, warnings=None):
    """Rule definitions from the first readable rules.json files, merged by id."""
    if warnings is None:
        warnings = []
    rules = {}
    for path in paths:
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            warnings.append("unreadable rules file %s: %s" % (path, exc))
            continue
        if not isinstance(data, list):
            warnings.append("rules file %s does not hold a JSON list" % path)
            continue
        for item in data:
            entry = as_dict(item)
            rule_id = as_str(entry.get("id"))
            if not rule_id or rule_id in rules:
                continue
            severity = as_str(entry.get("severity")).lower()
            rules[rule_id] = {
                "id": rule_id,
                "severity": severity if severity in SEVERITY_RANK else None,
                "title": as_str(entry.get("title")),
                "description": as_str(entry.get("description")),
            }
    return rules


# --- aggregation -------------------------------------------------------------

def host_sort_key(record):
    return (record["host"].casefold(), record["host"])


def concern_key(record):
    """Order for the console: failed and unreachable first, then worst, then most."""
    status_rank = {"failed": 0, "unreachable": 1}.get(record["status"], 2)
    worst = SEVERITY_RANK[record["worst"]] if record["worst"] else -1
    return (status_rank, -worst, -record["unwaived"], record["host"].casefold())


def build_rules(known, hosts):
    """The rule table: definitions from rules.json, completed from findings.

    Each entry counts, per severity, the unwaived findings, the waived ones
    and the hosts with at least one finding of that rule.
    """
    rules = {}
    for rule_id, rule in known.items():
        rules[rule_id] = dict(rule, counts=dict.fromkeys(SEVERITIES, 0), waived=0,
                              hosts=0, total=0)
    for record in hosts:
        seen = set()
        for finding in record["findings"]:
            rule = rules.get(finding["id"])
            if rule is None:
                rule = rules[finding["id"]] = {
                    "id": finding["id"], "severity": None, "title": finding["title"],
                    "description": "", "counts": dict.fromkeys(SEVERITIES, 0),
                    "waived": 0, "hosts": 0, "total": 0}
            if not rule["title"]:
                rule["title"] = finding["title"]
            if finding["waived"]:
                rule["waived"] += 1
            else:
                rule["counts"][finding["severity"]] += 1
                rule["total"] += 1
            if not known.get(finding["id"], {}).get("severity"):
                rule["severity"] = worse(rule["severity"], finding["severity"])
            seen.add(finding["id"])
        for rule_id in seen:
            rules[rule_id]["hosts"] += 1
    ordered = [rules[key] for key in sorted(rules)]
    for rule in ordered:
        rule["label"] = "%s: %s" % (rule["id"], rule["title"]) if rule["title"] else rule["id"]
    return ordered


def junit_cases(record, rules, fail_on):
    """The JUnit verdicts of one host: only the testcases that did not pass.

    Returns (cases by rule id, counts). A host that could not be audited gets
    one error testcase (`audit`) and its rule testcases are skipped. For a
    reachable host, a rule fails when a finding at or above `fail_on` is not
    waived, is skipped when all its findings are waived, and passes otherwise
    (findings below the threshold are listed in its output).
    """
    cases = {}
    counts = {"tests": len(rules) + 1, "failures": 0, "errors": 0, "skipped": 0}
    if record["status"] != "ok":
        counts["errors"] = 1
        counts["skipped"] = len(rules)
        return cases, counts
    by_rule = {}
    for finding in record["findings"]:
        by_rule.setdefault(finding["id"], []).append(finding)
    for rule_id, findings in by_rule.items():
        failing = [f for f in findings
                   if not f["waived"] and severity_at_least(f["severity"], fail_on)]
        if failing:
            kind = "failure"
            counts["failures"] += 1
            worst = failing[0]["severity"]
        elif all(f["waived"] for f in findings):
            kind = "skipped"
            counts["skipped"] += 1
            worst = findings[0]["severity"]
        else:
            kind = "passed"
            worst = findings[0]["severity"]
        cases[rule_id] = {"kind": kind, "severity": worst, "findings": findings,
                          "message": findings[0]["message"] if kind == "failure"
                          else "%d finding(s), all waived" % len(findings)
                          if kind == "skipped" else ""}
    return cases, counts


def top_destinations(hosts, limit):
    """The `limit` busiest destinations of the fleet by pool utilisation."""
    candidates = (
        (utilisation, record["host"], index, entry)
        for record in hosts
        for index, (utilisation, entry) in enumerate(record["candidates"])
    )
    # Containers' namespaces have pools of their own: their destinations compete too,
    # shown as "host [namespace]".
    inside = (
        (entry["utilisation"], "%s [%s]" % (record["host"], row["name"]), index, entry)
        for record in hosts
        for row in record.get("namespace_rows") or ()
        for index, entry in enumerate(row["top"])
    )
    best = heapq.nlargest(limit, itertools.chain(candidates, inside),
                          key=lambda item: (item[0], item[1], -item[2]))
    return [dict(_destination(entry), host=host) for _util, host, _index, entry in best]


def _scale(value, maximum, width):
    if not maximum or value is None or value <= 0:
        return 0.0
    return round(min(value, maximum) * width / maximum, 1)


def nice_axis(maximum, count=4):
    """A round axis for counts: (axis maximum, step), steps of 1, 2, 2.5 or 5 x 10^n.

    Steps are whole numbers, so small counts get ticks 0, 1, 2.
    """
    if not maximum or maximum <= 0:
        return 1, 1
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(factor * magnitude for factor in (1, 2, 2.5, 5, 10)
                if factor * magnitude >= raw)
    step = max(1, math.ceil(step))
    return step * math.ceil(maximum / step), step


def _ticks(maximum, width, percent=False, step=None):
    if not maximum:
        return []
    if percent:
        values = [maximum * index / 4 for index in range(5)]
    else:
        values = [step * index for index in range(round(maximum / step) + 1)]
    return [{"x": round(width * value / maximum, 1),
             "label": ("%d%%" % round(value * 100)) if percent else format_count(value)}
            for value in values]


def format_count(value):
    """A compact number label: 950, 28.2k, 1.5M."""
    if value is None:
        return "-"
    value = float(value)
    for factor, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            text = ("%.1f" % (value / factor)).rstrip("0").rstrip(".")
            return text + suffix
    return "%d" % round(value)


def hbar_chart(rows, maximum, percent=False, bar_width=420, row_height=18, *,
               thresholds=()):
    """Geometry of a horizontal bar chart, so the SVG template only places shapes.

    `rows` are dicts with `label`, `title`, `value_label` and `segments`
    (list of {value, cls}), drawn stacked from the left. `thresholds` are
    (value, cls, label) drawn as vertical lines across the bars.
    """
    step = None
    if not percent:
        maximum, step = nice_axis(maximum)
    drawn = []
    for index, row in enumerate(rows):
        x = 0.0
        segments = []
        for segment in row["segments"]:
            width = _scale(segment["value"], maximum, bar_width)
            if width > 0:
                segments.append({"x": round(x, 1), "w": width, "cls": segment["cls"]})
                x += width
        drawn.append(dict(row, y=index * row_height, segments=segments,
                          value_x=round(min(x, bar_width) + 4, 1)))
    lines = [{"x": _scale(value, maximum, bar_width), "cls": cls, "label": label}
             for value, cls, label in thresholds if value <= maximum]
    return {"rows": drawn, "bar_width": bar_width, "row_height": row_height,
            "height": max(len(rows), 1) * row_height + 22,
            "ticks": _ticks(maximum, bar_width, percent=percent, step=step),
            "thresholds": lines}


def _short(text, width=34):
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def build_charts(hosts, rules, fleet_top, totals, chart_hosts):
    pooled = [record for record in hosts if record["pool"]["usable"] is not None]
    pooled.sort(key=lambda record: (record["pool"]["usable"], host_sort_key(record)))
    shown = pooled[:chart_hosts]
    largest = max((record["pool"]["size"] or record["pool"]["usable"] for record in shown),
                  default=0)
    pool_rows = []
    for record in shown:
        usable = record["pool"]["usable"]
        size = record["pool"]["size"] or usable
        pool_rows.append({
            "label": _short(record["host"]), "title": "%s: %d usable of %d ports"
            % (record["host"], usable, size),
            "value_label": format_count(usable),
            "segments": [{"value": usable, "cls": "usable"},
                         {"value": max(size - usable, 0), "cls": "reserved"}]})
    dest_rows = []
    for dest in fleet_top:
        util = dest["utilisation"]
        band = ("high" if util >= UTILISATION_HIGH
                else "warn" if util >= UTILISATION_WARN else "fine")
        label = "%s \u2192 %s:%s" % (dest["host"], dest["address"], dest["port"])
        dest_rows.append({
            "label": _short(label, 44), "title": "%s: %s of the pool (%s sockets, %s in TIME_WAIT)"
            % (label, "%.1f%%" % (util * 100), format_count(dest["total"]),
               format_count(dest["time_wait"])),
            "value_label": "%.1f%%" % (util * 100),
            "segments": [{"value": util, "cls": band}]})
    dest_max = max([1.0] + [dest["utilisation"] for dest in fleet_top])
    severity_rows = [{
        "label": severity, "title": "%s: %d unwaived finding(s)"
        % (severity, totals["findings"][severity]),
        "value_label": "%d" % totals["findings"][severity],
        "segments": [{"value": totals["findings"][severity], "cls": "sev-" + severity}]}
        for severity in reversed(SEVERITIES)]
    rule_rows = [{
        "label": _short("%s %s" % (rule["id"], rule["title"]), 44),
        "title": "%s %s: %d unwaived, %d waived, on %d host(s)"
        % (rule["id"], rule["title"], rule["total"], rule["waived"], rule["hosts"]),
        "value_label": "%d" % rule["total"],
        "segments": [{"value": rule["counts"][severity], "cls": "sev-" + severity}
                     for severity in reversed(SEVERITIES)]}
        for rule in rules if rule["total"] or rule["waived"]]
    return {
        "pool": dict(hbar_chart(pool_rows, largest, bar_width=380),
                     shown=len(shown), of=len(pooled)),
        "destinations": hbar_chart(
            dest_rows, dest_max, percent=True, bar_width=340,
            thresholds=[(UTILISATION_WARN, "warn", "warn %d%%" % (UTILISATION_WARN * 100)),
                        (UTILISATION_HIGH, "high", "high %d%%" % (UTILISATION_HIGH * 100))]),
        "severity": hbar_chart(severity_rows, max(totals["findings"].values()) or 1,
                               bar_width=380),
        "rules": hbar_chart(rule_rows, max([rule["total"] for rule in rules] + [1]),
                            bar_width=340),
    }


def summary_table(hosts, totals, rows, report_path):
    """The console summary: one line per host of concern, worst first."""
    ordered = sorted(hosts, key=concern_key)
    shown = ordered[:rows]
    header = ("HOST", "STATUS", "WORST", "FINDINGS", "TOP FINDINGS")
    table = []
    for record in shown:
        if record["status"] == "ok":
            top = "; ".join("%s %s" % (f["id"], f["title"])
                            for f in record["findings"] if not f["waived"])[:200]
            findings = str(record["unwaived"])
        else:
            top = record["error"] or ""
            findings = "-"
        table.append((console_text(record["host"], 40), record["status"],
                      record["worst"] or "-", findings, console_text(top, 70)))
    widths = [max([len(header[col])] + [len(line[col]) for line in table])
              for col in range(4)]
    lines = [
        "portpool: %d host(s): %d ok, %d unreachable, %d failed; unwaived findings: %s"
        % (totals["hosts"], totals["status"]["ok"], totals["status"]["unreachable"],
           totals["status"]["failed"],
           ", ".join("%d %s" % (totals["findings"][s], s) for s in reversed(SEVERITIES))),
    ]
    for line in [header, *table]:
        cells = [line[col].ljust(widths[col]) for col in range(4)] + [line[4]]
        lines.append("  ".join(cells).rstrip())
    if len(ordered) > len(shown):
        lines.append("... %d more host(s) in the report" % (len(ordered) - len(shown)))
    lines.append("report: %s" % console_text(report_path))
    return "\n".join(lines)


def unique_file_names(hosts):
    """Make every host's file name unique ignoring case (`WEB01` and `web01`)."""
    for record, name in zip(hosts, unique_names([record["file"] for record in hosts])):
        record["file"] = name


def build_model(records, known_rules, options):
    """The whole report model from merged host records.

    `options`: fail_on (JUnit threshold), top_destinations, chart_hosts,
    console_hosts, title, generated_at, result_dirs, dest, report_path.
    """
    hosts = sorted(records.values(), key=host_sort_key)
    unique_file_names(hosts)
    rules = build_rules(known_rules, hosts)
    rule_ids = [rule["id"] for rule in rules]
    totals = {
        "hosts": len(hosts),
        "status": dict.fromkeys(STATUSES, 0),
        "findings": dict.fromkeys(SEVERITIES, 0),
        "waived": 0,
        "junit": {"tests": 0, "failures": 0, "errors": 0, "skipped": 0},
        "worst": None,
        "hosts_with_findings": 0,
    }
    for record in hosts:
        totals["status"][record["status"]] += 1
        for severity, count in record["counts"].items():
            totals["findings"][severity] += count
        totals["waived"] += record["waived"]
        totals["worst"] = worse(totals["worst"], record["worst"])
        if record["unwaived"]:
            totals["hosts_with_findings"] += 1
        cases, counts = junit_cases(record, rule_ids, options["fail_on"])
        # Aligned with `rules`: None where the testcase simply passes.
        record["junit"] = [cases.get(rule_id) for rule_id in rule_ids] if cases else None
        record["junit_counts"] = counts
        for key, value in counts.items():
            totals["junit"][key] += value
    shown = max(options.get("host_destinations", 5), 0)
    for record in hosts:
        record["namespace_rows"] = namespace_rows(record["namespaces"], shown, _destination)
        record["namespace_note"] = namespace_note(record["namespaces"])
    fleet_top = top_destinations(hosts, options["top_destinations"])
    for record in hosts:
        record["measure"] = measurement(record)
        top = {}
        for _util, entry in record["candidates"]:
            if len(top) >= shown:
                break
            item = _destination(entry)
            # One series per ip:port: a duplicate label would break the textfile.
            top.setdefault((item["address"], item["port"]), item)
        record["top"] = list(top.values())
    grouped = rule_findings(hosts)
    order = fix_first(rules, grouped, {record["host"]: record["file"] for record in hosts})
    rank = {entry["id"]: index for index, entry in enumerate(order)}
    return {
        "schema": MODEL_SCHEMA,
        "title": options["title"],
        "generated_at": options["generated_at"],
        "dest": options["dest"],
        "report_path": options["report_path"],
        "result_dirs": list(options["result_dirs"]),
        "fail_on": options["fail_on"],
        "severities": list(SEVERITIES),
        "totals": totals,
        "rules": rules,
        "rule_findings": grouped,
        "files": {record["host"]: record["file"] for record in hosts},
        "fix_first": order,
        # Rule sections: those with findings in fix-first order (waived-only ones
        # last); rules nobody broke are listed on one line instead.
        "rule_sections": sorted((rule for rule in rules if rule["id"] in grouped),
                                key=lambda rule: (rank.get(rule["id"], len(rank)), rule["id"])),
        "quiet_rules": [rule for rule in rules if rule["id"] not in grouped],
        "hosts": hosts,
        "top_destinations": fleet_top,
        "charts": build_charts(hosts, rules, fleet_top, totals, options["chart_hosts"]),
        "summary": summary_table(hosts, totals, options["console_hosts"],
                                 options["report_path"]),
    }


def rule_findings(hosts):
    """Findings grouped by rule id, each as (host, finding), hosts in name order."""
    grouped = {}
    for record in hosts:
        for finding in record["findings"]:
            grouped.setdefault(finding["id"], []).append((record["host"], finding))
    return grouped


def fleet_document(model):
    """What fleet.json holds: the merged, aggregated fleet without chart geometry."""
    hosts = []
    for record in model["hosts"]:
        hosts.append({
            "host": record["host"], "status": record["status"], "error": record["error"],
            "audited_at": record["audited_at"], "groups": record["groups"],
            "source": record["source"], "origin": record.get("origin"), "pool": record["pool"],
            "time_wait": record["time_wait"],
            "rate": record["rate"], "probe": record["probe"],
            "destination_count": record["destination_count"],
            "namespaces": record["namespaces"],
            "worst_destination": record["worst_destination"],
            "worst_severity": record["worst"],
            "findings_by_severity": record["counts"], "waived": record["waived"],
            "findings": record["findings"],
        })
    return {
        "schema": model["schema"], "title": model["title"],
        "generated_at": model["generated_at"], "result_dirs": model["result_dirs"],
        "junit_fail_on": model["fail_on"], "totals": model["totals"],
        "rules": model["rules"], "top_destinations": model["top_destinations"],
        "fix_first": model["fix_first"],
        "hosts": hosts,
    }
