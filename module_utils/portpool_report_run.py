# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portpool_report action: its options and one rendering of the fleet report.

Runs on the controller, inside the portpool_report action plugin.
"""

from __future__ import annotations

from .portpool_report import FORMATS, SEVERITIES
from .portpool_report_render import build_report

# How many of the report's warnings reach the console; the rest are counted.
MAX_WARNINGS = 50


def report_argument_spec():
    return {
        "dest": {"type": "path", "required": True},
        "result_dirs": {"type": "list", "elements": "path", "required": True},
        "templates": {"type": "path", "required": True},
        "formats": {"type": "list", "elements": "str", "choices": list(FORMATS),
                    "default": list(FORMATS)},
        "fail_on": {"type": "str", "choices": list(SEVERITIES), "default": "high"},
        "rules_file": {"type": "path"},
        "top_destinations": {"type": "int", "default": 20},
        "host_destinations": {"type": "int", "default": 5},
        "chart_hosts": {"type": "int", "default": 50},
        "console_hosts": {"type": "int", "default": 20},
        "title": {"type": "str", "default": "portpool fleet report"},
        "latest_link": {"type": "bool", "default": True},
        "private": {"type": "bool", "default": True},
    }


def validate(params):
    """Problems with the parameters that the argument spec cannot express."""
    problems = []
    for name in ("top_destinations", "host_destinations", "chart_hosts", "console_hosts"):
        if params[name] < 0:
            problems.append("%s must be 0 or more, got %d" % (name, params[name]))
    if not params["result_dirs"]:
        problems.append("result_dirs must name at least one folder")
    return problems


def render(params, check_mode):
    """Build every requested format; returns (result, console warnings).

    Raises ValueError for bad parameters and OSError when a file cannot be written.
    """
    problems = validate(params)
    if problems:
        raise ValueError("; ".join(problems))
    try:
        result = build_report(
            params["result_dirs"], params["dest"], params["templates"],
            formats=params["formats"], fail_on=params["fail_on"],
            top_destinations=params["top_destinations"],
            host_destinations=params["host_destinations"],
            chart_hosts=params["chart_hosts"], console_hosts=params["console_hosts"],
            title=params["title"], rules_file=params["rules_file"],
            latest_link=params["latest_link"], check_mode=check_mode,
            private=params["private"])
    except (OSError, ValueError) as exc:
        raise OSError("could not write the report into %s: %s" % (params["dest"], exc)) from exc
    result.pop("stats")
    warnings = result.pop("warnings")
    shown = warnings[:MAX_WARNINGS]
    if len(warnings) > MAX_WARNINGS:
        shown.append("%d more warning(s) in the report" % (len(warnings) - MAX_WARNINGS))
    result["changed"] = not check_mode
    return result, shown
