# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sockets of the fast hold: repair mode, narrowed searches, the final pass.

A socket in repair mode (TCP_REPAIR, Linux 3.5, CAP_NET_ADMIN over the
namespace) still gets its source port from connect()'s normal search, then
goes ESTABLISHED without sending a packet: no listener, no handshake, and
close() leaves no TIME_WAIT. IP_LOCAL_PORT_RANGE (Linux 6.3) narrows one
socket's search to a chunk; where the kernel refuses it, the lab's own
ip_local_port_range is narrowed instead, one chunk at a time.
"""

from __future__ import annotations

import _socket
import errno
import socket
import struct
import time

TCP_REPAIR = 19
IP_LOCAL_PORT_RANGE = 51
RANGE_SYSCTL = "/proc/sys/net/ipv4/ip_local_port_range"


def pack_range(low, high):
    """The option's value: (high << 16) | low, as an unsigned 32-bit int."""
    return struct.pack("I", (high << 16) | low)


def _refused(option_setter):
    try:
        option_setter()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def choose_method(refusals, namespace_ok):
    """Which sockets and which partition this kernel allows, and why not others.

    Tries each option on a throwaway socket: what the kernel does decides, not
    its version. Returns {"sockets", "partition", "notes"}.
    """
    notes = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if "repair" in refusals:
            why = "refused by PORTPOOL_PROBE_REFUSE"
        else:
            why = _refused(lambda: sock.setsockopt(socket.SOL_TCP, TCP_REPAIR, 1))
        sockets = "repair" if why is None else "connect"
        if why:
            notes.append("TCP_REPAIR refused (%s): holding real connections instead" % why)
        if "port_range_option" in refusals:
            why = "refused by PORTPOOL_PROBE_REFUSE"
        else:
            why = _refused(lambda: sock.setsockopt(socket.IPPROTO_IP, IP_LOCAL_PORT_RANGE,
                                                   pack_range(1024, 1025)))
    if why is None:
        partition = "socket"
    elif namespace_ok:
        partition = "namespace"
        notes.append("IP_LOCAL_PORT_RANGE refused (%s): narrowing the lab's own range"
                     " chunk by chunk instead" % why)
    else:
        partition = "none"
        notes.append("IP_LOCAL_PORT_RANGE refused (%s): one search over the whole range"
                     % why)
    return {"sockets": sockets, "partition": partition, "notes": notes}


def set_lab_range(low, high, path=RANGE_SYSCTL):
    with open(path, "w", encoding="ascii") as handle:
        handle.write("%d %d\n" % (low, high))


def connect_one(destination, repair, port_range):
    """One socket connected with the kernel's search; returns (sock, errno)."""
    sock = _socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if repair:
            sock.setsockopt(socket.SOL_TCP, TCP_REPAIR, 1)
        if port_range is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_LOCAL_PORT_RANGE, port_range)
    except OSError as exc:
        sock.close()
        return None, exc.errno
    code = sock.connect_ex(destination)
    if code:
        sock.close()
        return None, code
    return sock, 0


def fill(destination, held, quota, deadline, *, repair, port_range=None):
    """Connect until the search fails, `quota` sockets are held, or the deadline.

    Appends to `held`; returns the reason: EADDRNOTAVAIL, quota, timeout or
    the errno name of another failure (EMFILE...)."""
    append = held.append
    monotonic = time.monotonic
    count = 0
    while count < quota:
        try:
            sock, code = connect_one(destination, repair, port_range)
        except OSError as exc:  # socket() itself: EMFILE, ENFILE
            code = exc.errno
        if code:
            return errno.errorcode.get(code, str(code))
        append(sock)
        count += 1
        if not count & 255 and monotonic() > deadline:
            return "timeout"
    return "quota"


def local_ports(sockets):
    return [sock.getsockname()[1] for sock in sockets]


def fill_chunks(destination, chunks, quota, deadline, method):
    """A worker's share of the hold: every chunk in turn, each until its
    narrowed search fails.

    Returns (held, report). The report has `reason` (why the worker stopped:
    done, quota, timeout or an errno name) and `short`: for each chunk that
    gave fewer ports than it has usable, the ports it did give, so the session
    can name the missing ones exactly."""
    held = []
    short = []
    repair = method["sockets"] == "repair"
    reason = "done"
    for low, high, usable in chunks:
        if method["partition"] == "namespace":
            set_lab_range(low, high)
            port_range = None
        else:
            port_range = pack_range(low, high)
        start = len(held)
        why = fill(destination, held, quota - start, deadline, repair=repair,
                   port_range=port_range)
        got = len(held) - start
        if why != "EADDRNOTAVAIL":
            reason = why
        if got < usable and why == "EADDRNOTAVAIL":
            short.append([low, high, local_ports(held[start:])])
        if reason != "done":
            break
    return held, {"reason": reason, "short": short}
