# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read each network namespace's pool from inside it, within count and time bounds.

Sysctls under /proc/sys/net and sock_diag sockets answer for the network
namespace of the process asking, so each namespace is read by a forked child
that setns()-es into it, takes the same snapshot portpool_facts takes of the
host, and writes it back as JSON on a pipe. The parent never changes namespace.
A child past its deadline is killed; the run stops starting children once its
time budget is spent, and says how many it skipped and why.
"""

from __future__ import annotations

import ctypes
import fnmatch
import json
import os
import select
import signal
import time

from ansible.module_utils.portpool_netns_discover import discover
from ansible.module_utils.portpool_netns_names import Namer
from ansible.module_utils.portpool_snapshot import network_snapshot
from ansible.module_utils.portpool_sysctl import NET_KEYS

CLONE_NEWNET = 0x40000000
# A child reading one namespace takes milliseconds; this is for a stuck one.
CHILD_SECONDS = 5.0
# Two children at once: the machines this runs on may have two cores.
PARALLEL = 2
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


def _child(fd, write_end, destinations_top):
    """Runs in the forked child: join the namespace, snapshot, reply, exit."""
    code = 0
    try:
        _setns(fd)
        facts, _runtime, warnings = network_snapshot(
            NET_KEYS, "/proc", "auto", destinations_top)
        reply = {"facts": facts, "warnings": warnings}
    except Exception as exc:  # everything goes back to the parent as a reason
        reply = {"error": "%s: %s" % (type(exc).__name__, exc)}
        code = 1
    try:
        data = json.dumps(reply).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    finally:
        os._exit(code)


def _open_namespace(namespace, proc_root):
    """An fd on the namespace: through a named file, else through a holder pid."""
    paths = [os.path.join(directory, name) for directory, name in namespace.named]
    paths += [os.path.join(proc_root, str(pid), "ns", "net") for pid in namespace.pids]
    last = None
    for path in paths:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            last = exc
    raise last or OSError("no path to the namespace")


def _start(namespace, proc_root, destinations_top):
    fd = _open_namespace(namespace, proc_root)
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for end in (fd, read_end, write_end):
            os.close(end)
        raise
    if pid == 0:
        os.close(read_end)
        _child(fd, write_end, destinations_top)
    os.close(fd)
    os.close(write_end)
    return pid, read_end


def _finish(pid, read_end, chunks, timed_out):
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read_end)
    if timed_out:
        return {"error": "no answer within %.0f s" % CHILD_SECONDS}
    try:
        return json.loads(b"".join(chunks) or b"{}") or {"error": "the reader died"}
    except ValueError as exc:
        return {"error": "unreadable answer: %s" % exc}


def read_all(namespaces, proc_root="/proc", destinations_top=20, budget=10.0):
    """{inode: reply} for each namespace read; the ones past the budget are left out."""
    deadline = time.monotonic() + budget
    queue = list(namespaces)
    running = {}  # read_end -> (namespace, pid, chunks, started)
    replies = {}
    while queue or running:
        while queue and len(running) < PARALLEL and time.monotonic() < deadline:
            namespace = queue.pop(0)
            try:
                pid, read_end = _start(namespace, proc_root, destinations_top)
            except OSError as exc:
                replies[namespace.inode] = {"error": "cannot enter: %s" % (exc.strerror or exc)}
                continue
            running[read_end] = (namespace, pid, [], time.monotonic())
        if not running:
            break
        ready, _w, _x = select.select(list(running), [], [], 0.1)
        now = time.monotonic()
        for read_end in list(running):
            namespace, pid, chunks, started = running[read_end]
            done = timed_out = False
            if read_end in ready:
                data = os.read(read_end, 65536)
                chunks.append(data)
                done = not data or sum(map(len, chunks)) > MAX_REPLY_BYTES
            if not done and now - started > CHILD_SECONDS:
                done = timed_out = True
            if done:
                del running[read_end]
                replies[namespace.inode] = _finish(pid, read_end, chunks, timed_out)
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
