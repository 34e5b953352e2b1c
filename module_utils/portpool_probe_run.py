# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the probe from a module: its options, the host's settings, one measurement.

Shared by the portpool_probe module and by portpool_facts' `probe` option, so a
caller that wants facts and a probe (the audit) pays one module round trip per
host instead of two.
"""

from __future__ import annotations

import os

from ansible.module_utils.portpool_probe_engine import ProbeError, Terminated, run_probe
from ansible.module_utils.portpool_probe_model import (
    COPIED_KEYS,
    DEFAULT_CHURN_SECONDS,
    DEFAULT_TIMEOUT,
    build_result,
    check_options,
    host_settings,
    make_plan,
)
from ansible.module_utils.portpool_probe_partition import parse_refusals
from ansible.module_utils.portpool_sysctl import read_sysctl


def probe_argument_spec():
    return {
        "mode": {"type": "str", "default": "lab", "choices": ["lab", "host"]},
        "scope": {"type": "str", "default": "quick", "choices": ["quick", "full"]},
        "sample_ports": {"type": "int"},
        "churn_seconds": {"type": "float", "default": DEFAULT_CHURN_SECONDS},
        "timeout": {"type": "int", "default": DEFAULT_TIMEOUT},
        "max_connections": {"type": "int"},
        "destination": {"type": "str"},
    }


def read_host_values(root="/proc/sys"):
    """The host's texts of the sysctls the lab copies (None when absent)."""
    return {key: read_sysctl(key, root) for key in COPIED_KEYS}


def prepare(params, values, is_root):
    """Validate options and decide the plan; returns (plan, error message)."""
    errors = check_options(params)
    if errors:
        return None, "; ".join(errors)
    try:
        settings = host_settings(values)
    except ValueError as exc:
        return None, "cannot read the host's settings: %s" % exc
    refusals, error = parse_refusals(os.environ.get("PORTPOOL_PROBE_REFUSE"))
    if error:
        return None, error
    plan, error = make_plan(params, settings, is_root)
    if plan is not None:
        plan["refusals"] = sorted(refusals)
    return plan, error


class Outcome:
    """What one probe call gave: `probe` (the documented dict), or `error`, or
    `skipped` (why nothing was measured)."""

    def __init__(self, probe=None, error=None, skipped=None):
        self.probe, self.error, self.skipped = probe, error, skipped


def measure(params, check_mode):
    """Check the options, then run the probe unless check mode forbids it."""
    try:
        values = read_host_values()
    except OSError as exc:
        return Outcome(error="cannot read /proc/sys: %s" % exc)
    plan, error = prepare(params, values, os.geteuid() == 0)
    if error:
        return Outcome(error=error)
    if check_mode and params["mode"] == "host":
        return Outcome(skipped="mode=host holds the host's own ports; nothing measured in"
                               " check mode")
    try:
        raw = run_probe(plan)
    except (ProbeError, Terminated) as exc:
        return Outcome(error=str(exc))
    except Exception as exc:  # run_probe has already reaped its children
        return Outcome(error="the probe failed: %s: %s" % (type(exc).__name__, exc))
    return Outcome(probe=build_result(plan, raw))
