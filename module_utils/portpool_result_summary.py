# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `summary` block of a host result: what the report shows about one host.

Data flows one way, facts -> audit -> report. The audit calls
`host_summary(facts, probe)` once per host and stores the answer in the
result file; the report reads only that block, never the raw facts or the
probe. Pure functions, no I/O. The schema is documented in docs/report.md.

The rates are the kernel's arithmetic (docs/probe.md): a closed connection
keeps its 4-tuple for 60 s in TIME_WAIT, so a client can open
`usable / 60` new connections per second to one destination for ever. Where
`tcp_tw_reuse` applies (1: every destination, 2: loopback only; both need
`tcp_timestamps`), a TIME_WAIT port can be taken again after
`tcp_tw_reuse_delay` ms (1 s before the sysctl existed), so the sustainable
rate is `usable / delay`. The current rate is the busiest destination's
TIME_WAIT sockets / 60 s: each one is a connection closed in the last minute.
"""

from __future__ import annotations

import ipaddress
import math

SUMMARY_SCHEMA = 1
TIME_WAIT_SECONDS = 60
DEFAULT_REUSE_DELAY_MS = 1000
SUMMARY_DESTINATIONS = 20
# A share of the pool above this is nonsense from a broken host; clamp it.
MAX_UTILISATION = 100.0
MAX_COUNT = 2 ** 53
POOL_KEYS = ("low", "high", "size", "reserved_in_range", "usable")
DESTINATION_KEYS = ("time_wait", "established", "total")
# Namespaces a host's summary carries, and destinations per namespace.
SUMMARY_NAMESPACES = 64
NAMESPACE_DESTINATIONS = 5
PROBE_FLAGS = ("matches_expected", "per_destination", "bind_zero_blocked",
               "bind_address_no_port_ok", "low_end_may_be_skipped")


def _int(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    # Counts beyond 2**53 are nonsense from a broken host, and break float maths.
    return value if -MAX_COUNT <= value <= MAX_COUNT else None


def _dict(value):
    return value if isinstance(value, dict) else {}


def _flag(value):
    return value if isinstance(value, bool) else None


def _utilisation(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        return None
    return min(value, MAX_UTILISATION)


def _range(value):
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = _int(value[0]), _int(value[1])
        if low is not None and high is not None:
            return [low, high]
    return None


def destination(entry):
    """One destination with typed fields, or None when it has no utilisation."""
    entry = _dict(entry)
    utilisation = _utilisation(entry.get("utilisation"))
    if utilisation is None:
        return None
    item = {"address": str(entry.get("address") or ""), "port": _int(entry.get("port")),
            "utilisation": utilisation}
    item.update((key, _int(entry.get(key))) for key in DESTINATION_KEYS)
    return item


def busiest_destinations(facts, limit=SUMMARY_DESTINATIONS):
    """The `limit` busiest destinations, highest utilisation first."""
    entries = _dict(facts.get("destinations")).get("top")
    if not isinstance(entries, list):
        return []
    typed = [item for item in map(destination, entries) if item is not None]
    typed.sort(key=lambda item: -item["utilisation"])
    return typed[:limit]


def is_loopback(address):
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(parsed, "ipv4_mapped", None)
    return (mapped or parsed).is_loopback


def reuse_applies(sysctl, address):
    """Whether tcp_tw_reuse lets connect() take a TIME_WAIT port to `address`.

    None when the facts do not say (no tcp_tw_reuse value).
    """
    reuse = _int(sysctl.get("tcp_tw_reuse"))
    if reuse is None:
        return None
    if _int(sysctl.get("tcp_timestamps")) == 0:
        return False
    return reuse == 1 or (reuse == 2 and is_loopback(address or ""))


def rates(facts, busiest):
    """Sustainable and current new-connection rates to the busiest destination."""
    sysctl = _dict(facts.get("sysctl"))
    usable = _int(_dict(facts.get("ephemeral")).get("usable"))
    address = busiest["address"] if busiest else None
    reuse = reuse_applies(sysctl, address)
    delay_ms = _int(sysctl.get("tcp_tw_reuse_delay"))
    delay_known = delay_ms is not None and delay_ms > 0
    if not delay_known:
        delay_ms = DEFAULT_REUSE_DELAY_MS
    window = delay_ms / 1000.0 if reuse else float(TIME_WAIT_SECONDS)
    if busiest:
        current = (busiest["time_wait"] or 0) / TIME_WAIT_SECONDS
    else:
        # No outgoing destination at all: nothing is closing, the rate is 0.
        current = 0.0 if facts.get("destinations") is not None else None
    return {
        "destination": ("%s:%s" % (address, busiest["port"])) if busiest else None,
        "reuse": reuse,
        "reuse_delay_ms": delay_ms if reuse else None,
        "reuse_delay_source": ("sysctl" if delay_known else "default") if reuse else None,
        "window_seconds": window,
        "sustainable_per_s": round(usable / window, 1) if usable is not None else None,
        "current_per_s": round(current, 1) if current is not None else None,
    }


def _record(record):
    record = _dict(record)
    if not record:
        return None
    return {key: str(record.get(key) or "") or None for key in ("host", "measured_at", "run")}


def probe_summary(probe):
    """The probe's measurement: held against expected, why it stopped, what is missing."""
    probe = _dict(probe)
    if not probe:
        return None
    hold = _dict(probe.get("hold"))
    missing = hold.get("missing_ports")
    summary = {
        "mode": str(probe.get("mode") or "") or None,
        "scope": str(probe.get("scope") or "") or None,
        "held": _int(hold.get("established")),
        "expected": _int(hold.get("expected")),
        "expected_full_range": _int(probe.get("expected")),
        "stopped_by": str(hold.get("stopped_by") or "") or None,
        "lost": _int(hold.get("lost")),
        "measured_range": _range(hold.get("measured_range") or probe.get("measured_range")),
        "missing_ports": ([port for port in map(_int, missing) if port is not None][:100]
                          if isinstance(missing, list) else None),
        "text": str(probe.get("summary") or "") or None,
        # Filled in from the measurements on record: which host measured it, when.
        "record": _record(probe.get("record")),
    }
    for key in PROBE_FLAGS:
        summary[key] = _flag(probe.get(key) if key in probe else hold.get(key))
    return summary


def _text(value):
    return value if isinstance(value, str) and value else None


def _labels(item):
    """The names a namespace is known by: netns, container, pod (None where unknown)."""
    container = _dict(item.get("container"))
    pod = _dict(item.get("pod"))
    return {
        "netns": _text(item.get("netns")),
        "container": _text(container.get("name")) or _text(container.get("id")),
        "pod": ("%s/%s" % (pod.get("namespace") or "?", pod.get("name") or pod.get("uid"))
                if pod else None),
    }


def namespace_summary(item):
    """One namespace's measurement, shaped like a host's (pool, TIME_WAIT, rates)."""
    item = _dict(item)
    sysctl = _dict(item.get("sysctl"))
    top = busiest_destinations(item, NAMESPACE_DESTINATIONS)
    return dict(
        _labels(item),
        id=_text(item.get("id")),
        name=_text(item.get("name")),
        kind=_text(item.get("kind")),
        error=_text(item.get("error")),
        range=_range(sysctl.get("ip_local_port_range")),
        tcp_tw_reuse=_int(sysctl.get("tcp_tw_reuse")),
        pool={key: _int(_dict(item.get("ephemeral")).get(key)) for key in POOL_KEYS},
        time_wait=_int(_dict(item.get("sockets")).get("time_wait")),
        destination_count=_int(_dict(item.get("destinations")).get("count")),
        destinations=top,
        rate=rates(item, top[0] if top else None) if item.get("sysctl") else None,
    )


def namespaces_summary(facts):
    """The host's other network namespaces (containers, pods), or None when not looked for."""
    fact = facts.get("namespaces")
    if not isinstance(fact, dict):
        return None
    items = fact.get("items") if isinstance(fact.get("items"), list) else []
    skipped = _dict(fact.get("skipped"))
    return {
        "found": _int(fact.get("found")),
        "inspected": _int(fact.get("inspected")),
        "skipped": sum(_int(value) or 0 for value in skipped.values()),
        "reasons": [reason for reason in fact.get("reasons") or [] if isinstance(reason, str)],
        "items": [namespace_summary(item) for item in items[:SUMMARY_NAMESPACES]],
    }


def host_summary(facts, probe, limit=SUMMARY_DESTINATIONS):
    """The result's `summary` block for one host's facts and probe (either may be None)."""
    facts = _dict(facts)
    ephemeral = _dict(facts.get("ephemeral"))
    sockets = _dict(facts.get("sockets"))
    top = busiest_destinations(facts, limit)
    busiest = top[0] if top else None
    return {
        "schema": SUMMARY_SCHEMA,
        "pool": {key: _int(ephemeral.get(key)) for key in POOL_KEYS},
        "time_wait": _int(sockets.get("time_wait")),
        "destination_count": _int(_dict(facts.get("destinations")).get("count")),
        "destinations": top,
        "rate": rates(facts, busiest) if facts else None,
        "probe": probe_summary(probe),
        "namespaces": namespaces_summary(facts),
    }


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and abs(value) < 1e15 else None


def read_summary(block):
    """A stored summary block retyped field by field (it comes from another machine).

    Returns None when there is no block. Anything of the wrong type becomes
    None; the destinations stay raw (the report normalises only those it shows).
    """
    if not isinstance(block, dict):
        return None
    rate = _dict(block.get("rate"))
    probe = block.get("probe")
    read_probe = None
    if isinstance(probe, dict):
        read_probe = {key: _int(probe.get(key)) for key in
                      ("held", "expected", "expected_full_range", "lost")}
        for key in ("mode", "scope", "stopped_by", "text"):
            value = probe.get(key)
            read_probe[key] = value if isinstance(value, str) and value else None
        read_probe["measured_range"] = _range(probe.get("measured_range"))
        missing = probe.get("missing_ports")
        read_probe["missing_ports"] = ([port for port in map(_int, missing[:100])
                                        if port is not None]
                                       if isinstance(missing, list) else None)
        for key in PROBE_FLAGS:
            read_probe[key] = _flag(probe.get(key))
    return {
        "pool": {key: _int(_dict(block.get("pool")).get(key)) for key in POOL_KEYS},
        "time_wait": _int(block.get("time_wait")),
        "destination_count": _int(block.get("destination_count")),
        "destinations": block.get("destinations"),
        "rate": read_rate(rate),
        "probe": read_probe,
        "namespaces": read_namespaces(block.get("namespaces")),
    }


def read_rate(rate):
    """A stored `rate` block retyped, or None."""
    if not isinstance(rate, dict) or not rate:
        return None
    return {
        "destination": (rate.get("destination")
                        if isinstance(rate.get("destination"), str) else None),
        "reuse": _flag(rate.get("reuse")),
        "reuse_delay_ms": _int(rate.get("reuse_delay_ms")),
        "reuse_delay_source": (rate.get("reuse_delay_source")
                               if rate.get("reuse_delay_source") in ("sysctl", "default")
                               else None),
        "window_seconds": _number(rate.get("window_seconds")),
        "sustainable_per_s": _number(rate.get("sustainable_per_s")),
        "current_per_s": _number(rate.get("current_per_s")),
    }


def read_namespaces(block):
    """A stored `namespaces` block retyped field by field, or None."""
    if not isinstance(block, dict):
        return None
    items = []
    stored = block.get("items") if isinstance(block.get("items"), list) else []
    for item in map(_dict, stored[:SUMMARY_NAMESPACES]):
        read = {key: _text(item.get(key)) for key in
                ("id", "name", "kind", "error", "netns", "container", "pod")}
        read.update(
            range=_range(item.get("range")),
            tcp_tw_reuse=_int(item.get("tcp_tw_reuse")),
            pool={key: _int(_dict(item.get("pool")).get(key)) for key in POOL_KEYS},
            time_wait=_int(item.get("time_wait")),
            destination_count=_int(item.get("destination_count")),
            destinations=(item.get("destinations")
                          if isinstance(item.get("destinations"), list) else []),
            rate=read_rate(item.get("rate")))
        items.append(read)
    reasons = block.get("reasons") if isinstance(block.get("reasons"), list) else []
    return {
        "found": _int(block.get("found")),
        "inspected": _int(block.get("inspected")),
        "skipped": _int(block.get("skipped")),
        "reasons": [reason for reason in reasons if isinstance(reason, str)][:10],
        "items": items,
    }
