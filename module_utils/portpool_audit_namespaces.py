# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rules for a host's other network namespaces: containers, pods, `ip netns`.

Each namespace portpool_facts read has its own range, reuse setting, sockets and
listeners (docs/namespaces.md). The rules judge each one as a small host of its
own (a HostContext over the namespace's facts) and advise in the namespace's
terms: the container runtime's setting where one is known, and a shell line that
enters the namespace. Tune never changes a container's namespace.
"""

from __future__ import annotations

import math

from .portpool_audit_advice import describe_values, shell_line
from .portpool_audit_facts import HostContext, show
from .portpool_sysctl import (
    RANGE,
    dotted_name,
    format_reserved_ports,
    kind_of,
    parse_port_range,
    same_parity,
    short_name,
    to_text,
)

# Kernel defaults a new network namespace starts from.
NAMESPACE_DEFAULTS = {"ip_local_port_range": "32768 60999", "tcp_tw_reuse": "2"}


def namespaces(ctx):
    """[(item, HostContext of its facts)] for every namespace the facts could read."""
    fact = ctx.facts.get("namespaces") or {}
    out = []
    for item in fact.get("items") or []:
        if not isinstance(item, dict) or not item.get("sysctl"):
            continue
        facts = {key: item.get(key) for key in
                 ("sysctl", "ephemeral", "sockets", "destinations", "listeners_in_range")}
        out.append((item, HostContext(ctx.host, facts, policy=ctx.policy)))
    return out


def enter_command(item):
    """The command prefix that runs a program inside the namespace."""
    if item.get("netns"):
        return "ip netns exec %s" % item["netns"]
    holder = (item.get("holder") or {}).get("pid")
    return "nsenter --net=/proc/%s/ns/net" % holder


def container_lines(item, settings):
    """How the namespace's runtime sets `settings` at every start, or []."""
    if item.get("kind") == "kubernetes":
        lines = ["spec.securityContext.sysctls:"]
        for key, text in settings.items():
            lines += ["  - name: %s" % key, '    value: "%s"' % text]
        return lines
    if item.get("kind") == "container":
        flags = " ".join("--sysctl '%s=%s'" % (key, text) for key, text in settings.items())
        lines = ["docker run %s ..." % flags, "compose: sysctls:"]
        lines += ['  %s: "%s"' % (key, text) for key, text in settings.items()]
        return lines
    return []


def namespace_fix(item, settings):
    """A fix for one namespace: its runtime's configuration, and the values now.

    Shaped like the host fixes (portpool_audit_advice.make_fix) with no sysctl file,
    plus `namespace` (which one) and `container` (the runtime's lines).
    """
    settings = {dotted_name(key): text for key, text in settings.items()}
    prefix = enter_command(item)
    return {
        "settings": settings,
        "file": None,
        "file_lines": [],
        "delete": [],
        "shell": ["%s %s" % (prefix, shell_line(key, text)) for key, text in settings.items()],
        "namespace": {"id": item.get("id"), "inode": item.get("inode"), "name": item.get("name")},
        "container": container_lines(item, settings),
    }


def _where(item):
    return "network namespace %s (%s)" % (item.get("name"), item.get("id"))


def _hit(message, advice, severity=None, fixes=()):
    return {"message": message, "advice": advice, "severity": severity,
            "fixes": list(fixes), "wants": {}}


def _wanted(ctx, key):
    """The value a namespace should have for `key`, or None when any will do.

    The policy's desired value when it names one; else the host's own value, but
    only where the host is tuned: a host at a new namespace's default asks nothing
    of its containers.
    """
    desired = ctx.policy.get("desired") or {}
    for name in (key, dotted_name(key)):
        if name in desired:
            return to_text(key, desired[name])
    host = ctx.sysctl_text(key)
    return None if host == NAMESPACE_DEFAULTS.get(short_name(key)) else host


def _falls_short(key, have, want):
    """True when the namespace's value gives it less than the wanted one.

    A range counts as short when it does not cover the wanted range (a wider one
    is no problem); any other key when it differs.
    """
    if want is None or have == want:
        return False
    if kind_of(key) == RANGE:
        (have_low, have_high), (want_low, want_high) = (
            parse_port_range(have), parse_port_range(want))
        return have_low > want_low or have_high < want_high
    return True


def check_namespace_settings(ctx):
    """PP020: a namespace's range or reuse falls short of the host's tuned values."""
    keys = ctx.policy.get("namespace_keys") or []
    hits = []
    for item, inner in namespaces(ctx):
        short = {}
        for key in keys:
            have, want = inner.sysctl_text(key), _wanted(ctx, key)
            if have is not None and _falls_short(key, have, want):
                short[dotted_name(key)] = (have, want)
        if not short:
            continue
        defaults = all(have == NAMESPACE_DEFAULTS.get(short_name(key))
                       for key, (have, _want) in short.items())
        settings = {key: want for key, (_have, want) in short.items()}
        hits.append(_hit(
            "In %s: %s, while the host has %s.%s" % (
                _where(item),
                ", ".join("%s = %s" % (key, show(have)) for key, (have, _w) in short.items()),
                describe_values(settings),
                " These are the kernel's defaults for a new namespace: the host's tuning "
                "does not reach containers." if defaults else ""),
            "Set %s in the container's own configuration (tune changes the host's "
            "namespace only)." % describe_values(settings),
            fixes=[namespace_fix(item, settings)]))
    return hits


def check_namespace_pressure(ctx):
    """PP021: a destination near its pool inside a namespace."""
    warn = float(ctx.policy["destination_warn"])
    high = float(ctx.policy["destination_high"])
    hits = []
    for item, inner in namespaces(ctx):
        usable = inner.usable()
        rng = inner.port_range()
        for dest in inner.destinations():
            util = dest.get("utilisation")
            if util is None or float(util) < warn or not usable or not rng:
                continue
            total = dest.get("total") or 0
            needed = math.ceil(total / warn) if warn > 0 else total
            low = max(1024, min(rng[0], rng[1] - needed + 1))
            if same_parity(low, rng[1]):  # the kernel wants ends of different parity
                low = low - 1 if low > 1024 else low + 1
            settings = {"ip_local_port_range": "%d %d" % (low, rng[1])}
            reuse = inner.sysctl_int("tcp_tw_reuse")
            if reuse != 1 and inner.sysctl_int("tcp_timestamps") != 0:
                settings["tcp_tw_reuse"] = "1"
            address = dest.get("address")
            target = ("[%s]:%s" if ":" in str(address) else "%s:%s") % (address, dest.get("port"))
            hits.append(_hit(
                "In %s, destination %s holds %d of the namespace's %d usable local ports "
                "(%.0f%%): %s in TIME_WAIT, %s established." % (
                    _where(item), target, total, usable, float(util) * 100,
                    dest.get("time_wait", "?"), dest.get("established", "?")),
                "Widen the namespace's range (and let it reuse TIME_WAIT ports) in the "
                "container's own configuration, or pool connections.",
                "high" if float(util) >= high else "medium",
                fixes=[namespace_fix(item, settings)]))
    return hits


def check_namespace_listeners(ctx):
    """PP022: a listener inside a namespace's range, not reserved there."""
    hits = []
    for item, inner in namespaces(ctx):
        ports = sorted({int(entry["port"]) for entry in inner.listeners()
                        if not entry.get("reserved")})
        if not ports:
            continue
        spans = inner.reserved() + [[port, port] for port in ports]
        value = format_reserved_ports(spans)
        rng = inner.port_range()
        hits.append(_hit(
            "In %s, listening on %s inside its ip_local_port_range %s, not reserved: after "
            "a restart an outgoing connection may hold the port." % (
                _where(item), ", ".join(map(str, ports)), "%d %d" % rng if rng else "?"),
            "Reserve the port%s in the container's own configuration "
            "(net.ipv4.ip_local_reserved_ports is a safe sysctl in Kubernetes 1.27 and "
            "later)." % ("s" if len(ports) > 1 else ""),
            fixes=[namespace_fix(item, {"ip_local_reserved_ports": value})]))
    return hits
