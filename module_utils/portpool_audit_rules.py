# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit rules: pure functions from one host's context (or the fleet's) to findings.

Every rule has a stable id (PP001...), a default severity, a one-line title and a
description (the catalogue, written to rules.json and docs/rules.md). A host rule
takes a HostContext and returns hits; the fleet rule (drift, PP015) takes every
host's context at once. A hit carries its message, a short recommendation and
structured fixes (portpool_audit_advice); the engine re-checks each fix before it
is shown.
"""

from __future__ import annotations

import math

from .portpool_audit_advice import (
    describe_values,
    make_fix,
    persist_fix,
)
from .portpool_audit_facts import proc_path, show
from .portpool_audit_namespaces import (
    check_namespace_listeners,
    check_namespace_pressure,
    check_namespace_settings,
)
from .portpool_sysctl import (
    dotted_name,
    format_reserved_ports,
    parse_port_range,
    reserved_in_range,
    same_parity,
    to_text,
)

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# TCP_TIMEWAIT_LEN (include/net/tcp.h) and the tcp_fin_timeout default: both 60 s.
TIME_WAIT_SECONDS = 60
FIN_TIMEOUT_DEFAULT = 60
# IANA system ("well-known") ports end at 1023.
WELL_KNOWN_END = 1023
# The kernel's default range since 4.2.
DEFAULT_RANGE = (32768, 60999)


# --------------------------------------------------------------------------- helpers

def suggest_range(needed, reserved=(), floor=1024, high=DEFAULT_RANGE[1]):
    """A range with at least `needed` usable ports, ends of different parity.

    Keeps the high end (at least the kernel default's 60999, at most 65535) and
    moves the low end down, never below `floor` (ip_unprivileged_port_start or
    1024). A low end below the default's gets 5% more ports and is rounded down
    to a multiple of 1024: a number people recognise, and headroom, so that a load
    that grew a little between the audit and the fix does not bring the finding
    straight back.
    Returns (low, high, usable).
    """
    high = min(max(int(high), DEFAULT_RANGE[1]), 65535)
    floor = max(int(floor), 1)
    low = min(max(high - needed + 1, floor), DEFAULT_RANGE[0])
    while low > floor and high - low + 1 - reserved_in_range(reserved, low, high) < needed:
        low -= 1
    if low < DEFAULT_RANGE[0]:
        low = max((low - needed // 20) // 1024 * 1024, floor)  # 5% more, then round
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


def _hit(message, advice, severity=None, fixes=(), wants=None):
    """One finding's content: `advice` is prose; `fixes` are re-checked before shown."""
    return {"message": message, "advice": advice, "severity": severity,
            "fixes": list(fixes), "wants": dict(wants or {})}


def _range_text(low, high):
    return "%d %d" % (low, high)


def _floor(ctx):
    return max(ctx.sysctl_int("ip_unprivileged_port_start") or 1024, 1024)


def check_pool_size(ctx):
    """PP001: usable pool below the policy's minimum or the measured pressure."""
    rng, usable = ctx.port_range(), ctx.usable()
    if rng is None or usable is None:
        return []
    low, high = rng
    minimum = int(ctx.policy["min_usable_ports"])
    headroom = float(ctx.policy["pool_headroom"])
    busiest = max((dest.get("total") or 0 for dest in ctx.destinations()), default=0)
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
    new_low, new_high, new_usable = suggest_range(needed, ctx.reserved(), _floor(ctx), high)
    message = "Usable per-destination pool is %d ports: %s. Source: %s." % (
        usable, " and ".join(reasons), where)
    fix = persist_fix(ctx, {"ip_local_port_range": _range_text(new_low, new_high)})
    if new_usable < needed:
        advice = ("Even ip_local_port_range %d-%d gives only %d usable ports: spread the "
                  "load over more destination or source addresses, and widen the range "
                  "that far." % (new_low, new_high, new_usable))
    else:
        advice = "Widen ip_local_port_range to %d-%d (%d usable ports)." % (
            new_low, new_high, new_usable)
    return [_hit(message, advice, fixes=[fix])]


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
        "Move one end by one port so the ends differ in parity.",
        fixes=[persist_fix(ctx, {"ip_local_port_range": _range_text(new_low, new_high)})])]


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
    if entry:
        try:
            boot = parse_port_range(to_text("ip_local_port_range", entry["value"]))
        except ValueError:
            boot = None
        if boot is not None and boot != rng:
            candidates.append(("boot", boot, "from %s" % entry["file"]))
    for when, (low, high), source in candidates:
        if unpriv is not None and low < unpriv:
            new = fix_parity(max(low, floor), high, floor)
            hits.append(_hit(
                "The %s ip_local_port_range %d %d starts below "
                "ip_unprivileged_port_start %d (%s); the kernel rejects this pair with "
                "EINVAL, so %s." % (
                    when, low, high, unpriv, source,
                    "the boot value will not be applied" if when == "boot"
                    else "one of them was changed behind the kernel's check"),
                "Start the range at or above %d." % floor, "high",
                fixes=[persist_fix(ctx, {"ip_local_port_range": _range_text(*new)})]))
        elif low <= WELL_KNOWN_END:
            new = fix_parity(floor, high, floor)
            hits.append(_hit(
                "The %s ip_local_port_range %d %d overlaps the well-known ports "
                "(0-1023) that system services listen on (%s)." % (when, low, high, source),
                "Start the range at or above %d." % floor, "medium",
                fixes=[persist_fix(ctx, {"ip_local_port_range": _range_text(*new)})]))
        if when == "runtime":
            ports = ports_in_range(ctx.policy.get("service_ports") or [], low, high, reserved)
            if ports:
                hits.append(_hit(
                    "Service ports %s named in the policy lie inside ip_local_port_range "
                    "%d %d and are not reserved (%s); an outgoing connection can take "
                    "them before the service binds." % (
                        ", ".join(map(str, ports)), low, high,
                        ctx.origin("ip_local_reserved_ports")),
                    "Reserve them.", "medium",
                    fixes=[persist_fix(ctx, {"ip_local_reserved_ports":
                                             reserve_value(reserved, ports)})]))
    return hits


def check_listener_in_range(ctx):
    """PP004: a listening socket's port inside the range and not reserved."""
    rng = ctx.port_range()
    reserved = ctx.reserved()
    ports = {}
    for item in ctx.listeners():
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
    value = reserve_value(reserved, sorted(ports))
    return [_hit(
        "Listening on %s inside ip_local_port_range %s, not in ip_local_reserved_ports "
        "(%s): after a restart an outgoing connection may hold the port and the "
        "service fails to bind."
        % (", ".join(shown), range_text, ctx.origin("ip_local_reserved_ports")),
        "Reserve the listening port%s." % ("s" if len(ports) > 1 else ""),
        fixes=[persist_fix(ctx, {"ip_local_reserved_ports": value})],
        wants={"net.ipv4.ip_local_reserved_ports": value})]


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
        evidence = " The probe's churn to a remote-like address %s ports in TIME_WAIT." % (
            "reused" if remote["reuse_effective"] else "did not reuse")
    return [_hit(
        "tcp_tw_reuse = %d asks for TIME_WAIT reuse on %s, but reuse needs TCP "
        "timestamps and tcp_timestamps = 0, so it never happens (%s; %s).%s" % (
            reuse, scope, ctx.origin("tcp_tw_reuse"), ctx.origin("tcp_timestamps"), evidence),
        "Turn TCP timestamps on. If a security baseline forbids them, accept about "
        "usable/60 new connections per second per destination instead.",
        "medium" if reuse == 1 else "low",
        fixes=[persist_fix(ctx, {"tcp_timestamps": "1"})],
        # The fix makes the asked-for reuse work: drift advice must not undo the ask.
        wants={"net.ipv4.tcp_tw_reuse": str(reuse)} if reuse == 1 else None)]


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
            "Turn it off.", "high",
            fixes=[persist_fix(ctx, {"tcp_tw_recycle": "0"})]))
    elif runtime == 0:
        hits.append(_hit(
            "The kernel still has tcp_tw_recycle (older than 4.12), currently 0 (%s)."
            % ctx.origin("tcp_tw_recycle"),
            "Keep net.ipv4.tcp_tw_recycle = 0 and plan a kernel of 4.12 or later.",
            "low"))
    elif entry:
        files = list(dict.fromkeys([item["file"] for item in entry["also"]] + [entry["file"]]))
        key = "net.ipv4.tcp_tw_recycle"
        hits.append(_hit(
            "%s sets %s = %s, a key this kernel no longer has (removed in 4.12): "
            "`sysctl -p` reports an error for it and stops being a reliable check." % (
                ", ".join(files), key, show(to_text(key, entry["value"]))),
            "Remove the key from every sysctl file.", "medium",
            fixes=[make_fix({}, None, [(path, key) for path in files], runtime=False)]))
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
            "Raise it to at least %d, or remove the override to get the kernel default."
            % int(minimum),
            fixes=[persist_fix(ctx, {"tcp_max_tw_buckets": str(max(int(minimum), 131072))})]))
    if overflow:
        want = max(int(ctx.sockets().get("time_wait") or 0) * 2, buckets or 0, 262144)
        hits.append(_hit(
            "TCPTimeWaitOverflow = %d in /proc/net/netstat: %d sockets skipped "
            "TIME_WAIT because tcp_max_tw_buckets (%s) was full." % (
                overflow, overflow, show(ctx.sysctl_text("tcp_max_tw_buckets"))),
            "Raise net.ipv4.tcp_max_tw_buckets above the peak TIME_WAIT count (now %s)."
            % ctx.sockets().get("time_wait", "unknown"),
            fixes=[persist_fix(ctx, {"tcp_max_tw_buckets": str(want)})]))
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
        "Go back to %d unless FIN_WAIT_2 was the aim; for TIME_WAIT pressure widen "
        "net.ipv4.ip_local_port_range or use net.ipv4.tcp_tw_reuse = 1."
        % FIN_TIMEOUT_DEFAULT,
        fixes=[persist_fix(ctx, {"tcp_fin_timeout": str(FIN_TIMEOUT_DEFAULT)})])]


def check_destination_pressure(ctx):
    """PP009: one destination using a large share of its per-destination pool."""
    usable = ctx.usable()
    warn = float(ctx.policy["destination_warn"])
    high = float(ctx.policy["destination_high"])
    rng = ctx.port_range()
    reuse_helps = ctx.sysctl_int("tcp_tw_reuse") != 1 and ctx.sysctl_int("tcp_timestamps") != 0
    hits = []
    for dest in ctx.destinations():
        total = dest.get("total") or 0
        util = dest.get("utilisation")
        if util is None:
            util = total / usable if usable else None
        if util is None or float(util) < warn:
            continue
        util = float(util)
        address = dest.get("address")
        target = ("[%s]:%s" if ":" in str(address) else "%s:%s") % (address, dest.get("port"))
        # Strictly below the warn share: the rule fires at the share itself.
        needed = math.floor(total / warn) + 1 if warn > 0 else total
        new_low, new_high, new_usable = suggest_range(
            needed, ctx.reserved(), _floor(ctx), rng[1] if rng else DEFAULT_RANGE[1])
        hits.append(_hit(
            "Destination %s holds %d of the %s usable local ports (%.0f%%): %s in "
            "TIME_WAIT, %s established (sockets whose local port is in the ephemeral "
            "range). Once it reaches 100%% connect() to it fails with EADDRNOTAVAIL." % (
                target, total, usable if usable is not None else "?", util * 100,
                dest.get("time_wait", "?"), dest.get("established", "?")),
            "Widen ip_local_port_range to %d-%d (%d usable, keeps this destination under "
            "%.0f%%), and/or spread the traffic over more destination addresses or keep "
            "connections alive (pooling)%s." % (
                new_low, new_high, new_usable, warn * 100,
                "; net.ipv4.tcp_tw_reuse = 1 lets TIME_WAIT ports be reused"
                if reuse_helps else ""),
            "high" if util >= high else "medium",
            fixes=[persist_fix(ctx, {"ip_local_port_range": _range_text(new_low, new_high)})],
            wants={"net.ipv4.tcp_tw_reuse": "1"} if reuse_helps or
            ctx.sysctl_int("tcp_tw_reuse") == 1 else None))
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
        boot = to_text(key, entry.get("value"))
        runtime = ctx.sysctl_text(key)
        fixes = []
        if runtime is not None:
            fixes.append(persist_fix(ctx, {key: runtime}, runtime=False))
        if boot is not None:
            fixes.append(make_fix({key: boot}, None))
        hits.append(_hit(
            "%s is %s at runtime (%s) but %s wins at boot (%s): the next reboot or "
            "`sysctl --system` changes it." % (
                key, show(runtime), proc_path(key), show(boot), entry.get("file")),
            "Make them agree: keep the runtime value at boot, or apply the boot value "
            "now (an option another rule would flag is not offered).", fixes=fixes))
    return hits


def check_persisted_duplicates(ctx):
    """PP012: several persisted files set the same key."""
    hits = []
    managed = ctx.managed_file()
    for key in ctx.persisted_keys():
        entry = ctx.persisted_entry(key)
        others = entry["also"]
        if not others:
            continue
        winner = to_text(key, entry["value"])
        listing = "; ".join("%s sets %s" % (item["file"], show(to_text(key, item["value"])))
                            for item in others)
        agree = all(to_text(key, item["value"]) == winner for item in others
                    if item["value"] is not None)
        files = list(dict.fromkeys([item["file"] for item in others] + [entry["file"]]))
        keep = managed if managed in files else entry["file"]
        fix = make_fix({}, None, [(path, key) for path in files if path != keep],
                       runtime=False)
        hits.append(_hit(
            "%s is set in %d files: %s wins with %s; %s.%s" % (
                key, len(others) + 1, entry["file"], show(winner), listing,
                "" if agree else " The values disagree, so the winner depends on "
                "file names and directory order."),
            "Keep the key only in %s%s." % (
                keep, " (portpool's file: change it with portpool_tune_settings)"
                if keep == managed else ""),
            fixes=[fix]))
    return hits


def check_quoted_values(ctx):
    """PP018: a sysctl file writes a value in quotes, which the kernel rejects."""
    hits = []
    for key in ctx.persisted_keys():
        entry = ctx.persisted_entry(key)
        for item in entry["also"] + [{"file": entry["file"], "value": entry["value"]}]:
            value = (item["value"] or "").strip()
            if len(value) < 2 or value[0] not in "\"'" or value[-1] != value[0]:
                continue
            bare = " ".join(value[1:-1].split())
            hits.append(_hit(
                "%s sets %s = %s with quotes: systemd-sysctl and `sysctl -p` write the "
                "value verbatim, quotes included, and the kernel rejects it (EINVAL), so "
                "this line is never applied." % (item["file"], key, value),
                "Write the value without quotes.",
                fixes=[make_fix({key: bare}, item["file"], runtime=False)]))
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
        want_text = to_text(key, want)
        have = ctx.sysctl_text(key)
        if have == want_text:
            continue
        hits.append(_hit(
            "%s differs from the policy's desired %s (%s)." % (
                dotted_name(key), show(want_text), ctx.origin(key)),
            "Set the policy's value.",
            fixes=[persist_fix(ctx, {key: want_text})],
            wants={dotted_name(key): want_text}))
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
        "Fix the error above (often: Python 3 is missing, or the facts come from "
        "another portpool version) and run the audit again.")]


def check_probe_failed(ctx):
    """PP019: the probe did not run; the facts were still judged."""
    if not ctx.probe_error:
        return []
    return [_hit(
        "The probe failed, so the pool was judged from the settings alone, not "
        "measured: %s" % ctx.probe_error,
        "Run the audit with become: true (the probe's lab mode needs root for its "
        "network namespace), or set portpool_audit_probe_mode: host, or "
        "portpool_audit_probe: false to skip the probe.")]


def gives_more(key, mine, majority, ctx):
    """True when a host's value gives it more than the group's, not something else.

    A wider range (one that covers the group's), TIME_WAIT reuse on every
    destination (1, with timestamps) where the group reuses on loopback only or
    not at all, and more TIME_WAIT buckets are what a busier host is told to set:
    such a host is ahead of its group, not drifting from it.
    """
    key = dotted_name(key)
    try:
        if key == "net.ipv4.ip_local_port_range":
            (low, high), (group_low, group_high) = (parse_port_range(mine),
                                                    parse_port_range(majority))
            return low <= group_low and high >= group_high
        if key == "net.ipv4.tcp_tw_reuse":
            return mine == "1" and ctx.sysctl_int("tcp_timestamps") != 0
        if key == "net.ipv4.tcp_max_tw_buckets":
            return int(mine) >= int(majority)
    except (TypeError, ValueError):
        return False
    return False


def check_drift(contexts):
    """PP015: hosts whose settings differ from the majority of their inventory group.

    A key some other finding on the host wants at its current value (PP004's
    reservation, PP009's tcp_tw_reuse = 1, the policy's desired value) is not drift
    to correct: that host is different on purpose.
    """
    members = {}
    for ctx in contexts:
        if ctx.status != "ok" or not ctx.facts:
            continue
        for group in ctx.groups:
            members.setdefault(group, []).append(ctx)
    hits = {}
    for group in sorted(members):
        hosts = members[group]
        majorities = {}  # key -> (value, votes), counted once per group, not per host
        for ctx in hosts:
            keys = ctx.policy.get("drift_keys") or []
            if len(hosts) < int(ctx.policy.get("drift_min_hosts") or 3):
                continue
            wants = ctx.wants
            for key in keys:
                if key not in majorities:
                    counts = {}
                    for other in hosts:
                        value = other.sysctl_text(key)
                        counts[value] = counts.get(value, 0) + 1
                    majorities[key] = max(counts.items(), key=lambda item: item[1])
                majority, votes = majorities[key]
                if votes * 2 <= len(hosts) or majority is None:
                    continue
                mine = ctx.sysctl_text(key)
                if mine == majority or dotted_name(key) in wants or \
                        gives_more(key, mine, majority, ctx):
                    continue
                hits.setdefault(ctx.host, []).append(_hit(
                    "%s = %s here (%s) but %s on %d of %d hosts in group %s." % (
                        dotted_name(key), show(mine), proc_path(key), show(majority),
                        votes, len(hosts), group),
                    "Match group %s (%s), or move this host to a group of its own if "
                    "the difference is intended." % (
                        group, describe_values({dotted_name(key): majority})),
                    fixes=[persist_fix(ctx, {key: majority})]))
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
         "The host was unreachable or the audit failed on it (including facts that do "
         "not follow docs/facts.md): its pool is unknown.",
         check_not_audited),
    Rule("PP018", "medium", "Quoted value in a sysctl file",
         "A sysctl.d or sysctl.conf line writes its value in quotes; systemd-sysctl and "
         "`sysctl -p` pass the quotes to the kernel, which rejects the value.",
         check_quoted_values),
    Rule("PP019", "medium", "Probe failed",
         "The probe could not run on the host (often: no root for its lab mode); the "
         "host's settings were judged without the measurement.", check_probe_failed),
    Rule("PP020", "medium", "Namespace short of the host's settings",
         "A container's, pod's or named network namespace has a narrower "
         "ip_local_port_range, or another tcp_tw_reuse (or a policy-named key), than "
         "the host's tuned values or the policy's desired ones; a new namespace starts "
         "from the kernel's defaults, not from the host's.", check_namespace_settings),
    Rule("PP021", "medium", "Destination near its pool inside a namespace",
         "One destination uses more than the warn share (medium) or the high share "
         "(high) of a network namespace's own per-destination pool.",
         check_namespace_pressure),
    Rule("PP022", "high", "Listening port inside a namespace's range",
         "A service in a network namespace listens on a port inside that namespace's "
         "ip_local_port_range that it does not reserve.", check_namespace_listeners),
)

RULES_BY_ID = {rule.id: rule for rule in RULES}
RULE_IDS = tuple(RULES_BY_ID)


def catalogue():
    """The rule catalogue: [{"id", "severity", "title", "description"}]."""
    return [rule.catalogue() for rule in RULES]
