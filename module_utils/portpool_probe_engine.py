# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The moving parts of portpool_probe: processes, the lab namespace, sockets.

Process tree, and why nothing outlives the module:

    module process (M)
      └─ session child (S): own process group, PR_SET_PDEATHSIG=SIGKILL,
         │  in lab mode unshare(CLONE_NEWNET): the lab namespace is S's own
         │  and anonymous, so it disappears with the last process in it
         ├─ hold workers (W...): PR_SET_PDEATHSIG=SIGKILL, same process group
         └─ churn worker: same

M kills S's process group on every exit path (normal end, timeout, exception,
SIGTERM); if M itself is SIGKILLed, S gets SIGKILL from the kernel (parent
death signal) and the workers in turn from S's death. Every socket lives in one
of those processes, so the kernel closes them all.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import time

from .portpool_probe_model import (
    FD_RESERVE,
    LAB_PREFIX_MASK,
    LAB_SOURCE,
    combine_stop_reasons,
    lab_sysctl_writes,
    plan_workers,
    sysctl_equal,
    worker_quotas,
)
from .portpool_probe_partition import (
    assign_chunks,
    chunk_size_for,
    chunk_usable,
    ends_to_hold_directly,
    parallel_workers,
    split_range,
)
from .portpool_probe_repair import (
    choose_method,
    connect_one,
    fill,
    fill_chunks,
    local_ports,
    pack_range,
    set_lab_range,
)
from .portpool_probe_userns import LabRefused, enter_lab
from .portpool_sysctl import read_sysctl, sysctl_path

PR_SET_PDEATHSIG = 1
IP_BIND_ADDRESS_NO_PORT = 24
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
IFF_UP = 0x1
LINGER_RESET = struct.pack("ii", 1, 0)
# The hold's listener accepts in batches, this many seconds apart.
HOLD_ACCEPT_PAUSE = 0.005
# Seconds M allows the session beyond `timeout` + churn for set-up and teardown.
SESSION_GRACE = 30
# How often M checks that the controller is still there.
CHANNEL_CHECK_SECONDS = 0.5


class ProbeError(Exception):
    """A failure the module reports with fail_json (message meant for people)."""


class Terminated(Exception):
    """Raised in the module process by its SIGTERM handler."""


# Descriptors of the session that its workers must not keep (the result pipe).
_SESSION_FDS = []


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent_pid):
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if
    the parent is already gone (the race between fork and prctl)."""
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def _ifreq_flags(name, flags=0):
    return struct.pack("16sh22x", name.encode(), flags)


def _ifreq_addr(name, address):
    return struct.pack("16sH2s4s16x", name.encode(), socket.AF_INET, b"\0\0",
                       socket.inet_aton(address))


def setup_lab_interfaces():
    """Bring lo up and put LAB_SOURCE/15 on it (label lo:pp).

    On lo a prefix route is of type local, so every 198.18.0.0/15 address is a
    local destination reached from LAB_SOURCE, and none of them is loopback
    for tcp_tw_reuse=2: they behave like remote peers. Done with ioctls so the
    target needs no iproute2.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq_flags("lo")))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq_flags("lo", flags | IFF_UP))
        fcntl.ioctl(sock, SIOCSIFADDR, _ifreq_addr("lo:pp", LAB_SOURCE))
        fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq_addr("lo:pp", LAB_PREFIX_MASK))


def write_sysctl(name, value, root="/proc/sys"):
    """Write a net.* sysctl of the calling process's namespace and read it back."""
    if not name.startswith("net."):
        raise ProbeError("refusing to write %s: only net.* sysctls are per namespace" % name)
    path = sysctl_path(name, root)
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value if value else "\n")
    except OSError as exc:
        raise ProbeError("cannot set %s=%r in the lab namespace: %s"
                         % (name, value, exc.strerror)) from exc
    actual = read_sysctl(name, root)
    if not sysctl_equal(name, value, actual):
        raise ProbeError("%s reads back %r after writing %r in the lab namespace"
                         % (name, actual, value))


def configure_lab(plan, root="/proc/sys"):
    """Copy the host's settings (already read by the module) into the lab."""
    lab_unprivileged = int(read_sysctl("net.ipv4.ip_unprivileged_port_start", root))
    has_delay = read_sysctl("net.ipv4.tcp_tw_reuse_delay", root) is not None
    has_somaxconn = read_sysctl("net.core.somaxconn", root) is not None
    for name, value in lab_sysctl_writes(plan["settings"], plan["measured_range"],
                                         lab_unprivileged, has_delay, has_somaxconn):
        write_sysctl(name, value, root)


def raise_fd_limit():
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (never beyond)
    and return the limit every worker will run with."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard not in (resource.RLIM_INFINITY, soft):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def netstat_counter(name, path="/proc/net/netstat"):
    """A TcpExt counter of the calling process's namespace (None if absent)."""
    try:
        with open(path, encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for header, values in zip(lines[::2], lines[1::2]):
        keys = header.split()
        if keys and keys[0] == "TcpExt:" and name in keys:
            return int(values.split()[keys.index(name)])
    return None


def count_port_sockets(port, paths=("/proc/net/tcp", "/proc/net/tcp6")):
    """Sockets (not TIME_WAIT) with `port` at either end, in this namespace."""
    wanted = ":%04X" % port
    count = 0
    for path in paths:
        try:
            with open(path, encoding="ascii") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] != "06" and (
                            fields[1].endswith(wanted) or fields[2].endswith(wanted)):
                        count += 1
        except OSError:
            continue
    return count


def open_listeners(addresses, candidates):
    """Bind one listener per address on the first candidate port free on all."""
    last = None
    for port in candidates:
        sockets = []
        try:
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.listen(65535)
                sock.setblocking(False)
            return sockets, port
        except OSError as exc:
            last = exc
            for sock in sockets:
                sock.close()
    raise ProbeError("no port for the probe's listener: %s" % last)


class Acceptor:
    """The probe's listener side: accept and close, optionally after a delay.

    During the hold the server closes at once (clients sit in CLOSE_WAIT and
    keep their port). During churn it closes a little later so that the client
    always closes first and the TIME_WAIT lands on the client's 4-tuple.
    """

    def __init__(self, listeners, close_delay=0.0):
        self.listeners = listeners
        self.close_delay = close_delay
        self.pending = []
        self.accepted = 0

    def drain(self):
        now = time.monotonic()
        for listener in self.listeners:
            accept = listener._accept
            while True:
                try:
                    fd, _peer = accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ECONNABORTED):
                        break
                    raise
                self.accepted += 1
                if self.close_delay:
                    self.pending.append((now, fd))
                else:
                    os.close(fd)
        if self.pending:
            limit = now - self.close_delay
            keep = 0
            for stamp, fd in self.pending:
                if stamp > limit:
                    break
                os.close(fd)
                keep += 1
            del self.pending[:keep]

    def close_all(self):
        for _accepted_at, fd in self.pending:
            os.close(fd)
        self.pending = []


def count_alive(sockets):
    """How many held sockets still own their port (no pending reset).

    A connection the peer reset while held gives its port back to the pool,
    so counting what connect() returned would overstate the pool. A reset
    leaves ECONNRESET (EPIPE in CLOSE_WAIT) in SO_ERROR.
    """
    alive = 0
    level, option = socket.SOL_SOCKET, socket.SO_ERROR
    for sock in sockets:
        if not sock.getsockopt(level, option):
            alive += 1
    return alive


def close_all(sockets):
    for sock in sockets:
        sock.close()


def release(sockets):
    """Close held sockets with a reset: no TIME_WAIT is left behind."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.close()


def churn_loop(destination, seconds, verdict_after, fail_pause=0.002):
    """Connect and close, client first, for `seconds`; count what happened.

    Stops early once reuse is decided: a success after the first failure (a
    TIME_WAIT 4-tuple was taken over), or `verdict_after` seconds of failures
    (longer than the reuse delay: no reuse)."""
    new_socket = socket.socket
    monotonic = time.monotonic
    start = monotonic()
    end = start + seconds
    ok = failures = ok_after = 0
    before = first_at = None
    other = {}
    while True:
        now = monotonic()
        if now >= end:
            break
        sock = new_socket(socket.AF_INET, socket.SOCK_STREAM)
        code = sock.connect_ex(destination)
        sock.close()
        if not code:
            ok += 1
            if first_at is not None:
                ok_after += 1
                break
            continue
        failures += 1
        if code == errno.EADDRNOTAVAIL:
            if first_at is None:
                before = ok
                first_at = now - start
            elif now - start - first_at >= verdict_after:
                break
        else:
            name = errno.errorcode.get(code, str(code))
            other[name] = other.get(name, 0) + 1
        time.sleep(fail_pause)
    return {
        "ok": ok,
        "failures": failures,
        "before_first_failure": before,
        "first_failure_at": first_at,
        "ok_after_failure": ok_after,
        "seconds": monotonic() - start,
        "other_errors": other,
    }


def _write_json(fd, payload):
    data = (json.dumps(payload) + "\n").encode()
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _fork_worker(session_pid, body, close_fds):
    """Fork a worker that dies with the session; body(report_fd, control_fd)."""
    report_r, report_w = os.pipe()
    control_r, control_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # worker
        code = 0
        try:
            die_with_parent(session_pid)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.close(report_r)
            os.close(control_w)
            for fd in list(close_fds) + _SESSION_FDS:
                os.close(fd)
            body(report_w, control_r)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(report_w)
    os.close(control_r)
    return {"pid": pid, "report": report_r, "control": control_w, "buffer": b"",
            "result": None}


def _poll(fds, timeout):
    """Readable (or hung-up) descriptors among fds; poll() has no FD_SETSIZE limit."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _events in poller.poll(max(0, int(timeout * 1000)))]


def _wait_reports(workers, acceptor, deadline, pause=0.0):
    """Run the listener until every worker has reported (or the deadline).

    With `pause`, the listener sleeps that long after each round of accepts, so
    it takes connections in batches instead of waking up for every one (the
    accept queue holds them meanwhile)."""
    by_fd = {worker["report"]: worker for worker in workers}
    listen_fds = [sock.fileno() for sock in acceptor.listeners]
    while any(worker["result"] is None for worker in by_fd.values()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProbeError("workers did not report before the deadline")
        open_reports = [fd for fd, worker in by_fd.items() if worker["result"] is None]
        timeout = min(remaining, 0.02 if acceptor.pending else 1.0)
        ready = _poll(listen_fds + open_reports, timeout)
        acceptor.drain()
        if pause:
            time.sleep(pause)
        for fd in ready:
            if fd not in by_fd:
                continue
            worker = by_fd[fd]
            chunk = os.read(fd, 65536)
            worker["buffer"] += chunk
            if b"\n" in worker["buffer"]:
                worker["result"] = json.loads(worker["buffer"].split(b"\n", 1)[0])
            elif not chunk:
                raise ProbeError("a probe worker (pid %d) died without reporting"
                                 % worker["pid"])


def _reap(workers, deadline):
    for worker in workers:
        for fd in (worker["report"], worker["control"]):
            with contextlib.suppress(OSError):
                os.close(fd)
        worker["report"] = worker["control"] = -1
    for worker in workers:
        pid = worker.get("pid")
        if not pid:
            continue
        while True:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        worker["pid"] = None


def _kill_workers(workers):
    for worker in workers:
        if worker.get("pid"):
            try:
                os.kill(worker["pid"], signal.SIGKILL)
                os.waitpid(worker["pid"], 0)
            except OSError:
                pass
            worker["pid"] = None
        for key in ("report", "control"):
            if worker.get(key, -1) >= 0:
                with contextlib.suppress(OSError):
                    os.close(worker[key])
                worker[key] = -1


def _hold_body(fill_share, release_held):
    """A hold worker's body: take its share, report, wait for release."""
    def body(report_fd, control_fd):
        gc.disable()  # tens of thousands of socket objects, no cycles among them
        held, report = fill_share()
        report.update({"count": count_alive(held), "opened": len(held),
                       "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
        _write_json(report_fd, report)
        os.read(control_fd, 1)  # blocks until the session releases us
        release_held(held)
    return body


def _release_for(method):
    # Repair-mode sockets close without a packet and without TIME_WAIT.
    return close_all if method["sockets"] == "repair" else release


def run_hold(plan, method, listening, limits, workers_out):
    """Exhaust the pool to the hold destination from worker processes.

    Partitioned (method["partition"] socket or namespace): workers take the
    inside of the range chunk by chunk, then the session's final pass takes
    what the kernel's own search over the whole range still hands out.
    Otherwise every worker searches the whole range. `limits` is
    (fd_limit, deadline)."""
    if method["partition"] == "none":
        return _run_plain_hold(plan, method, listening, limits, workers_out)
    listeners, port = listening
    fd_limit, deadline = limits
    session_pid = os.getpid()
    hold_addr = (plan["destinations"]["hold"], port)
    low, high = plan["measured_range"]
    spans = plan["reserved_spans"]
    per_worker = max(1, fd_limit - FD_RESERVE)
    chunks, ends = split_range(low, high, chunk_size_for(per_worker))
    sequential = method["partition"] == "namespace"
    parallel = 1 if sequential else parallel_workers(plan["measured_usable"], os.cpu_count())
    groups = assign_chunks(chunks, spans, per_worker, parallel)
    quotas = []
    left = plan["cap"]
    for group in groups:
        # A quota only where the cap cuts into this group: a worker that
        # fills every chunk must still see each chunk's search fail.
        usable = sum(chunk_usable(chunk, spans) for chunk in group)
        # (+1: room for the connect() that must fail to close the last chunk).
        quotas.append(per_worker + 1 if left is None or left > usable else left)
        if left is not None:
            left = max(0, left - usable)
    listen_fds = [sock.fileno() for sock in listeners]
    acceptor = Acceptor(listeners)
    release_held = _release_for(method)

    def fill_share_for(group, quota):
        share = [[a, b, chunk_usable([a, b], spans)] for a, b in group]
        return lambda: fill_chunks(hold_addr, share, quota, deadline, method)

    start = time.monotonic()
    for group, quota in zip(groups, quotas):
        if quota <= 0:
            continue
        worker = _fork_worker(session_pid, _hold_body(fill_share_for(group, quota),
                                                      release_held), listen_fds)
        workers_out.append(worker)
        if sequential:  # one namespace-wide range at a time
            _wait_reports([worker], acceptor, deadline + 10, pause=HOLD_ACCEPT_PAUSE)
    _wait_reports(workers_out, acceptor, deadline + 10, pause=HOLD_ACCEPT_PAUSE)
    if sequential:
        set_lab_range(low, high)
    results = [worker["result"] for worker in workers_out]
    reasons = [result["reason"] for result in results]
    established = sum(result["count"] for result in results)
    final = []
    final_reason = "cap"
    left = None if plan["cap"] is None else plan["cap"] - established
    if all(reason == "done" for reason in reasons) and (left is None or left > 0):
        # The kernel's own search over the whole range: what is left of the
        # chunks (nothing, normally) and the two ends.
        room = max(1, fd_limit - FD_RESERVE - len(listeners))
        final_reason = fill(hold_addr, final, room if left is None else min(room, left),
                            deadline, repair=method["sockets"] == "repair")
        if final_reason == "quota" and left is not None and len(final) >= left:
            final_reason = "cap"
    final_pass = len(final)
    missing = None
    direct = []
    if final_reason == "EADDRNOTAVAIL":
        missing = missing_ports((low, high), spans, results, ends, local_ports(final))
        reachable = ends_to_hold_directly(missing, low, high, spans)
        if left is not None:
            reachable = reachable[:max(0, left - len(final))]
        direct = hold_ends_directly(hold_addr, reachable, method, (low, high))
        final.extend(sock for _port, sock in direct)
        held_directly = {port for port, _sock in direct}
        missing = [port for port in missing if port not in held_directly]
    acceptor.drain()
    final_alive = count_alive(final)
    established += final_alive
    worker_reasons = [*reasons, "final:" + final_reason]
    stop = [final_reason] + [r for r in reasons if r != "done"]
    hold = {
        "established": established,
        "lost": sum(r["opened"] - r["count"] for r in results) + len(final) - final_alive,
        "stopped_by": combine_stop_reasons(stop, established, plan["cap"]),
        "worker_reasons": worker_reasons,
        "seconds": time.monotonic() - start,
        "workers": len(workers_out),
        "fd_limit_per_process": fd_limit,
        "final_pass": final_pass,
        "ends_held_directly": sorted(port for port, _sock in direct),
        "workers_peak_rss_kb": sum(r.get("rss_kb", 0) for r in results),
        "missing": None,
    }
    if hold["stopped_by"] == "EADDRNOTAVAIL":
        hold["missing"] = missing
    return acceptor, hold, lambda: release_held(final)


def hold_ends_directly(hold_addr, ports, method, measured):
    """[(port, socket)] for each end taken with a search narrowed to that port
    (the socket's own range, or the lab's range for that one connect)."""
    held = []
    repair = method["sockets"] == "repair"
    for port in ports:
        if method["partition"] == "socket":
            sock, _code = connect_one(hold_addr, repair, pack_range(port, port))
        else:
            try:
                set_lab_range(port, port)
            except OSError:  # the lab refused a one-port range: the end stays missing
                continue
            try:
                sock, _code = connect_one(hold_addr, repair, None)
            finally:
                set_lab_range(*measured)
        if sock is not None and sock.getsockname()[1] == port:
            held.append((port, sock))
        elif sock is not None:
            sock.close()
    return held


def missing_ports(measured, spans, results, ends, final_ports):
    """Usable ports of [low, high] no socket held: the short chunks' gaps and
    the ends, minus what the final pass took."""
    low, high = measured
    reserved = set()
    for span_low, span_high in spans:
        reserved.update(range(max(span_low, low), min(span_high, high) + 1))
    missing = {port for port in ends if port not in reserved}
    for result in results:
        for chunk_low, chunk_high, got in result.get("short", []):
            missing.update(set(range(chunk_low, chunk_high + 1)) - reserved - set(got))
    return sorted(missing - set(final_ports))


def _run_plain_hold(plan, method, listening, limits, workers_out):
    """Every worker searches the whole range (no way to narrow a search)."""
    listeners, port = listening
    fd_limit, deadline = limits
    session_pid = os.getpid()
    hold_addr = (plan["destinations"]["hold"], port)
    layout = plan_workers(plan["target"], fd_limit)
    quotas = worker_quotas(layout["workers"], layout["per_worker"], plan["cap"])
    listen_fds = [sock.fileno() for sock in listeners]
    acceptor = Acceptor(listeners)
    repair = method["sockets"] == "repair"

    def fill_share_for(quota):
        def fill_share():
            held = []
            return held, {"reason": fill(hold_addr, held, quota, deadline, repair=repair)}
        return fill_share

    start = time.monotonic()
    for quota in quotas:
        workers_out.append(_fork_worker(session_pid, _hold_body(
            fill_share_for(quota), _release_for(method)), listen_fds))
    _wait_reports(workers_out, acceptor, deadline + 10, pause=HOLD_ACCEPT_PAUSE)
    seconds = time.monotonic() - start
    acceptor.drain()
    results = [worker["result"] for worker in workers_out]
    established = sum(result["count"] for result in results)
    opened = sum(result["opened"] for result in results)
    reasons = [result["reason"] for result in results]
    return acceptor, {
        "established": established,
        "lost": opened - established,
        "stopped_by": combine_stop_reasons(reasons, established, plan["cap"]),
        "worker_reasons": reasons,
        "seconds": seconds,
        "workers": len(workers_out),
        "fd_limit_per_process": fd_limit,
        "final_pass": 0,
        "ends_held_directly": [],
        "workers_peak_rss_kb": sum(r.get("rss_kb", 0) for r in results),
        "missing": None,
    }, (lambda: None)


def exhaustion_checks(plan, port):
    """While the hold destination is exhausted: the three facts of the trap."""
    second = (plan["destinations"]["second"], port)
    results = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        results["per_destination"] = sock.connect_ex(second) == 0
    finally:
        sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("0.0.0.0", 0))
        results["bind_zero_blocked"] = False
    except OSError as exc:
        results["bind_zero_blocked"] = exc.errno == errno.EADDRINUSE
    finally:
        sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind(("0.0.0.0", 0))
        results["bind_address_no_port_ok"] = sock.connect_ex(second) == 0
    except OSError:
        results["bind_address_no_port_ok"] = False
    finally:
        sock.close()
    return results


def run_churns(targets, port, limits, listeners, workers_out):
    """Churn runs to every destination at once, in workers, while the session
    accepts. `targets` maps a key to a destination; `limits` is (seconds,
    verdict_after)."""
    seconds, verdict_after = limits
    session_pid = os.getpid()
    acceptor = Acceptor(listeners, close_delay=0.05)
    overflow_before = netstat_counter("TCPTimeWaitOverflow")
    listen_fds = [sock.fileno() for sock in listeners]

    def body_for(destination):
        def body(report_fd, _control_fd):
            _write_json(report_fd, churn_loop((destination, port), seconds, verdict_after))
        return body

    started = {}
    for key, destination in targets.items():
        started[key] = _fork_worker(session_pid, body_for(destination), listen_fds)
        workers_out.append(started[key])
    try:
        _wait_reports(list(started.values()), acceptor, time.monotonic() + seconds + 15)
    finally:
        acceptor.close_all()
    overflow_after = netstat_counter("TCPTimeWaitOverflow")
    results = {}
    for key, worker in started.items():
        result = dict(worker["result"])
        # Namespace-wide counter: the runs share it.
        if overflow_before is not None and overflow_after is not None:
            result["tw_overflow"] = overflow_after - overflow_before
        result["destination"] = "%s:%d" % (targets[key], port)
        results[key] = result
    _reap(list(started.values()), time.monotonic() + 5)
    for worker in started.values():
        workers_out.remove(worker)
    return results


def session(plan):
    """Everything the session child does; returns the raw measurements."""
    workers = []
    listeners = []
    try:
        lab = None
        if plan["mode"] == "lab":
            try:
                lab = enter_lab(set(plan.get("refusals") or ()))
            except LabRefused as exc:
                raise ProbeError(str(exc)) from exc
            setup_lab_interfaces()
            configure_lab(plan)
            listen_addresses = ["0.0.0.0"]
        else:
            listen_addresses = sorted({address for address in plan["destinations"].values()
                                       if address})
        fd_limit = raise_fd_limit()
        listeners, port = open_listeners(listen_addresses, plan["listener_candidates"])
        # Host mode: sockets on our port other than our own listeners.
        before = (count_port_sockets(port) - len(listeners)) if plan["mode"] == "host" else None
        method = choose_method(set(plan.get("refusals") or ()), plan["mode"] == "lab")
        method["lab"] = lab
        deadline = time.monotonic() + plan["timeout"]
        acceptor, hold, release_final = run_hold(plan, method, (listeners, port),
                                                 (fd_limit, deadline), workers)
        raw = {"listener_port": port, "hold": hold, "method": method}
        if hold["stopped_by"] == "EADDRNOTAVAIL":
            raw.update(exhaustion_checks(plan, port))
        release_final()
        for worker in workers:  # release: each worker resets its connections
            os.close(worker["control"])
            worker["control"] = -1
        _reap(workers, time.monotonic() + 30)
        acceptor.drain()
        del workers[:]
        if plan["churn_seconds"] > 0:
            if plan["mode"] == "lab" and plan["churn_range"] != plan["measured_range"]:
                set_lab_range(*plan["churn_range"])
            targets = {key: plan["destinations"][name]
                       for key, name in (("remote", "churn_remote"),
                                         ("loopback", "churn_loopback"))
                       if plan["destinations"].get(name)}
            churn = {"remote": None, "loopback": None}
            churn.update(run_churns(targets, port,
                                    (plan["churn_seconds"], plan["reuse_wait_s"]),
                                    listeners, workers))
            raw["churn"] = churn
        for sock in listeners:
            sock.close()
        listeners = []
        if plan["mode"] == "host":
            after = count_port_sockets(port)
            raw["host_sockets"] = {"before": before, "after": after,
                                   "restored": after == before}
        return raw
    finally:
        _kill_workers(workers)
        for sock in listeners:
            sock.close()


def _session_child(plan, result_fd, parent_pid):
    """Entry point of the forked session child; never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        die_with_parent(parent_pid)
        _SESSION_FDS.append(result_fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            payload = {"ok": True, "raw": session(plan)}
        except ProbeError as exc:
            payload = {"ok": False, "msg": str(exc)}
        except Exception as exc:
            payload = {"ok": False, "msg": "probe session failed: %s: %s"
                       % (type(exc).__name__, exc)}
        _write_json(result_fd, payload)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _kill_session(pid):
    """SIGKILL the session's whole process group and reap the session."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(OSError):
            target()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class ChannelWatch:
    """Notices that whoever ran the module is gone, so the probe ends with it.

    Over SSH a killed controller closes the connection: the module's parent
    (the remote shell) goes away, so the module is re-parented, and its stdout
    (a pipe or socket towards the controller) reports an error or hang-up."""

    def __init__(self, out_fd=1):
        self.parent = os.getppid()
        self.out_fd = out_fd
        try:
            self.watch_out = stat.S_ISFIFO(os.fstat(out_fd).st_mode) or stat.S_ISSOCK(
                os.fstat(out_fd).st_mode)
        except OSError:
            self.watch_out = False

    def lost(self):
        if os.getppid() != self.parent:
            return "the process that started it (pid %d) is gone" % self.parent
        if self.watch_out:
            poller = select.poll()
            poller.register(self.out_fd, 0)  # POLLERR and POLLHUP are always reported
            if poller.poll(0):
                return "its output channel to the controller is closed"
        return None


def _on_sigterm(signum, frame):
    raise Terminated("terminated by signal %d" % signum)


def run_probe(plan):
    """Run the session child and return its raw measurements (module side)."""
    budget = plan["timeout"] + plan["churn_seconds"] + SESSION_GRACE
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    result_r, result_w = os.pipe()
    pid = None
    try:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(result_r)
            _session_child(plan, result_w, parent)
        os.close(result_w)
        result_w = -1
        with contextlib.suppress(OSError):  # the child does it too: whichever runs first
            os.setpgid(pid, pid)
        data = b""
        deadline = time.monotonic() + budget
        watch = ChannelWatch()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeError("the probe did not finish within %d s" % budget)
            ready = _poll([result_r], min(remaining, CHANNEL_CHECK_SECONDS))
            lost = watch.lost()
            if lost:
                raise ProbeError("the probe stopped: %s" % lost)
            if not ready:
                continue
            chunk = os.read(result_r, 65536)
            if not chunk:
                break
            data += chunk
        _pid, status = os.waitpid(pid, 0)
        pid = None
        if not data:
            raise ProbeError("the probe session ended without a result (wait status %d)"
                             % status)
        payload = json.loads(data.split(b"\n", 1)[0])
        if not payload.get("ok"):
            raise ProbeError(payload.get("msg") or "the probe session failed")
        return payload["raw"]
    finally:
        if pid:
            _kill_session(pid)
        for fd in (result_r, result_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        signal.signal(signal.SIGTERM, previous)
