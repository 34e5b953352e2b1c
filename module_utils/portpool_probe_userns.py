# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab namespace: a network namespace, inside a user namespace when not root.

As root, unshare(CLONE_NEWNET) is enough. Without root the process first
becomes root of a new user namespace (unshare(CLONE_NEWUSER | CLONE_NEWNET),
then its own uid and gid mapped to 0): that gives it CAP_NET_ADMIN over the
new network namespace, enough to set its net.* values and use TCP_REPAIR,
and nothing over the host. Both namespaces are anonymous and vanish with the
last process in them, SIGKILL included.
"""

from __future__ import annotations

import ctypes
import functools
import os

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
# Settings that forbid unprivileged user namespaces, read (never written) to
# say which one did.
USERNS_SWITCHES = (
    ("kernel/apparmor_restrict_unprivileged_userns", lambda value: value == "1"),
    ("kernel/unprivileged_userns_clone", lambda value: value == "0"),
    ("user/max_user_namespaces", lambda value: value == "0"),
)


class LabRefused(Exception):
    """The lab namespace cannot be made; the message is one line for people."""


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags):
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(flags)
        return
    if _libc().unshare(flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _write(path, text):
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


def userns_blockers(root="/proc/sys"):
    """Names of the settings that forbid unprivileged user namespaces here."""
    found = []
    for name, forbids in USERNS_SWITCHES:
        try:
            with open(os.path.join(root, name), encoding="ascii") as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if forbids(value):
            found.append("%s=%s" % (name.replace("/", "."), value))
    return found


def enter_lab(refusals):
    """Move the calling (single-threaded) process into the lab namespaces.

    Returns "root" or "user namespace"; raises LabRefused when the kernel (or
    the PORTPOOL_PROBE_REFUSE test hook) says no."""
    if os.geteuid() == 0:
        try:
            _unshare(CLONE_NEWNET)
        except OSError as exc:
            raise LabRefused("cannot create the lab network namespace (unshare(CLONE_NEWNET):"
                             " %s); use mode=host" % exc.strerror) from exc
        return "root"
    uid, gid = os.getuid(), os.getgid()
    try:
        if "userns" in refusals:
            raise OSError(1, "refused by PORTPOOL_PROBE_REFUSE")
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", "0 %d 1\n" % uid)
        _write("/proc/self/gid_map", "0 %d 1\n" % gid)
    except OSError as exc:
        blockers = userns_blockers()
        raise LabRefused(
            "unprivileged user namespaces are refused here (%s%s): run the probe as root"
            " (become: true), or use mode=host"
            % (exc.strerror, "; " + ", ".join(blockers) if blockers else "")) from exc
    return "user namespace"
