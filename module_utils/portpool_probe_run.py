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
import resource

from .portpool_netns_inspect import run_inside
from .portpool_probe_model import (
    COPIED_KEYS,
    DEFAULT_CHURN_SECONDS,
    DEFAULT_TIMEOUT,
    build_result,
    check_options,
    configuration_key,
    host_settings,
    make_plan,
    on_record_result,
)
from .portpool_probe_partition import parse_refusals
from .portpool_sysctl import read_sysctl
from .portpool_version import VERSION


def probe_argument_spec(on_record=True):
    """The probe's options; a verification after a change (`on_record=False`) always
    measures, so it has no `on_record`."""
    spec = {
        "mode": {"type": "str", "default": "lab", "choices": ["lab", "host"]},
        "scope": {"type": "str", "default": "quick", "choices": ["quick", "full"]},
        "sample_ports": {"type": "int"},
        "churn_seconds": {"type": "float", "default": DEFAULT_CHURN_SECONDS},
        "timeout": {"type": "int", "default": DEFAULT_TIMEOUT},
        "max_connections": {"type": "int"},
        "destination": {"type": "str"},
        "namespace": {"type": "str"},
    }
    if on_record:
        spec["on_record"] = {"type": "list", "elements": "str"}
    return spec


def namespace_path(name):
    """The file of a network namespace: an `ip netns` name, or a path as given."""
    if "/" in name:
        return name
    if name in (".", "..") or not name.isprintable():
        raise ValueError("bad network namespace name %r" % name)
    return os.path.join("/run/netns", name)


def read_host_values(root="/proc/sys"):
    """The host's texts of the sysctls the lab copies (None when absent)."""
    return {key: read_sysctl(key, root) for key in COPIED_KEYS}


def machine_identity():
    """The kernel (release, build, architecture), root or not, and the descriptor
    limits: what, with the settings and options, a lab measurement depends on."""
    uname = os.uname()
    return {"kernel": [uname.release, uname.version, uname.machine],
            "root": os.geteuid() == 0,
            "fd_limits": list(resource.getrlimit(resource.RLIMIT_NOFILE))}


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
    """Check the options, then run the probe unless check mode forbids it.

    With `namespace`, the lab copies that network namespace's values (a container's,
    which start from the kernel's defaults) instead of the host's.
    """
    namespace = params.get("namespace")
    if namespace and params["mode"] == "host":
        return Outcome(error="namespace: mode=host holds the host's own ports; a "
                             "namespace's pool is measured in the lab (mode=lab)")
    try:
        if namespace:
            path = namespace_path(namespace)
            values = run_inside(path, read_host_values)
        else:
            values = read_host_values()
    except (OSError, ValueError) as exc:
        where = "namespace %s" % namespace if namespace else "/proc/sys"
        return Outcome(error="cannot read the settings of %s: %s" % (where, exc))
    plan, error = prepare(params, values, os.geteuid() == 0)
    if error:
        return Outcome(error=error)
    if check_mode and params["mode"] == "host":
        return Outcome(skipped="mode=host holds the host's own ports; nothing measured in"
                               " check mode")
    key = configuration_key(plan, machine_identity(), VERSION)
    settings_from = "namespace %s" % path if namespace else "host"
    if key is not None and key in (params.get("on_record") or ()):
        return Outcome(probe=dict(on_record_result(plan, key), settings_from=settings_from))
    # Loaded only to measure: a host on record skips compiling it, and every
    # payload import is compiled afresh on each run (AnsiballZ runs from a zip).
    from .portpool_probe_engine import ProbeError, Terminated, run_probe  # noqa: PLC0415

    try:
        raw = run_probe(plan)
    except (ProbeError, Terminated) as exc:
        return Outcome(error=str(exc))
    except Exception as exc:  # run_probe has already reaped its children
        return Outcome(error="the probe failed: %s: %s" % (type(exc).__name__, exc))
    probe = build_result(plan, raw)
    probe["settings_from"] = settings_from
    probe["key"] = key
    return Outcome(probe=probe)
