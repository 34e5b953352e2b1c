# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read each network namespace's pool from inside it, within count and time bounds.

Sysctls under /proc/sys/net and sock_diag sockets answer for the network
namespace of the process asking, so the namespaces are read by one forked child
that setns()-es into each in turn, takes the same snapshot portpool_facts takes
of the host, and writes it back as one JSON line per namespace on a pipe (a
fork per namespace cost more than the reading). The parent never changes
namespace. A child that gives no line for CHILD_SECONDS is killed and a new one
goes on with the rest; once the time budget is spent the rest are skipped, and
the fact says how many and why.
"""

from __future__ import annotations

import ctypes
import fnmatch
import json
import os
import select
import signal
import time

from .portpool_netns_discover import discover
from .portpool_netns_names import Namer
from .portpool_snapshot import network_snapshot
from .portpool_sysctl import NET_KEYS

CLONE_NEWNET = 0x40000000
# A child reading one namespace takes milliseconds; this is for a stuck one.
CHILD_SECONDS = 5.0
MAX_REPLY_BYTES = 4 << 20


def namespaces_argument_spec():
    return {
        "enabled": {"type": "bool", "default": True},
        "max_count": {"type": "int", "default": 64},
        "seconds": {"type": "float", "default": 10.0},
        "match": {"type": "list", "elements": "str", "default": []},
    }


def _setns(fd):
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _walker(paths, write_end, destinations_top):
    """Runs in the forked child: for each namespace, join it, snapshot, one line out."""
    with os.fdopen(write_end, "w", encoding="utf-8") as out:
        for index, candidates in enumerate(paths):
            try:
                fd = _open_first(candidates)
                try:
                    _setns(fd)
                finally:
                    os.close(fd)
                facts, _runtime, warnings = network_snapshot(
                    NET_KEYS, "/proc", "auto", destinations_top)
                reply = {"facts": facts, "warnings": warnings}
            except OSError as exc:
                reply = {"error": "cannot enter: %s" % (exc.strerror or exc)}
            except Exception as exc:  # everything goes back to the parent as a reason
                reply = {"error": "%s: %s" % (type(exc).__name__, exc)}
            out.write(json.dumps([index, reply]) + "\n")
            out.flush()
    os._exit(0)


def run_inside(path, func, seconds=CHILD_SECONDS):
    """func()'s JSON-able answer, computed in a child that joined the network
    namespace at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            _setns(fd)
            reply = {"value": func()}
        except Exception as exc:  # everything goes back to the parent as a reason
            reply = {"error": "%s: %s" % (type(exc).__name__, exc)}
            code = 1
        try:
            os.write(write_end, json.dumps(reply).encode())
        finally:
            os._exit(code)
    os.close(fd)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _w, _x = select.select([read_end], [], [], 0.1)
            if ready:
                data = os.read(read_end, 65536)
                if not data:
                    break
                chunks.append(data)
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise OSError("no answer from inside %s" % path) from None
    if "error" in reply:
        raise OSError("inside %s: %s" % (path, reply["error"]))
    return reply["value"]


def _paths(namespace, proc_root):
    """Files that lead to a namespace: its named files, then its holders' ns links."""
    paths = [os.path.join(directory, name) for directory, name in namespace.named]
    return paths + [os.path.join(proc_root, str(pid), "ns", "net") for pid in namespace.pids]


def _open_first(paths):
    last = None
    for path in paths:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            last = exc
    raise last or OSError("no path to the namespace")


def _spawn(paths, destinations_top):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _walker(paths, write_end, destinations_top)
    os.close(write_end)
    return pid, read_end


def read_all(namespaces, proc_root="/proc", destinations_top=20, budget=10.0):
    """{inode: reply} for each namespace read; the ones past the budget are left out."""
    deadline = time.monotonic() + budget
    pending = list(namespaces)
    replies = {}
    while pending and time.monotonic() < deadline:
        pid, read_end = _spawn([_paths(ns, proc_root) for ns in pending], destinations_top)
        done, buffer, last = 0, b"", time.monotonic()
        try:
            while done < len(pending):
                now = time.monotonic()
                if now >= deadline or now - last > CHILD_SECONDS:
                    break
                ready, _w, _x = select.select([read_end], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(read_end, 1 << 16)
                if not data:
                    break
                buffer += data
                if len(buffer) > MAX_REPLY_BYTES:
                    break
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        index, reply = json.loads(line)
                        replies[pending[index].inode] = reply
                    except (ValueError, TypeError, IndexError):
                        continue
                    done = max(done, index + 1)
                    last = time.monotonic()
        finally:
            if done < len(pending):
                os.kill(pid, signal.SIGKILL)
            os.close(read_end)
            os.waitpid(pid, 0)
        if done < len(pending) and time.monotonic() < deadline:
            # The one in hand did not answer: report it and go on with the rest.
            replies[pending[done].inode] = {
                "error": "no answer within %.0f s" % CHILD_SECONDS}
            done += 1
        pending = pending[done:]
    return replies


def _matches(described, patterns):
    if not patterns:
        return True
    names = [described["name"], described["netns"]]
    if described["container"]:
        names += [described["container"]["name"], described["container"]["id"]]
    if described["pod"]:
        names += ["%s/%s" % (described["pod"]["namespace"], described["pod"]["name"])]
    return any(fnmatch.fnmatchcase(name, pattern)
               for name in names if name for pattern in patterns)


def namespace_facts(options, destinations_top=20, proc_root="/proc", namer=None,
                    directories=None):
    """The `namespaces` fact: every other network namespace, named and read, and bounds.

    Returns (fact, warnings). Without root nothing is entered: the count is
    still given, with the reason.
    """
    started = time.monotonic()
    kwargs = {"directories": directories} if directories is not None else {}
    found, notes = discover(proc_root, **kwargs)
    namer = namer or Namer(proc_root)
    described = [(namespace, namer.describe(namespace)) for namespace in found]
    chosen = [(ns, info) for ns, info in described if _matches(info, options["match"])]
    skipped = {"filtered": len(described) - len(chosen), "limit": 0, "time": 0, "errors": 0}
    if len(chosen) > options["max_count"]:
        skipped["limit"] = len(chosen) - options["max_count"]
        chosen = chosen[:options["max_count"]]
    reasons = []
    if os.geteuid() != 0 and chosen:
        reasons.append("not root: %d namespaces found but not entered" % len(chosen))
        replies = {ns.inode: None for ns, _info in chosen}
    else:
        replies = read_all([ns for ns, _info in chosen], proc_root, destinations_top,
                           options["seconds"])
    items = []
    warnings = []
    for namespace, info in chosen:
        if namespace.inode not in replies:
            skipped["time"] += 1
            continue
        reply = replies[namespace.inode] or {}
        item = {"id": namespace.ns_id, "inode": namespace.inode, **info,
                "processes": namespace.processes, "error": reply.get("error")}
        item.update(reply.get("facts") or {
            "sysctl": None, "ephemeral": None, "sockets": None, "destinations": None,
            "listeners_in_range": None})
        if item["error"]:
            skipped["errors"] += 1
        warnings.extend("namespace %s: %s" % (info["name"], w)
                        for w in reply.get("warnings", []))
        items.append(item)
    if skipped["time"]:
        reasons.append("time budget of %.0f s spent: %d namespaces not read"
                       % (options["seconds"], skipped["time"]))
    if skipped["limit"]:
        reasons.append("max_count %d reached: %d namespaces not read"
                       % (options["max_count"], skipped["limit"]))
    fact = {
        "found": len(found),
        "inspected": sum(1 for item in items if item["sysctl"] is not None),
        "skipped": skipped,
        "reasons": reasons,
        "stale_files": notes["stale_files"],
        "seconds": round(time.monotonic() - started, 3),
        "items": items,
    }
    return fact, warnings
