# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit's view of one host: the facts schema (docs/facts.md), checked, and HostContext.

portpool_facts has one layout, and this file reads only that one. A host whose facts
do not match it (a different portpool version, a hand-made file, a hostile target)
is not judged: check_facts names what is wrong and the host becomes a failed entry,
while every other host is judged as usual.
"""

from __future__ import annotations

import math

from .portpool_sysctl import (
    PORT_LIST,
    RANGE,
    SHORT_NAMES,
    dotted_name,
    kind_of,
    merge_spans,
    normalise_value,
    short_name,
    to_text,
)

# What one host may send: deeper or larger facts are refused, not walked.
MAX_DEPTH = 8
MAX_NODES = 200000
MAX_TEXT = 4096
MAX_INT = 2 ** 63


def proc_path(key):
    """Where the runtime value lives: `/proc/sys/net/ipv4/tcp_tw_reuse`."""
    return "/proc/sys/" + dotted_name(key).replace(".", "/")


def show(text):
    """A value for a sentence: `(absent)` and `(empty)` instead of nothing, never quoted."""
    if text is None:
        return "(absent)"
    return "(empty)" if str(text) == "" else str(text)


def as_int(value):
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(normalise_value(value))
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- schema

class FactsError(ValueError):
    """The facts do not follow docs/facts.md; the message says where."""


def _size_check(value):
    """Refuse facts nested deeper than MAX_DEPTH or larger than MAX_NODES, iteratively."""
    stack, nodes = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise FactsError("more than %d values" % MAX_NODES)
        if depth > MAX_DEPTH:
            raise FactsError("nested deeper than %d levels" % MAX_DEPTH)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and len(item) > MAX_TEXT:
            raise FactsError("a text value longer than %d characters" % MAX_TEXT)


def _kind(where, value, kinds, nullable=True):
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise FactsError("%s: expected %s, got %s" % (
            where, " or ".join(kind.__name__ for kind in kinds), type(value).__name__))
    if isinstance(value, float) and not math.isfinite(value):
        raise FactsError("%s: %r is not a finite number" % (where, value))
    if isinstance(value, int) and not -MAX_INT < value < MAX_INT:
        raise FactsError("%s: %d is out of range" % (where, value))


def _port(where, value):
    _kind(where, value, (int,), nullable=False)
    if not 0 <= value <= 65535:
        raise FactsError("%s: %d is not a port" % (where, value))


def _dict(where, value, nullable=True):
    _kind(where, value, (dict,), nullable)
    return value or {}


def _list(where, value):
    _kind(where, value, (list,))
    return value or []


def _check_sysctl(table):
    for name, value in table.items():
        where = "sysctl.%s" % name
        if name not in SHORT_NAMES:
            raise FactsError("%s: not a key portpool_facts reports" % where)
        if kind_of(name) == RANGE and value is not None:
            if not isinstance(value, list) or len(value) != 2:
                raise FactsError("%s: expected [low, high]" % where)
            _port(where + "[0]", value[0])
            _port(where + "[1]", value[1])
            if value[0] > value[1]:
                raise FactsError("%s: low end above the high end" % where)
        elif kind_of(name) == PORT_LIST and value is not None:
            for index, span in enumerate(_list(where, value)):
                if not isinstance(span, list) or len(span) != 2:
                    raise FactsError("%s[%d]: expected [low, high]" % (where, index))
                _port("%s[%d]" % (where, index), span[0])
                _port("%s[%d]" % (where, index), span[1])
        else:
            _kind(where, value, (int,))


def _check_persisted(persisted):
    files = _list("persisted.files", persisted.get("files"))
    for index, path in enumerate(files):
        _kind("persisted.files[%d]" % index, path, (str,), nullable=False)
    for key, given in _dict("persisted.keys", persisted.get("keys")).items():
        where = "persisted.keys.%s" % key
        if key not in SHORT_NAMES:
            raise FactsError("%s: not a key portpool_facts reports" % where)
        entry = _dict(where, given)
        if not entry:
            continue
        _kind(where + ".file", entry.get("file"), (str,), nullable=False)
        _kind(where + ".value", entry.get("value"), (str,), nullable=False)
        for index, item in enumerate(_list(where + ".also", entry.get("also"))):
            other = _dict("%s.also[%d]" % (where, index), item, nullable=False)
            _kind("%s.also[%d].file" % (where, index), other.get("file"), (str,), False)
            _kind("%s.also[%d].value" % (where, index), other.get("value"), (str,))
    for key, entry in _dict("persisted.drift", persisted.get("drift")).items():
        if key not in SHORT_NAMES:
            raise FactsError("persisted.drift.%s: not a key portpool_facts reports" % key)
        _dict("persisted.drift.%s" % key, entry, nullable=False)


def _check_sockets(facts):
    sockets = _dict("sockets", facts.get("sockets"))
    for name in ("time_wait", "TCPTimeWaitOverflow"):
        _kind("sockets.%s" % name, sockets.get(name), (int,))
    destinations = _dict("destinations", facts.get("destinations"))
    for index, item in enumerate(_list("destinations.top", destinations.get("top"))):
        where = "destinations.top[%d]" % index
        dest = _dict(where, item, nullable=False)
        _kind(where + ".address", dest.get("address"), (str,), nullable=False)
        _port(where + ".port", dest.get("port"))
        for name in ("total", "time_wait", "established"):
            _kind("%s.%s" % (where, name), dest.get(name), (int,))
        _kind(where + ".utilisation", dest.get("utilisation"), (int, float))
    for index, item in enumerate(_list("listeners_in_range", facts.get("listeners_in_range"))):
        where = "listeners_in_range[%d]" % index
        _port(where + ".port", _dict(where, item, nullable=False).get("port"))


def _check_limits(limits):
    for index, given in enumerate(_list("limits.processes", limits.get("processes"))):
        where = "limits.processes[%d]" % index
        item = _dict(where, given, nullable=False)
        _kind(where + ".name", item.get("name"), (str,))
        _kind(where + ".pid", item.get("pid"), (int,))
        _kind(where + ".open_fds", item.get("open_fds"), (int,))
        soft = _dict(where + ".max_open_files", item.get("max_open_files")).get("soft")
        if soft != "unlimited":
            _kind(where + ".max_open_files.soft", soft, (int,))


def check_facts(facts):
    """Raise FactsError when `facts` does not follow docs/facts.md; return them otherwise."""
    if not isinstance(facts, dict):
        raise FactsError("expected a dict, got %s" % type(facts).__name__)
    _size_check(facts)
    _check_sysctl(_dict("sysctl", facts.get("sysctl"), nullable=False))
    ephemeral = _dict("ephemeral", facts.get("ephemeral"))
    for name in ("low", "high", "size", "reserved_in_range", "usable"):
        _kind("ephemeral.%s" % name, ephemeral.get(name), (int,))
    _check_persisted(_dict("persisted", facts.get("persisted")))
    _check_sockets(facts)
    _check_limits(_dict("limits", facts.get("limits")))
    return facts


# --------------------------------------------------------------------------- context

class HostContext:
    """One host's input to the rules: facts (checked), probe, policy, groups, status.

    Reads only the layout docs/facts.md documents: one accessor per fact the rules use.
    """

    def __init__(self, host, facts=None, probe=None, *, policy=None, groups=(),
                 status="ok", error=None, probe_error=None):
        self.host = host
        self.facts = facts or {}
        self.probe = probe or {}
        self.policy = policy or {}
        self.groups = [group for group in groups if group not in ("all", "ungrouped")]
        self.status = status
        self.error = error
        self.probe_error = probe_error
        # Set by the engine while judging: rule ids that fired, values other findings
        # want (PP015 leaves those alone), and each tried fix's verdict.
        self.before_ids = set()
        self.wants = {}
        self.fix_verdicts = {}

    def with_facts(self, facts):
        """The same host with other facts (a fix applied to a copy)."""
        return HostContext(self.host, facts, self.probe, policy=self.policy,
                           groups=self.groups, status=self.status, error=self.error,
                           probe_error=self.probe_error)

    # Runtime sysctls ---------------------------------------------------------
    def sysctl(self, key):
        """The runtime value from the facts (typed), or None when absent."""
        return (self.facts.get("sysctl") or {}).get(short_name(key))

    def sysctl_int(self, key):
        return as_int(self.sysctl(key))

    def sysctl_text(self, key):
        return to_text(key, self.sysctl(key))

    def port_range(self):
        """(low, high) of the runtime range, or None."""
        value = self.sysctl("ip_local_port_range")
        return (value[0], value[1]) if value else None

    def reserved(self):
        """Merged reserved spans [[low, high], ...]."""
        return merge_spans([list(span) for span in self.sysctl("ip_local_reserved_ports") or []])

    def usable(self):
        """Ports anonymous connect() can use for one destination, or None."""
        return (self.facts.get("ephemeral") or {}).get("usable")

    # Persisted sysctls -------------------------------------------------------
    def persisted_entry(self, key):
        """What wins at boot for a key: {"value", "file", "also": [{"file", "value"}]}.

        None when no file sets it. `also` are the other assignments, in reading order.
        """
        keys = (self.facts.get("persisted") or {}).get("keys") or {}
        entry = keys.get(short_name(key))
        if not entry:
            return None
        also = [{"file": item["file"], "value": item.get("value")}
                for item in entry.get("also") or []]
        return {"value": entry["value"], "file": entry["file"], "also": also}

    def persisted_keys(self):
        """Dotted names (as files write them) of every key some persisted file sets."""
        keys = (self.facts.get("persisted") or {}).get("keys") or {}
        return sorted(dotted_name(name) for name, entry in keys.items() if entry)

    def persisted_drift(self):
        """Dotted names of keys whose runtime value differs from the boot winner."""
        return sorted(dotted_name(name)
                      for name in (self.facts.get("persisted") or {}).get("drift") or {})

    def persisted_files(self):
        return list((self.facts.get("persisted") or {}).get("files") or [])

    def managed_file(self):
        """The sysctl.d file portpool's tune role writes (portpool_tune_file_name)."""
        return "/etc/sysctl.d/" + (self.policy.get("managed_file") or "60-portpool.conf")

    def origin(self, key):
        """Evidence for a value: runtime path and value, and the boot winner."""
        text = "%s = %s (runtime, %s)" % (
            dotted_name(key), show(self.sysctl_text(key)), proc_path(key))
        entry = self.persisted_entry(key)
        if entry:
            text += "; at boot %s from %s" % (show(to_text(key, entry["value"])), entry["file"])
        else:
            text += "; no sysctl file sets it"
        return text

    # Sockets, destinations, listeners, limits ---------------------------------
    def sockets(self):
        return self.facts.get("sockets") or {}

    def tw_overflow(self):
        return self.sockets().get("TCPTimeWaitOverflow")

    def destinations(self):
        return (self.facts.get("destinations") or {}).get("top") or []

    def listeners(self):
        return self.facts.get("listeners_in_range") or []

    def processes(self):
        """[{"name", "pid", "open_fds", "max_open_files"}] (the soft limit, None: unlimited)."""
        out = []
        for item in (self.facts.get("limits") or {}).get("processes") or []:
            soft = (item.get("max_open_files") or {}).get("soft")
            out.append({
                "name": item.get("name"),
                "pid": item.get("pid"),
                "open_fds": item.get("open_fds"),
                "max_open_files": None if soft in (None, "unlimited") else soft,
            })
        return out
