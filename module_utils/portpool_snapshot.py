# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One network namespace's pool, as the process calling it sees it.

The sysctls, the per-destination pool, socket counts, destinations and
listeners inside the range. portpool_facts calls it for the host; the
namespace inspector calls it in a child that has joined another network
namespace, so both are described by the same code and the same shape.
"""

from __future__ import annotations

import os

from .portpool_sockdiag import (
    LISTEN,
    NetlinkUnavailable,
    SocketTally,
    families_in_use,
    merge_tally,
    netlink_connections_into,
    netlink_tally,
    parse_netstat_counter,
    proc_tally,
    state_counts,
    summarise_destinations,
    summarise_listeners,
)
from .portpool_sysctl import (
    KNOWN_KEYS,
    from_text,
    pool_size,
    read_sysctl,
    short_name,
)


def read_runtime(proc_root="/proc", keys=KNOWN_KEYS):
    """Normalised runtime text of each key (None: absent), and warnings."""
    runtime = {}
    warnings = []
    sys_root = os.path.join(proc_root, "sys")
    for key in keys:
        try:
            runtime[key] = read_sysctl(key, sys_root)
        except OSError as exc:
            runtime[key] = None
            warnings.append("cannot read sysctl %s: %s" % (key, exc.strerror or exc))
    return runtime, warnings


def type_sysctls(runtime):
    """Typed sysctl facts from normalised runtime text; unparsable values become None."""
    typed = {}
    warnings = []
    for key, text in runtime.items():
        value = None
        if text is not None:
            try:
                value = from_text(key, text)
            except ValueError as exc:
                warnings.append("sysctl %s: %s" % (key, exc))
        typed[short_name(key)] = value
    return typed, warnings


def collect_sockets(low, high, source="auto", proc_root="/proc"):
    """Socket tally from netlink or /proc; and warnings.

    Netlink asks twice per family, each with the states filtered in the
    kernel: LISTEN (cheap: the listening hash is small), then every other
    state in one walk of the established hash table (about 1 ms on a machine
    with 262,144 buckets, however few sockets the namespace has). A family
    that /proc/net/sockstat shows has no TCP socket at all is not asked: a
    container's idle namespace costs a file read, not two table walks.

    Listening ports are excluded from the outgoing-port table before the
    connection dump, so accepted connections to a listener inside the range are
    not counted as outgoing ones.
    """
    warnings = []
    if source in ("auto", "netlink"):
        try:
            families = families_to_dump(proc_root)
            listeners = netlink_tally(SocketTally(), 1 << LISTEN, families)
            ports = {port for _family, _raw, port in listeners.listeners}
            connections = netlink_connections_into(
                SocketTally(low, high, exclude_ports=ports), families)
            merge_tally(connections, listeners)
            return connections, "netlink", warnings
        except NetlinkUnavailable as exc:
            if source == "netlink":
                raise
            warnings.append("netlink sock_diag unavailable (%s); reading /proc/net/tcp" % exc)
    tally = SocketTally(low, high)
    warnings.extend(proc_tally(tally, proc_root))
    if not tally.tables:
        return None, None, warnings
    return tally, "proc", warnings


def families_to_dump(proc_root="/proc"):
    """The families sockstat shows have TCP sockets (both if it cannot be read)."""
    texts = []
    for name in ("sockstat", "sockstat6"):
        try:
            with open(os.path.join(proc_root, "net", name), encoding="ascii",
                      errors="replace") as handle:
                texts.append(handle.read())
        except OSError:
            texts.append("")
    return families_in_use(*texts)


def read_netstat_counter(name, proc_root="/proc"):
    path = os.path.join(proc_root, "net", "netstat")
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return parse_netstat_counter(handle.read(), name), []
    except OSError as exc:
        return None, ["cannot read %s: %s" % (path, exc.strerror or exc)]


def network_snapshot(keys=KNOWN_KEYS, proc_root="/proc", source="auto", destinations_top=20):
    """The pool facts of the calling process's network namespace.

    Returns (facts, runtime text per key, warnings); facts has `sysctl`,
    `ephemeral`, `sockets`, `destinations` and `listeners_in_range`.
    """
    warnings = []
    runtime, more = read_runtime(proc_root, keys)
    warnings.extend(more)
    sysctl, more = type_sysctls(runtime)
    warnings.extend(more)

    ephemeral = None
    reserved = sysctl.get("ip_local_reserved_ports") or []
    if sysctl.get("ip_local_port_range") is not None:
        low, high = sysctl["ip_local_port_range"]
        ephemeral = pool_size(low, high, reserved)
    else:
        warnings.append("ip_local_port_range unknown: no ephemeral pool, destinations "
                        "or listeners_in_range")

    if proc_root != "/proc":
        source = "proc"
    low, high = (ephemeral["low"], ephemeral["high"]) if ephemeral else (None, None)
    tally, used, more = collect_sockets(low, high, source, proc_root)
    warnings.extend(more)
    sockets = destinations = listeners = None
    if tally is not None:
        counts = state_counts(tally)
        overflow, more = read_netstat_counter("TCPTimeWaitOverflow", proc_root)
        warnings.extend(more)
        sockets = {
            "source": used,
            "ipv4": counts["ipv4"],
            "ipv6": counts["ipv6"],
            "total": counts["total"],
            "time_wait": counts["total"]["time_wait"],
            "TCPTimeWaitOverflow": overflow,
        }
        if ephemeral:
            top, count = summarise_destinations(
                tally.destinations, ephemeral["usable"], destinations_top)
            destinations = {"top": top, "count": count}
            listeners = summarise_listeners(tally.listeners, low, high, reserved)
    facts = {
        "sysctl": sysctl,
        "ephemeral": ephemeral,
        "sockets": sockets,
        "destinations": destinations,
        "listeners_in_range": listeners,
    }
    return facts, runtime, warnings
