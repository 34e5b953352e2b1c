# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portpool audit rules: pure functions from facts, probe and policy to findings.

Every rule has a stable id (PP001...), a default severity, a one-line title and a
description (the catalogue, written to rules.json and docs/rules.md). A host rule
takes a HostContext and returns findings; the fleet rule (drift, PP015) takes every
host's context at once. Nothing here touches the system: the portpool_audit action
feeds it what portpool_facts and portpool_probe returned and writes the results.

The facts are read through small accessors (sysctl_value, persisted_entry, ...) so a
change in the facts module's layout is one edit here, not one per rule.
"""

from __future__ import annotations

import fnmatch
import math

from ansible.module_utils.portpool_sysctl import (
    format_reserved_ports,
    merge_spans,
    normalise_value,
    parse_port_range,
    parse_reserved_ports,
    reserved_in_range,
    same_parity,
)

SCHEMA = 1
SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
STATUSES = ("ok", "unreachable", "failed")
RULE_IDS_ALL = tuple("PP%03d" % number for number in range(1, 18))

# TCP_TIMEWAIT_LEN (include/net/tcp.h) and the tcp_fin_timeout default: both 60 s.
TIME_WAIT_SECONDS = 60
FIN_TIMEOUT_DEFAULT = 60
# IANA system ("well-known") ports end at 1023.
WELL_KNOWN_END = 1023
# The kernel's default range since 4.2.
DEFAULT_RANGE = (32768, 60999)

# Short names of the sysctls portpool reads, and the dotted names they stand for.
DOTTED = {
    "ip_local_port_range": "net.ipv4.ip_local_port_range",
    "ip_local_reserved_ports": "net.ipv4.ip_local_reserved_ports",
    "ip_unprivileged_port_start": "net.ipv4.ip_unprivileged_port_start",
    "tcp_tw_reuse": "net.ipv4.tcp_tw_reuse",
    "tcp_tw_reuse_delay": "net.ipv4.tcp_tw_reuse_delay",
    "tcp_timestamps": "net.ipv4.tcp_timestamps",
    "tcp_max_tw_buckets": "net.ipv4.tcp_max_tw_buckets",
    "tcp_fin_timeout": "net.ipv4.tcp_fin_timeout",
    "tcp_tw_recycle": "net.ipv4.tcp_tw_recycle",
    "somaxconn": "net.core.somaxconn",
    "nr_open": "fs.nr_open",
    "file_max": "fs.file-max",
}

DEFAULT_DRIFT_KEYS = (
    "ip_local_port_range",
    "ip_local_reserved_ports",
    "ip_unprivileged_port_start",
    "tcp_tw_reuse",
    "tcp_timestamps",
    "tcp_max_tw_buckets",
    "tcp_fin_timeout",
)

DEFAULT_POLICY = {
    "min_usable_ports": 16384,
    "pool_headroom": 2.0,
    "destination_warn": 0.5,
    "destination_high": 0.8,
    "service_ports": [],
    "min_tw_buckets": None,
    "processes": [],
    "bind_zero_programs": [],
    "desired": {},
    "drift_keys": list(DEFAULT_DRIFT_KEYS),
    "drift_min_hosts": 3,
    "severity": {},
    "waivers": [],
    "fail_on": "high",
}


# --------------------------------------------------------------------------- names

def short_name(key):
    """`net.ipv4.tcp_tw_reuse` -> `tcp_tw_reuse`; short names pass through."""
    key = str(key)
    for short, dotted in DOTTED.items():
        if key in (short, dotted):
            return short
    return key.rsplit(".", 1)[-1].replace("-", "_")


def dotted_name(key):
    """`tcp_tw_reuse` -> `net.ipv4.tcp_tw_reuse`; unknown names pass through."""
    return DOTTED.get(short_name(key), str(key))


def proc_path(key):
    """Where the runtime value lives: `/proc/sys/net/ipv4/tcp_tw_reuse`."""
    return "/proc/sys/" + dotted_name(key).replace(".", "/")


def as_text(key, value):
    """A sysctl value as the kernel prints it (whitespace-normalised), or None.

    Typed values from the facts ([low, high], [[low, high], ...], 1) and text from a
    sysctl.d file ("32768\t60999", "8080,9000-9010") give the same text.
    """
    if value is None:
        return None
    name = short_name(key)
    if name == "ip_local_reserved_ports":
        if isinstance(value, (list, tuple)):
            return format_reserved_ports(_spans(value))
        try:
            return format_reserved_ports(parse_reserved_ports(value))
        except ValueError:
            return normalise_value(value)
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return normalise_value(value)


def _spans(value):
    spans = []
    for item in value or []:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            spans.append([int(item[0]), int(item[1])])
        elif isinstance(item, int):
            spans.append([item, item])
    return merge_spans(spans)


def _int(value):
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(normalise_value(value))
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- facts

class HostContext:
    """One host's input to the rules: facts, probe, policy, groups, status."""

    def __init__(self, host, facts=None, probe=None, *, policy=None, groups=(),
                 status="ok", error=None):
        self.host = host
        self.facts = facts or {}
        self.probe = probe or {}
        self.policy = merged_policy(policy)
        self.groups = [group for group in groups if group not in ("all", "ungrouped")]
        self.status = status
        self.error = error

    # Runtime sysctls ---------------------------------------------------------
    def sysctl(self, key):
        """The runtime value from the facts (typed), or None when absent."""
        table = self.facts.get("sysctl") or {}
        for name in (short_name(key), dotted_name(key)):
            if name in table:
                return table[name]
        return None

    def sysctl_int(self, key):
        return _int(self.sysctl(key))

    def sysctl_text(self, key):
        return as_text(key, self.sysctl(key))

    def port_range(self):
        """(low, high) of the runtime range, or None."""
        value = self.sysctl("ip_local_port_range")
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return int(value[0]), int(value[1])
        if isinstance(value, str):
            try:
                return parse_port_range(value)
            except ValueError:
                return None
        eph = self.facts.get("ephemeral") or {}
        if eph.get("low") is not None and eph.get("high") is not None:
            return int(eph["low"]), int(eph["high"])
        return None

    def reserved(self):
        """Merged reserved spans [[low, high], ...]."""
        value = self.sysctl("ip_local_reserved_ports")
        if isinstance(value, str):
            try:
                return parse_reserved_ports(value)
            except ValueError:
                return []
        return _spans(value)

    def usable(self):
        """Ports anonymous connect() can use for one destination, or None."""
        eph = self.facts.get("ephemeral") or {}
        if eph.get("usable") is not None:
            return int(eph["usable"])
        rng = self.port_range()
        if rng is None:
            return None
        low, high = rng
        return high - low + 1 - reserved_in_range(self.reserved(), low, high)

    # Persisted sysctls -------------------------------------------------------
    def persisted_entry(self, key):
        """What wins at boot for a key: {"value", "file", "others": [{"file", "value"}]}.

        None when no file sets it.
        """
        persisted = self.facts.get("persisted") or {}
        tables = [persisted]
        for nested in ("keys", "settings", "values"):
            if isinstance(persisted.get(nested), dict):
                tables.insert(0, persisted[nested])
        for table in tables:
            for name in (dotted_name(key), short_name(key)):
                entry = table.get(name)
                if isinstance(entry, dict) and ("file" in entry or "value" in entry):
                    return _persisted(entry)
        return None

    def persisted_keys(self):
        """Dotted names of every key some persisted file sets."""
        persisted = self.facts.get("persisted") or {}
        names = set()
        for nested in ("keys", "settings", "values"):
            if isinstance(persisted.get(nested), dict):
                names.update(persisted[nested])
        for name, entry in persisted.items():
            if isinstance(entry, dict) and ("file" in entry or "value" in entry):
                names.add(name)
        return sorted({dotted_name(name) for name in names})

    def persisted_drift(self):
        """Dotted names of keys whose runtime value differs from the boot winner."""
        drift = (self.facts.get("persisted") or {}).get("drift") or []
        if isinstance(drift, dict):
            drift = list(drift)
        names = []
        for item in drift:
            name = item.get("key") or item.get("name") if isinstance(item, dict) else item
            if name:
                names.append(dotted_name(name))
        return sorted(set(names))

    def origin(self, key):
        """Evidence for a value: runtime path and value, and the boot winner."""
        text = "%s = %s (runtime, %s)" % (
            dotted_name(key), _show(self.sysctl_text(key)), proc_path(key))
        entry = self.persisted_entry(key)
        if entry and entry.get("file"):
            text += "; at boot %s from %s" % (_show(as_text(key, entry["value"])),
                                                entry["file"])
        else:
            text += "; no sysctl file sets it"
        return text

    def persist_hint(self, key):
        """Where a fix should be persisted: the winning file, or a new drop-in."""
        entry = self.persisted_entry(key)
        if entry and entry.get("file"):
            return "in %s (the file that wins at boot)" % entry["file"]
        return "in /etc/sysctl.d/60-portpool.conf"

    # Sockets, destinations, listeners, limits ---------------------------------
    def sockets(self):
        return self.facts.get("sockets") or {}

    def tw_overflow(self):
        sockets = self.sockets()
        for name in ("TCPTimeWaitOverflow", "tcp_time_wait_overflow", "tw_overflow",
                     "time_wait_overflow"):
            if sockets.get(name) is not None:
                return _int(sockets[name])
        return None

    def destinations(self):
        value = self.facts.get("destinations") or []
        if isinstance(value, dict):
            for name in ("top", "items", "list"):
                if isinstance(value.get(name), list):
                    return value[name]
            return []
        return value

    def listeners(self):
        value = self.facts.get("listeners_in_range") or []
        if isinstance(value, dict):
            value = value.get("items") or value.get("listeners") or []
        return value

    def processes(self):
        """[{"name", "pid", "open_fds", "max_open_files"}] from facts limits."""
        limits = self.facts.get("limits") or {}
        items = limits.get("processes") or []
        if isinstance(items, dict):
            items = [dict(value, name=value.get("name", name)) if isinstance(value, dict)
                     else {"name": name} for name, value in items.items()]
        out = []
        for item in items:
            if not isinstance(item, dict):
                continue
            soft = _first(item, ("max_open_files", "nofile_soft", "soft", "limit"))
            if isinstance(soft, dict):
                soft = _first(soft, ("soft", "Soft Limit"))
            if isinstance(soft, (list, tuple)) and soft:
                soft = soft[0]
            out.append({
                "name": item.get("name") or item.get("unit") or item.get("process"),
                "pid": item.get("pid"),
                "open_fds": _int(_first(item, ("open_fds", "open", "fds", "open_files"))),
                "max_open_files": None if soft in (None, "unlimited") else _int(soft),
            })
        return out


def _first(mapping, names):
    for name in names:
        if mapping.get(name) is not None:
            return mapping[name]
    return None


def _persisted(entry):
    others = entry.get("others")
    if others is None:
        others = entry.get("also") or entry.get("overridden") or []
    cleaned = []
    for item in others:
        if isinstance(item, dict):
            cleaned.append({"file": item.get("file"), "value": item.get("value")})
        else:
            cleaned.append({"file": str(item), "value": None})
    return {"value": entry.get("value"), "file": entry.get("file"), "others": cleaned}


def _show(value):
    return "(absent)" if value is None else '"%s"' % value if " " in str(value) else str(value)


def merged_policy(policy):
    merged = dict(DEFAULT_POLICY)
    for key, value in (policy or {}).items():
        if value is not None or key == "min_tw_buckets":
            merged[key] = value
    return merged


# Role variables (roles/portpool_audit) and the policy keys they set.
POLICY_VARS = {
    "portpool_audit_min_usable_ports": ("min_usable_ports", int),
    "portpool_audit_pool_headroom": ("pool_headroom", float),
    "portpool_audit_destination_warn": ("destination_warn", float),
    "portpool_audit_destination_high": ("destination_high", float),
    "portpool_audit_service_ports": ("service_ports", list),
    "portpool_audit_min_tw_buckets": ("min_tw_buckets", int),
    "portpool_audit_processes": ("processes", list),
    "portpool_audit_bind_zero_programs": ("bind_zero_programs", list),
    "portpool_audit_desired": ("desired", dict),
    "portpool_audit_drift_keys": ("drift_keys", list),
    "portpool_audit_drift_min_hosts": ("drift_min_hosts", int),
    "portpool_audit_severity": ("severity", dict),
    "portpool_audit_waivers": ("waivers", list),
    "portpool_preflight_fail_on": ("fail_on", str),
}


# Role variables that are task options, not policy, with the bounds the argument
# spec cannot express: (converter, test, rule).
OPTION_BOUNDS = {
    "portpool_audit_probe_sample_ports": (int, lambda value: value >= 2, ">= 2"),
    "portpool_audit_probe_churn_seconds": (float, lambda value: value >= 0, ">= 0"),
    "portpool_audit_destinations_top": (int, lambda value: value >= 1, ">= 1"),
}


def policy_from_vars(variables, host="this host"):
    """Turn the role's variables into a policy dict; ValueError names every bad variable."""
    policy, problems = _read_policy(variables, host)
    if problems:
        raise ValueError("; ".join(problems))
    return policy


def policy_problems(variables, host="this host"):
    """Every reason the role's variables are not a valid policy for host; [] when they are.

    Covers what meta/argument_specs.yml cannot say: thresholds against each other,
    rule ids in waivers and severities, and the bounds of the probe's options.
    """
    problems = _read_policy(variables, host)[1]
    for name, (kind, good, rule) in OPTION_BOUNDS.items():
        if name not in (variables or {}):
            continue
        try:
            ok = good(kind(variables[name]))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append("%s of %s must be %s" % (name, host, rule))
    return problems


def _read_policy(variables, host):
    policy, problems = {}, []
    for name, (key, kind) in POLICY_VARS.items():
        if name not in (variables or {}):
            continue
        value = variables[name]
        if value is None or (kind is str and value == ""):
            policy[key] = None
            continue
        try:
            if kind in (int, float):
                value = kind(value)
            elif not isinstance(value, kind):
                raise TypeError("expected a %s" % kind.__name__)
        except (TypeError, ValueError) as exc:
            problems.append("%s of %s: %r is not valid (%s)" % (name, host, value, exc))
            continue
        policy[key] = value
    if problems:
        return policy, problems
    merged = merged_policy(policy)
    checks = (
        ("portpool_audit_min_usable_ports", merged["min_usable_ports"] >= 1, ">= 1"),
        ("portpool_audit_pool_headroom", merged["pool_headroom"] >= 1, ">= 1"),
        ("portpool_audit_destination_warn",
         0 < merged["destination_warn"] <= merged["destination_high"] <= 1,
         "in (0, 1] and not above portpool_audit_destination_high"),
        ("portpool_audit_destination_high", merged["destination_high"] <= 1, "<= 1"),
        ("portpool_audit_drift_min_hosts", merged["drift_min_hosts"] >= 2, ">= 2"),
        ("portpool_preflight_fail_on", merged["fail_on"] in SEVERITIES,
         "one of %s" % ", ".join(SEVERITIES)),
    )
    for name, good, rule in checks:
        if not good:
            problems.append("%s of %s must be %s" % (name, host, rule))
    for item in merged["waivers"]:
        if not isinstance(item, dict) or item.get("rule") not in (*RULE_IDS_ALL, "*"):
            problems.append("portpool_audit_waivers of %s: %r needs a rule id "
                            "(PP001...) or *" % (host, item))
    for rule_id, severity in (merged["severity"] or {}).items():
        if rule_id not in RULE_IDS_ALL or severity not in SEVERITIES:
            problems.append("portpool_audit_severity of %s: %s: %s is not a rule id and "
                            "severity" % (host, rule_id, severity))
    return policy, problems


# --------------------------------------------------------------------------- helpers

def suggest_range(needed, reserved=(), floor=1024, high=DEFAULT_RANGE[1]):
    """A range with at least `needed` usable ports, ends of different parity.

    Keeps the high end (at least the kernel default's 60999, at most 65535) and
    moves the low end down, never below `floor` (ip_unprivileged_port_start or
    1024). Returns (low, high, usable).
    """
    high = min(max(int(high), DEFAULT_RANGE[1]), 65535)
    floor = max(int(floor), 1)
    low = min(max(high - needed + 1, floor), DEFAULT_RANGE[0])
    while low > floor and high - low + 1 - reserved_in_range(reserved, low, high) < needed:
        low -= 1
    if same_parity(low, high):
        low = low - 1 if low - 1 >= floor else low + 1
    return low, high, high - low + 1 - reserved_in_range(reserved, low, high)


def fix_parity(low, high, floor=1024):
    """The nearest range whose ends differ in parity (low even, high odd preferred)."""
    if not same_parity(low, high):
        return low, high
    if low % 2 == 0:
        return (low, high + 1) if high < 65535 else (low, high - 1)
    return (low - 1, high) if low - 1 >= floor else (low + 1, high)


def ports_in_range(ports, low, high, reserved=()):
    """Ports (ints) inside [low, high] that no reserved span covers."""
    out = []
    for port in sorted({int(port) for port in ports}):
        if low <= port <= high and not reserved_in_range(reserved, port, port):
            out.append(port)
    return out


def reserve_value(reserved, ports):
    """ip_local_reserved_ports text with `ports` added."""
    return format_reserved_ports(list(reserved) + [[port, port] for port in ports])


# --------------------------------------------------------------------------- rules

class Rule:
    def __init__(self, rule_id, severity, title, description, check, *, fleet=False):
        self.id = rule_id
        self.severity = severity
        self.title = title
        self.description = description
        self.check = check
        self.fleet = fleet

    def catalogue(self):
        return {"id": self.id, "severity": self.severity, "title": self.title,
                "description": self.description}


def _hit(message, recommendation, severity=None):
    return {"message": message, "recommendation": recommendation, "severity": severity}


def check_pool_size(ctx):
    """PP001: usable pool below the policy's minimum or the measured pressure."""
    rng, usable = ctx.port_range(), ctx.usable()
    if rng is None or usable is None:
        return []
    low, high = rng
    minimum = int(ctx.policy["min_usable_ports"])
    headroom = float(ctx.policy["pool_headroom"])
    busiest = max((_int(dest.get("total")) or 0 for dest in ctx.destinations()), default=0)
    needed_pressure = math.ceil(busiest * headroom)
    where = "ip_local_port_range %d-%d (%s), %d reserved inside" % (
        low, high, proc_path("ip_local_port_range"), (high - low + 1) - usable)
    reasons = []
    if usable < minimum:
        reasons.append("below the policy minimum of %d" % minimum)
    if busiest and usable < needed_pressure:
        reasons.append("below %d, the busiest destination's %d sockets x headroom %g"
                       % (needed_pressure, busiest, headroom))
    if not reasons:
        return []
    needed = max(minimum, needed_pressure)
    floor = max(ctx.sysctl_int("ip_unprivileged_port_start") or 1024, 1024)
    new_low, new_high, new_usable = suggest_range(needed, ctx.reserved(), floor, high)
    message = "Usable per-destination pool is %d ports: %s. Source: %s." % (
        usable, " and ".join(reasons), where)
    if new_usable < needed:
        recommendation = (
            "Even net.ipv4.ip_local_port_range = \"%d %d\" gives only %d usable ports: "
            "spread the load over more destination addresses or source addresses, and "
            "set that range %s." % (new_low, new_high, new_usable,
                                    ctx.persist_hint("ip_local_port_range")))
    else:
        recommendation = (
            "Set net.ipv4.ip_local_port_range = \"%d %d\" (%d usable ports) %s."
            % (new_low, new_high, new_usable, ctx.persist_hint("ip_local_port_range")))
    return [_hit(message, recommendation)]


def check_parity(ctx):
    """PP002: both range ends have the same parity."""
    rng = ctx.port_range()
    if rng is None or not same_parity(*rng):
        return []
    low, high = rng
    floor = max(ctx.sysctl_int("ip_unprivileged_port_start") or 1024, 1)
    new_low, new_high = fix_parity(low, high, floor)
    parity = "even" if low % 2 == 0 else "odd"
    return [_hit(
        "ip_local_port_range %d %d: both ends are %s (%s). connect() walks the even "
        "ports first, then the odd ones, over a window rounded down to an even size, so "
        "it may never hand out port %d; the kernel warns \"prefer different parity "
        "for start/end values\"." % (low, high, parity, ctx.origin("ip_local_port_range"),
                                     low),
        "Set net.ipv4.ip_local_port_range = \"%d %d\" %s." % (
            new_low, new_high, ctx.persist_hint("ip_local_port_range")))]


def check_privileged_overlap(ctx):
    """PP003: range below ip_unprivileged_port_start, or over well-known/service ports."""
    hits = []
    unpriv = ctx.sysctl_int("ip_unprivileged_port_start")
    floor = max(unpriv if unpriv is not None else 1024, 1024)
    reserved = ctx.reserved()
    candidates = []
    rng = ctx.port_range()
    if rng is not None:
        candidates.append(("runtime", rng, ctx.origin("ip_local_port_range")))
    entry = ctx.persisted_entry("ip_local_port_range")
    if entry and entry.get("value") is not None:
        try:
            boot = parse_port_range(as_text("ip_local_port_range", entry["value"]))
        except ValueError:
            boot = None
        if boot is not None and boot != rng:
            candidates.append(("boot", boot, "from %s" % entry.get("file")))
    for when, (low, high), source in candidates:
        if unpriv is not None and low < unpriv:
            hits.append(_hit(
                "The %s ip_local_port_range %d %d starts below "
                "ip_unprivileged_port_start %d (%s); the kernel rejects this pair with "
                "EINVAL, so %s." % (
                    when, low, high, unpriv, source,
                    "the boot value will not be applied" if when == "boot"
                    else "one of them was changed behind the kernel's check"),
                "Set net.ipv4.ip_local_port_range = \"%d %d\" %s." % (
                    *fix_parity(max(low, floor), high, floor),
                    ctx.persist_hint("ip_local_port_range")),
                "high"))
        elif low <= WELL_KNOWN_END:
            hits.append(_hit(
                "The %s ip_local_port_range %d %d overlaps the well-known ports "
                "(0-1023) that system services listen on (%s)." % (when, low, high, source),
                "Set net.ipv4.ip_local_port_range = \"%d %d\" %s." % (
                    *fix_parity(floor, high, floor), ctx.persist_hint("ip_local_port_range")),
                "medium"))
        if when == "runtime":
            ports = ports_in_range(ctx.policy.get("service_ports") or [], low, high, reserved)
            if ports:
                hits.append(_hit(
                    "Service ports %s named in the policy lie inside ip_local_port_range "
                    "%d %d and are not reserved (%s); an outgoing connection can take "
                    "them before the service binds." % (
                        ", ".join(map(str, ports)), low, high,
                        ctx.origin("ip_local_reserved_ports")),
                    "Set net.ipv4.ip_local_reserved_ports = \"%s\" %s." % (
                        reserve_value(reserved, ports),
                        ctx.persist_hint("ip_local_reserved_ports")),
                    "medium"))
    return hits


def check_listener_in_range(ctx):
    """PP004: a listening socket's port inside the range and not reserved."""
    rng = ctx.port_range()
    reserved = ctx.reserved()
    ports = {}
    for item in ctx.listeners():
        if not isinstance(item, dict) or item.get("port") is None:
            continue
        if item.get("reserved"):
            continue
        port = int(item["port"])
        if rng is not None and not rng[0] <= port <= rng[1]:
            continue
        label = item.get("process") or item.get("address") or ""
        ports.setdefault(port, set()).add(str(label) if label else "")
    if not ports:
        return []
    shown = []
    for port in sorted(ports):
        labels = sorted(label for label in ports[port] if label)
        shown.append("%d%s" % (port, " (%s)" % ", ".join(labels) if labels else ""))
    range_text = "%d %d" % rng if rng else "(unknown)"
    return [_hit(
        "Listening on %s inside ip_local_port_range %s, not in ip_local_reserved_ports "
        "(%s): after a restart an outgoing connection may hold the port and the "
        "service fails to bind." % (", ".join(shown), range_text,
                                     ctx.origin("ip_local_reserved_ports")),
        "Set net.ipv4.ip_local_reserved_ports = \"%s\" %s." % (
            reserve_value(reserved, sorted(ports)),
            ctx.persist_hint("ip_local_reserved_ports")))]


def check_reuse_without_timestamps(ctx):
    """PP005: tcp_tw_reuse on while tcp_timestamps is 0."""
    reuse, stamps = ctx.sysctl_int("tcp_tw_reuse"), ctx.sysctl_int("tcp_timestamps")
    if reuse not in (1, 2) or stamps != 0:
        return []
    scope = ("every outgoing connection" if reuse == 1
             else "loopback connections (the default, 2)")
    evidence = ""
    remote = ((ctx.probe.get("churn") or {}).get("remote") or {})
    if remote.get("reuse_effective") is not None:
        evidence = " The probe's churn to a remote-like address: reuse_effective=%s." % (
            str(bool(remote["reuse_effective"])).lower())
    return [_hit(
        "tcp_tw_reuse = %d asks for TIME_WAIT reuse on %s, but reuse needs TCP "
        "timestamps and tcp_timestamps = 0, so it never happens (%s; %s).%s" % (
            reuse, scope, ctx.origin("tcp_tw_reuse"), ctx.origin("tcp_timestamps"), evidence),
        "Set net.ipv4.tcp_timestamps = 1 %s (or, if a baseline forbids timestamps, "
        "accept ~usable/60 new connections per second per destination)."
        % ctx.persist_hint("tcp_timestamps"),
        "medium" if reuse == 1 else "low")]


def check_tw_recycle(ctx):
    """PP006: tcp_tw_recycle present or set."""
    hits = []
    runtime = ctx.sysctl_int("tcp_tw_recycle")
    entry = ctx.persisted_entry("tcp_tw_recycle")
    if runtime == 1:
        hits.append(_hit(
            "tcp_tw_recycle = 1 (%s): it drops SYNs from clients behind NAT whose "
            "timestamps are not monotonic (removed from Linux in 4.12)."
            % ctx.origin("tcp_tw_recycle"),
            "Set net.ipv4.tcp_tw_recycle = 0 %s." % ctx.persist_hint("tcp_tw_recycle"),
            "high"))
    elif runtime == 0:
        hits.append(_hit(
            "The kernel still has tcp_tw_recycle (older than 4.12), currently 0 (%s)."
            % ctx.origin("tcp_tw_recycle"),
            "Keep net.ipv4.tcp_tw_recycle = 0 and plan a kernel of 4.12 or later.",
            "low"))
    elif entry and entry.get("file"):
        files = [entry["file"]] + [item["file"] for item in entry.get("others") or []]
        hits.append(_hit(
            "%s sets net.ipv4.tcp_tw_recycle = %s, a key this kernel no longer has "
            "(removed in 4.12): `sysctl -p` reports an error for it and stops "
            "being a reliable check." % (", ".join(files), as_text("tcp_tw_recycle",
                                                                 entry["value"])),
            "Delete the net.ipv4.tcp_tw_recycle line from %s." % ", ".join(files),
            "medium"))
    return hits


def check_tw_buckets(ctx):
    """PP007: tcp_max_tw_buckets lowered, or TCPTimeWaitOverflow above zero."""
    hits = []
    buckets = ctx.sysctl_int("tcp_max_tw_buckets")
    usable = ctx.usable()
    minimum = ctx.policy.get("min_tw_buckets")
    basis = "the policy minimum"
    if minimum is None:
        minimum, basis = usable, "the usable pool of one destination"
    overflow = ctx.tw_overflow()
    if buckets is not None and minimum is not None and buckets < int(minimum):
        hits.append(_hit(
            "tcp_max_tw_buckets = %d is below %s (%d) (%s). Beyond it closing "
            "sockets skip TIME_WAIT, and late segments of old connections can reach "
            "new ones; the kernel documentation says never to lower it."
            % (buckets, basis, int(minimum), ctx.origin("tcp_max_tw_buckets")),
            "Set net.ipv4.tcp_max_tw_buckets = %d (at least %d) %s, or remove the "
            "override to get the kernel default." % (
                max(int(minimum), 131072), int(minimum),
                ctx.persist_hint("tcp_max_tw_buckets"))))
    if overflow:
        hits.append(_hit(
            "TCPTimeWaitOverflow = %d in /proc/net/netstat: %d sockets skipped "
            "TIME_WAIT because tcp_max_tw_buckets (%s) was full." % (
                overflow, overflow, _show(ctx.sysctl_text("tcp_max_tw_buckets"))),
            "Raise net.ipv4.tcp_max_tw_buckets above the peak TIME_WAIT count (now %s) "
            "%s." % (ctx.sockets().get("time_wait", "unknown"),
                     ctx.persist_hint("tcp_max_tw_buckets"))))
    return hits


def check_fin_timeout(ctx):
    """PP008: tcp_fin_timeout changed as if it shortened TIME_WAIT."""
    value = ctx.sysctl_int("tcp_fin_timeout")
    if value is None or value == FIN_TIMEOUT_DEFAULT:
        return []
    return [_hit(
        "tcp_fin_timeout = %d (%s). It bounds orphaned FIN_WAIT_2 sockets only; "
        "TIME_WAIT stays %d s (TCP_TIMEWAIT_LEN, fixed at compile time), so this does "
        "not free ephemeral ports sooner." % (
            value, ctx.origin("tcp_fin_timeout"), TIME_WAIT_SECONDS),
        "Set net.ipv4.tcp_fin_timeout = %d %s unless FIN_WAIT_2 was the aim; for "
        "TIME_WAIT pressure widen net.ipv4.ip_local_port_range or use "
        "net.ipv4.tcp_tw_reuse = 1." % (FIN_TIMEOUT_DEFAULT, ctx.persist_hint("tcp_fin_timeout")))]


def check_destination_pressure(ctx):
    """PP009: one destination using a large share of its per-destination pool."""
    usable = ctx.usable()
    warn = float(ctx.policy["destination_warn"])
    high = float(ctx.policy["destination_high"])
    rng = ctx.port_range()
    hits = []
    for dest in ctx.destinations():
        total = _int(dest.get("total")) or 0
        util = dest.get("utilisation")
        if util is None:
            util = total / usable if usable else None
        if util is None or float(util) < warn:
            continue
        util = float(util)
        address = dest.get("address")
        target = ("[%s]:%s" if ":" in str(address) else "%s:%s") % (address, dest.get("port"))
        needed = math.ceil(total / warn) if warn > 0 else total
        floor = max(ctx.sysctl_int("ip_unprivileged_port_start") or 1024, 1024)
        new_low, new_high, new_usable = suggest_range(
            needed, ctx.reserved(), floor, rng[1] if rng else DEFAULT_RANGE[1])
        hits.append(_hit(
            "Destination %s holds %d of the %s usable local ports (%.0f%%): %s in "
            "TIME_WAIT, %s established (sockets whose local port is in the ephemeral "
            "range). Once it reaches 100%% connect() to it fails with EADDRNOTAVAIL." % (
                target, total, usable if usable is not None else "?", util * 100,
                dest.get("time_wait", "?"), dest.get("established", "?")),
            "Set net.ipv4.ip_local_port_range = \"%d %d\" (%d usable, keeps this "
            "destination under %.0f%%) %s, and/or spread the traffic over more "
            "destination addresses or keep connections alive (pooling)%s." % (
                new_low, new_high, new_usable, warn * 100,
                ctx.persist_hint("ip_local_port_range"),
                "" if ctx.sysctl_int("tcp_tw_reuse") == 1
                else "; net.ipv4.tcp_tw_reuse = 1 lets TIME_WAIT ports be reused"),
            "high" if util >= high else "medium"))
    return hits


def check_descriptor_limit(ctx):
    """PP010: a named service's descriptor limit below the pool it could need."""
    usable = ctx.usable()
    if not usable:
        return []
    low = {}
    for proc in ctx.processes():
        limit = proc.get("max_open_files")
        if limit is None or limit >= usable:
            continue
        name = proc.get("name") or "pid %s" % proc.get("pid")
        low.setdefault((name, limit), []).append(proc)
    hits = []
    for (name, limit), procs in sorted(low.items()):
        pids = ", ".join(str(proc.get("pid")) for proc in procs)
        opened = max((proc.get("open_fds") or 0) for proc in procs)
        hits.append(_hit(
            "%s (pid%s %s) may open %d descriptors (soft Max open files in "
            "/proc/PID/limits; at most %d open now) but one destination's pool is %d "
            "ports: it hits EMFILE before the pool runs out (the \"NR_OPEN\" limit)." % (
                name, "s" if len(procs) > 1 else "", pids, limit, opened, usable),
            "Raise the limit to at least %d: LimitNOFILE=%d in the [Service] section of "
            "%s's unit (systemctl edit), or its nofile entry in "
            "/etc/security/limits.d; fs.nr_open must be at least as high." % (
                usable + 1024, usable + 1024, name)))
    return hits


def check_persisted_drift(ctx):
    """PP011: runtime value differs from what wins at boot."""
    hits = []
    for key in ctx.persisted_drift():
        entry = ctx.persisted_entry(key) or {}
        boot = as_text(key, entry.get("value"))
        runtime = ctx.sysctl_text(key)
        hits.append(_hit(
            "%s is %s at runtime (%s) but %s wins at boot (%s): the next reboot or "
            "`sysctl --system` changes it." % (
                key, _show(runtime), proc_path(key), _show(boot), entry.get("file")),
            "Decide which is right: either set %s = %s in %s, or apply the file's "
            "value now with `sysctl -w %s=%s`." % (
                key, _show(runtime), entry.get("file") or "/etc/sysctl.d/60-portpool.conf",
                key, _show(boot))))
    return hits


def check_persisted_duplicates(ctx):
    """PP012: several persisted files set the same key."""
    hits = []
    for key in ctx.persisted_keys():
        entry = ctx.persisted_entry(key) or {}
        others = entry.get("others") or []
        if not others:
            continue
        winner = as_text(key, entry.get("value"))
        listing = "; ".join("%s sets %s" % (item["file"], _show(as_text(key, item["value"])))
                            for item in others)
        agree = all(as_text(key, item["value"]) == winner for item in others
                    if item["value"] is not None)
        hits.append(_hit(
            "%s is set in %d files: %s wins with %s; %s.%s" % (
                key, len(others) + 1, entry.get("file"), _show(winner), listing,
                "" if agree else " The values disagree, so the winner depends on "
                "file names and directory order."),
            "Keep %s = %s only in %s and delete it from %s." % (
                key, _show(winner), entry.get("file"),
                ", ".join(item["file"] for item in others))))
    return hits


def check_probe_count(ctx):
    """PP013: the probe's measured count differs from the expected count."""
    probe = ctx.probe
    hold = probe.get("hold") or {}
    if not probe or probe.get("matches_expected") is not False:
        return []
    measured = hold.get("measured_range") or probe.get("range")
    return [_hit(
        "The probe (%s mode, %s scope, measured range %s) established %s connections "
        "to one destination where %s were expected, stopped by %s. Something else "
        "holds ports in the range (explicit bind() users) or the reserved list is "
        "not what the settings say." % (
            probe.get("mode"), probe.get("scope"),
            "-".join(map(str, measured)) if measured else "?",
            hold.get("established"), hold.get("expected"), hold.get("stopped_by")),
        "Find programs that bind() inside the range (`ss -Htanp state all sport "
        "ge :%s`) and move them out of it or add their ports to "
        "net.ipv4.ip_local_reserved_ports; if stopped by EMFILE, raise the descriptor "
        "limit (LimitNOFILE)." % (probe.get("range") or ["?"])[0])]


def check_bind_zero(ctx):
    """PP014: programs named in the policy that bind(0) would starve."""
    programs = ctx.policy.get("bind_zero_programs") or []
    if not programs or not ctx.probe or ctx.probe.get("bind_zero_blocked") is not True:
        return []
    no_port = ctx.probe.get("bind_address_no_port_ok")
    return [_hit(
        "The probe exhausted one destination and bind(0) then failed with EADDRINUSE: "
        "%s bind before connect and would fail the same way while any single "
        "destination is busy%s." % (
            ", ".join(map(str, programs)),
            "; bind with IP_BIND_ADDRESS_NO_PORT then connect succeeded" if no_port else ""),
        "In %s set the socket option IP_BIND_ADDRESS_NO_PORT = 1 (IPPROTO_IP, 24) before "
        "bind(), or connect without bind(); otherwise keep net.ipv4.ip_local_port_range "
        "wide and no destination near its pool." % ", ".join(map(str, programs)))]


def check_desired(ctx):
    """PP016: a setting differs from the value the policy wants."""
    hits = []
    for key, want in sorted((ctx.policy.get("desired") or {}).items()):
        want_text = as_text(key, want)
        have = ctx.sysctl_text(key)
        if have == want_text:
            continue
        hits.append(_hit(
            "%s differs from the policy's desired %s (%s)." % (
                dotted_name(key), _show(want_text), ctx.origin(key)),
            "Set %s = %s %s." % (dotted_name(key), _show(want_text), ctx.persist_hint(key))))
    return hits


def check_not_audited(ctx):
    """PP017: the host could not be audited."""
    if ctx.status == "ok" and not ctx.error:
        return []
    if ctx.status == "unreachable":
        return [_hit(
            "Unreachable: %s" % (ctx.error or "no connection"),
            "Restore SSH access for this host (address, sshd, keys, ansible_user) and "
            "run the audit again; until then its pool is unknown.")]
    return [_hit(
        "The audit did not complete: %s" % (ctx.error or "unknown error"),
        "Fix the error above (often: become is needed for the probe in lab mode, or "
        "Python 3 is missing) and run the audit again.")]


def check_drift(contexts):
    """PP015: hosts whose settings differ from the majority of their inventory group."""
    members = {}
    for ctx in contexts:
        if ctx.status != "ok" or not ctx.facts:
            continue
        for group in ctx.groups:
            members.setdefault(group, []).append(ctx)
    hits = {}
    for group in sorted(members):
        hosts = members[group]
        for ctx in hosts:
            keys = ctx.policy.get("drift_keys") or []
            if len(hosts) < int(ctx.policy.get("drift_min_hosts") or 3):
                continue
            for key in keys:
                counts = {}
                for other in hosts:
                    value = other.sysctl_text(key)
                    counts[value] = counts.get(value, 0) + 1
                majority, votes = max(counts.items(), key=lambda item: item[1])
                if votes * 2 <= len(hosts) or majority is None:
                    continue
                mine = ctx.sysctl_text(key)
                if mine == majority:
                    continue
                hits.setdefault(ctx.host, []).append(_hit(
                    "%s = %s here (%s) but %s on %d of %d hosts in group %s." % (
                        dotted_name(key), _show(mine), proc_path(key), _show(majority),
                        votes, len(hosts), group),
                    "Set %s = %s %s to match group %s, or move this host to a group of "
                    "its own if the difference is intended." % (
                        dotted_name(key), _show(majority), ctx.persist_hint(key), group)))
    return hits


RULES = (
    Rule("PP001", "high", "Usable ephemeral pool too small",
         "The per-destination pool (ip_local_port_range minus ip_local_reserved_ports "
         "inside it) is below the policy minimum, or below the busiest destination's "
         "socket count times the headroom factor.", check_pool_size),
    Rule("PP002", "low", "Range ends share parity",
         "connect() tries even ports first and bind() prefers odd ones; with both ends "
         "of the same parity the kernel warns 'prefer different parity for start/end "
         "values'.", check_parity),
    Rule("PP003", "medium", "Range overlaps privileged or service ports",
         "The range starts below ip_unprivileged_port_start (the kernel rejects it), "
         "covers the well-known ports 0-1023, or covers service ports named in the "
         "policy that are not reserved.", check_privileged_overlap),
    Rule("PP004", "high", "Listening port inside the ephemeral range",
         "A service listens on a port inside ip_local_port_range that is not in "
         "ip_local_reserved_ports: after a restart an outgoing connection may hold it.",
         check_listener_in_range),
    Rule("PP005", "medium", "tcp_tw_reuse without tcp_timestamps",
         "TIME_WAIT reuse needs TCP timestamps; with tcp_timestamps = 0 the "
         "tcp_tw_reuse setting has no effect.", check_reuse_without_timestamps),
    Rule("PP006", "high", "tcp_tw_recycle present or set",
         "tcp_tw_recycle (removed in 4.12) drops connections from clients behind NAT; "
         "sysctl files that still set it make `sysctl -p` fail on newer kernels.",
         check_tw_recycle),
    Rule("PP007", "medium", "TIME_WAIT buckets lowered or overflowing",
         "tcp_max_tw_buckets below the usable pool (or the policy minimum), or "
         "TCPTimeWaitOverflow above zero: sockets skipped TIME_WAIT.", check_tw_buckets),
    Rule("PP008", "info", "tcp_fin_timeout does not shorten TIME_WAIT",
         "tcp_fin_timeout was changed from 60; it bounds orphaned FIN_WAIT_2 only, "
         "TIME_WAIT is a fixed 60 s.", check_fin_timeout),
    Rule("PP009", "medium", "Destination near its port pool",
         "One destination ip:port uses more than the warn share (default 50%, medium) "
         "or the high share (default 80%, high) of its per-destination pool.",
         check_destination_pressure),
    Rule("PP010", "medium", "Descriptor limit below the pool",
         "A service named in the policy has a Max open files limit below the usable "
         "pool: it runs out of descriptors before ports (the thread's NR_OPEN).",
         check_descriptor_limit),
    Rule("PP011", "medium", "Runtime differs from boot value",
         "The runtime value of a sysctl differs from the value that wins at boot "
         "(systemd-sysctl order): a reboot changes it.", check_persisted_drift),
    Rule("PP012", "low", "Key set in several sysctl files",
         "Several persisted files set the same key; only one wins, by file name and "
         "directory order.", check_persisted_duplicates),
    Rule("PP013", "medium", "Probe count differs from expected",
         "The probe established a different number of connections to one destination "
         "than the range minus reserved ports predicts.", check_probe_count),
    Rule("PP014", "high", "bind(0) programs would starve",
         "The probe shows bind(0) fails with EADDRINUSE while one destination is "
         "exhausted, and the policy names programs that bind before connect.",
         check_bind_zero),
    Rule("PP015", "low", "Drift from the group majority",
         "A host's setting differs from the value most hosts of its inventory group "
         "have.", check_drift, fleet=True),
    Rule("PP016", "medium", "Setting differs from policy",
         "A sysctl differs from the value the policy's desired settings name.",
         check_desired),
    Rule("PP017", "high", "Host not audited",
         "The host was unreachable or the audit failed on it: its pool is unknown.",
         check_not_audited),
)

RULES_BY_ID = {rule.id: rule for rule in RULES}
RULE_IDS = tuple(RULES_BY_ID)
assert RULE_IDS == RULE_IDS_ALL, "keep RULE_IDS_ALL in step with RULES"


def catalogue():
    """The rule catalogue: [{"id", "severity", "title", "description"}]."""
    return [rule.catalogue() for rule in RULES]


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


def make_finding(rule, ctx, hit):
    severity = (ctx.policy.get("severity") or {}).get(rule.id) or hit.get("severity") \
        or rule.severity
    waiver = waiver_for(rule.id, ctx.host, ctx.groups, ctx.policy.get("waivers"))
    return {
        "id": rule.id,
        "severity": severity,
        "title": rule.title,
        "host": ctx.host,
        "message": hit["message"],
        "recommendation": hit["recommendation"],
        "waived": waiver is not None,
    }


def evaluate_host(ctx):
    """Findings of every host rule for one host (unaudited hosts: only PP017)."""
    findings = []
    for rule in RULES:
        if rule.fleet:
            continue
        if ctx.status != "ok" and rule.id != "PP017" and not ctx.facts:
            continue
        for hit in rule.check(ctx):
            findings.append(make_finding(rule, ctx, hit))
    return sort_findings(findings)


def sort_findings(findings):
    """Worst first, then by rule id (stable for one rule's several findings)."""
    return sorted(findings, key=lambda item: (-SEVERITY_RANK[item["severity"]], item["id"]))


def evaluate(contexts):
    """Findings per host name for a list of HostContext, fleet rules included."""
    result = {ctx.host: evaluate_host(ctx) for ctx in contexts}
    by_name = {ctx.host: ctx for ctx in contexts}
    for rule in RULES:
        if not rule.fleet:
            continue
        for host, hits in rule.check(contexts).items():
            ctx = by_name[host]
            result[host].extend(make_finding(rule, ctx, hit) for hit in hits)
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

def _error_text(result):
    msg = result.get("msg") or result.get("stderr") or result.get("module_stderr")
    if not msg and result.get("exception"):
        msg = str(result["exception"]).strip().splitlines()[-1]
    return " ".join(str(msg or "failed").split())[:2000]


def context_from_results(host, groups, facts_result, probe_result, policy):
    """Build a HostContext from the registered task results of one host.

    `facts_result`/`probe_result` are what `register:` captured (or None when the
    task never ran); the probe comes from the facts result when portpool_facts
    ran it (its `probe` option). Status: unreachable when either was
    unreachable, failed when either failed or the facts are missing, ok otherwise.
    """
    facts_result = facts_result or {}
    probe_result = probe_result or {}
    status, error = "ok", None
    facts = ((facts_result.get("ansible_facts") or {}).get("portpool")
             or facts_result.get("portpool"))
    probe = probe_result.get("probe") or facts_result.get("probe")
    for step, result in (("portpool_facts", facts_result), ("portpool_probe", probe_result)):
        if result.get("unreachable"):
            status, error = "unreachable", _error_text(result)
            break
        if result.get("failed"):
            status, error = "failed", "%s: %s" % (step, _error_text(result))
            break
    if status == "ok" and not facts:
        status, error = "failed", "portpool_facts returned no facts"
    if status != "ok":
        facts = facts or None
    return HostContext(host, facts=facts, probe=probe, policy=policy, groups=groups,
                       status=status, error=error)


def host_document(ctx, findings, audited_at, groups=None):
    """The per-host result file's content (schema 1)."""
    return {
        "schema": SCHEMA,
        "host": ctx.host,
        "status": ctx.status,
        "error": ctx.error,
        "audited_at": audited_at,
        "groups": list(groups if groups is not None else ctx.groups),
        "facts": ctx.facts or None,
        "probe": ctx.probe or None,
        "findings": findings,
    }
