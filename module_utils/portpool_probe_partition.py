# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions of the fast, exact hold: chunks, workers, missing ports.

The hold takes the inside of the measured range chunk by chunk (each search
narrowed to one chunk, so it stays short) and leaves the two end ports to a
final pass with the kernel's own search over the whole range. Only the ends
can be out of reach of that search (a same-parity range's search window is
rounded down to an even size), so the final pass makes the count the one an
application gets, and the ports it could not take are the missing ones.
"""

from __future__ import annotations

import math

from .portpool_sysctl import pool_size

# Ports per chunk. Even, so that on kernels whose narrowed search still steps
# by two (before 6.8) the window covers the whole chunk.
CHUNK_PORTS = 512
# Below this many ports one worker is faster than forking several.
PARALLEL_MIN_PORTS = 4096
MAX_PARALLEL = 4

SOCKETS = ("repair", "connect")
PARTITIONS = ("socket", "namespace", "none")
# What PORTPOOL_PROBE_REFUSE may name: the probe acts as if the kernel refused it.
REFUSABLE = ("repair", "port_range_option", "userns")


def parse_refusals(text):
    """The test hook PORTPOOL_PROBE_REFUSE: comma-separated names from REFUSABLE.

    Returns (set, error)."""
    names = {part.strip() for part in (text or "").split(",") if part.strip()}
    unknown = sorted(names - set(REFUSABLE))
    if unknown:
        return None, ("PORTPOOL_PROBE_REFUSE names %s; it takes %s"
                      % (", ".join(unknown), ", ".join(REFUSABLE)))
    return names, None


def split_range(low, high, chunk_ports=CHUNK_PORTS):
    """The hold's chunks and the ports left to the final pass.

    Returns (chunks, ends): chunks cover low+1..high-1 in pieces of
    `chunk_ports`; ends are low and high. A range of one or two ports has no
    inside and goes to the final pass whole.
    """
    if high - low < 2:
        return [], list(range(low, high + 1))
    chunks = [[start, min(start + chunk_ports - 1, high - 1)]
              for start in range(low + 1, high, chunk_ports)]
    return chunks, [low, high]


def chunk_size_for(per_worker):
    """CHUNK_PORTS, or less (still even) when one worker holds fewer ports."""
    return max(2, min(CHUNK_PORTS, per_worker - per_worker % 2))


def chunk_usable(chunk, spans):
    return pool_size(chunk[0], chunk[1], spans)["usable"]


def assign_chunks(chunks, spans, per_worker, parallel):
    """Contiguous groups of chunks, one per worker.

    Enough workers for the descriptors (per_worker ports each), and up to
    `parallel` of them so the searches run on every core. Returns a list of
    lists of chunks (never empty lists).
    """
    sizes = [chunk_usable(chunk, spans) for chunk in chunks]
    total = sum(sizes)
    if not chunks:
        return []
    workers = max(math.ceil(total / max(per_worker, 1)), parallel, 1)
    workers = min(workers, len(chunks))
    share = max(math.ceil(total / workers), 1)
    groups, current, count = [], [], 0
    for chunk, size in zip(chunks, sizes):
        full = count + size > per_worker
        fair = count >= share and len(groups) < workers - 1
        if current and (full or fair):
            groups.append(current)
            current, count = [], 0
        current.append(chunk)
        count += size
    if current:
        groups.append(current)
    return groups


def parallel_workers(usable, cpus):
    """Workers worth running side by side for `usable` ports."""
    if usable < PARALLEL_MIN_PORTS:
        return 1
    return max(1, min(MAX_PARALLEL, cpus or 1))


def kernel_may_skip(low, high, spans):
    """Ports connect()'s own search over [low, high] may never hand out.

    With both ends of the same parity the range has an odd number of ports
    and the search window is one port short (`remaining &= ~1`): a search
    starting at the low end cannot reach the high end, any other start cannot
    reach the low end. So at most one of the two ends (when not reserved) is
    left out; which one depends on where the last searches started.
    """
    if (high - low) % 2 or high - low < 2:
        return []
    reserved = _reserved(spans, (low, high))
    return [port for port in (low, high) if port not in reserved]


def search_never_reaches(low, high, spans):
    """Ports of [low, high] that connect()'s own search never hands out.

    The search window is the range size rounded down to even, and its first
    pass starts on an even offset: in a range of 3 ports the only start is the
    low end and the window is 2 ports, so the high end is never tried. In any
    larger range every port is inside some window (the low end only in the
    window that starts on it).
    """
    if high - low == 2 and high not in _reserved(spans, (high,)):
        return [high]
    return []


def ends_to_hold_directly(missing, low, high, spans):
    """Ends of the range the final pass left out that the search can still reach.

    With both ends of the same parity, the low end is inside only the window
    of a search that starts exactly on it (one search in (ports - 1) / 2), and
    the high end is outside that one window. A fill from empty, as an
    application's, meets that start on the way in most runs (87 of 100 on
    40000-40010); the final pass, which starts with only the ends free, meets
    it rarely. So such an end is held with a search narrowed to it, and the
    count is the one an application usually gets.
    """
    never = set(search_never_reaches(low, high, spans))
    return [port for port in (low, high) if port in missing and port not in never]


def _reserved(spans, ports):
    return {port for port in ports for span_low, span_high in spans
            if span_low <= port <= span_high}


def compact_ports(ports):
    """[1, 2, 3, 7] -> ["1-3", "7"]."""
    out = []
    ordered = sorted(set(ports))
    index = 0
    while index < len(ordered):
        start = end = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == end + 1:
            index += 1
            end = ordered[index]
        out.append(str(start) if start == end else "%d-%d" % (start, end))
        index += 1
    return out


def missing_verdict(missing, low, high, spans):
    """True when the ports left out are ones the kernel's own search may skip:
    none, or one end of a same-parity range."""
    if not missing:
        return True
    return len(missing) == 1 and missing[0] in kernel_may_skip(low, high, spans)
