# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Descriptor limits of processes and systemd units: a connection is a descriptor.

Pure parsers over /proc text, and lookups that take the /proc and cgroup roots
as arguments so tests point them at fixture trees.
"""

from __future__ import annotations

import os
import resource

UNIT_SUFFIXES = (".service", ".scope", ".socket", ".slice")
COMM_LEN = 15  # TASK_COMM_LEN - 1: /proc/PID/comm is truncated to this


def own_nofile():
    """This process's RLIMIT_NOFILE as {soft, hard}; "unlimited" for RLIM_INFINITY."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": _limit(soft), "hard": _limit(hard)}


def _limit(value):
    return "unlimited" if value == resource.RLIM_INFINITY else int(value)


def parse_limits(text):
    """`Max open files` from /proc/PID/limits text as {soft, hard}, or None when absent."""
    for line in text.splitlines():
        if line.startswith("Max open files"):
            fields = line[len("Max open files"):].split()
            if len(fields) < 2:
                return None
            return {"soft": _parse_limit_field(fields[0]), "hard": _parse_limit_field(fields[1])}
    return None


def _parse_limit_field(text):
    if text == "unlimited":
        return "unlimited"
    try:
        return int(text)
    except ValueError:
        return None


def is_unit(name):
    """True when `name` names a systemd unit rather than a process (comm) name."""
    return name.endswith(UNIT_SUFFIXES)


def pids_by_comm(name, proc="/proc"):
    """Sorted pids whose /proc/PID/comm equals `name` (compared as the kernel truncates it)."""
    wanted = name[:COMM_LEN]
    pids = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "comm"), encoding="utf-8",
                      errors="replace") as handle:
                comm = handle.read().rstrip("\n")
        except OSError:
            continue  # the process exited, or is hidden from us
        if comm == wanted:
            pids.append(int(entry))
    return sorted(pids)


def parse_ppid(stat_text):
    """Parent pid from /proc/PID/stat text (the comm field may contain spaces and parens)."""
    try:
        return int(stat_text[stat_text.rindex(")") + 2:].split()[1])
    except (ValueError, IndexError):
        return None


def unit_cgroup_pids(unit, cgroup_root="/sys/fs/cgroup"):
    """Pids in a system unit's cgroup (cgroup v2, then the v1 systemd hierarchy)."""
    for path in (
            os.path.join(cgroup_root, "system.slice", unit, "cgroup.procs"),
            os.path.join(cgroup_root, "systemd", "system.slice", unit, "cgroup.procs")):
        try:
            with open(path, encoding="ascii") as handle:
                return sorted(int(line) for line in handle if line.strip().isdigit())
        except OSError:
            continue
    return None


def main_pid_from_cgroup(pids, proc="/proc"):
    """The unit's main process: the pid in the cgroup whose parent is outside it."""
    members = set(pids)
    for pid in sorted(pids):
        try:
            with open(os.path.join(proc, str(pid), "stat"), encoding="utf-8",
                      errors="replace") as handle:
                ppid = parse_ppid(handle.read())
        except OSError:
            continue
        if ppid not in members:
            return pid
    return None


def count_fds(pid, proc="/proc"):
    """Open descriptors of `pid`, or None when /proc/PID/fd cannot be read."""
    try:
        return len(os.listdir(os.path.join(proc, str(pid), "fd")))
    except OSError:
        return None


def read_limits(pid, proc="/proc"):
    """`Max open files` of `pid` as {soft, hard}, or None when unreadable."""
    try:
        with open(os.path.join(proc, str(pid), "limits"), encoding="ascii",
                  errors="replace") as handle:
            return parse_limits(handle.read())
    except OSError:
        return None


def describe_pid(name, kind, pid, proc="/proc"):
    """One `limits.processes` entry; warnings for what could not be read."""
    warnings = []
    entry = {"name": name, "kind": kind, "pid": pid,
             "open_fds": None, "max_open_files": None}
    if pid is None:
        warnings.append("limits: no running process found for %s %r" % (kind, name))
        return entry, warnings
    entry["open_fds"] = count_fds(pid, proc)
    if entry["open_fds"] is None:
        warnings.append("limits: cannot list %s/%d/fd (%s %r)" % (proc, pid, kind, name))
    entry["max_open_files"] = read_limits(pid, proc)
    if entry["max_open_files"] is None:
        warnings.append("limits: cannot read %s/%d/limits (%s %r)" % (proc, pid, kind, name))
    return entry, warnings
