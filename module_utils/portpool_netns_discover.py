# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the network namespaces on a host, each counted once by its inode.

Two kinds of holder keep a network namespace alive: a bind mount of the
namespace file (`ip netns add` under /run/netns, docker's sandboxes under
/run/docker/netns) and a process (/proc/PID/ns/net). Both point at the same
nsfs inode, so the inode is the identity. Roots are arguments, for tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# Where runtimes bind-mount named network namespaces.
NAMED_DIRS = (
    "/run/netns",            # ip netns, CNI plugins (containerd, cri-o)
    "/var/run/netns",
    "/run/docker/netns",     # docker's sandboxes
    "/var/run/docker/netns",
)
# Holders recorded per namespace: enough to name it, not a process list.
MAX_HOLDERS = 8


@dataclass
class Namespace:
    """One network namespace: its inode and everything found holding it."""

    inode: int
    named: list = field(default_factory=list)     # (directory, file name)
    pids: list = field(default_factory=list)      # first MAX_HOLDERS holder pids
    processes: int = 0                            # every holder pid

    @property
    def ns_id(self):
        return "net:[%d]" % self.inode


def own_namespace(proc_root="/proc"):
    """(st_dev, st_ino) of the caller's network namespace: the host's, for facts."""
    info = os.stat(os.path.join(proc_root, "self", "ns", "net"))
    return info.st_dev, info.st_ino


def _named(found, nsfs_dev, directories, stale):
    for directory in directories:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        real = os.path.realpath(directory)
        for name in names:
            try:
                info = os.stat(os.path.join(directory, name))
            except OSError:
                continue
            if info.st_dev != nsfs_dev:
                # A file left behind with nothing mounted on it: no namespace.
                stale.append(os.path.join(directory, name))
                continue
            entry = found.setdefault(info.st_ino, Namespace(info.st_ino))
            if (real, name) not in entry.named:
                entry.named.append((real, name))


def _held_by_processes(found, proc_root):
    unreadable = 0
    for pid_text in os.listdir(proc_root):
        if not pid_text.isdigit():
            continue
        try:
            info = os.stat(os.path.join(proc_root, pid_text, "ns", "net"))
        except OSError:
            # Gone, or not ours to look at (another user's process, unless root).
            unreadable += 1
            continue
        entry = found.setdefault(info.st_ino, Namespace(info.st_ino))
        entry.processes += 1
        if len(entry.pids) < MAX_HOLDERS:
            entry.pids.append(int(pid_text))
    return unreadable


def discover(proc_root="/proc", directories=NAMED_DIRS):
    """Every network namespace but the caller's, sorted by inode.

    Returns (namespaces, notes): notes counts what could not be looked at.
    Symlinked directories (/var/run -> /run) are read once.
    """
    own_dev, own_ino = own_namespace(proc_root)
    found = {}
    stale = []
    seen_dirs = []
    for directory in directories:
        real = os.path.realpath(directory)
        if real not in seen_dirs:
            seen_dirs.append(real)
    _named(found, own_dev, seen_dirs, stale)
    unreadable = _held_by_processes(found, proc_root)
    found.pop(own_ino, None)
    notes = {"stale_files": stale, "unreadable_processes": unreadable}
    return [found[inode] for inode in sorted(found)], notes
