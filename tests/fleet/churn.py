"""Connect to address:port and close from the client side, a bounded number of times.

Runs inside a fleet host (Fleet.churn, `python -m tests.fleet churn`). The client
closes first, so each connection leaves a TIME_WAIT entry on this host for 60 s:
the pressure a busy proxy puts on its pool to one backend. It connects in small
non-blocking batches (a proxy has many connections in flight, and it is cheaper),
stops at the count, at the time limit, or when the kernel has no local port left
(EADDRNOTAVAIL), and prints one JSON line: {"connected", "failed", "stopped_by"}.

    churn.py ADDRESS PORT COUNT [RATE_PER_SECOND] [MAX_SECONDS]
"""

import errno
import json
import select
import signal
import socket
import sys
import time

BATCH = 128


class Stopped(Exception):
    """SIGTERM (Fleet.stop_churn): stop and still print the summary."""


def _stop(*_):
    raise Stopped


def connect_batch(address, port, size, deadline):
    """Start `size` connections at once, close each once up. Returns (ok, failed, error)."""
    pending = {}
    failed = 0
    error = None
    for _ in range(size):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((address, port))
        if code in (0, errno.EINPROGRESS):
            pending[sock.fileno()] = sock
            continue
        sock.close()
        failed += 1
        error = errno.errorcode.get(code, str(code))
        if code == errno.EADDRNOTAVAIL:
            break
    poller = select.poll()
    for fileno in pending:
        poller.register(fileno, select.POLLOUT)
    ok = 0
    while pending and time.monotonic() < deadline:
        for fileno, _ in poller.poll(1000):
            sock = pending.pop(fileno)
            poller.unregister(fileno)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            sock.close()  # the client closes first: TIME_WAIT stays here
            if code == 0:
                ok += 1
            else:
                failed += 1
                error = errno.errorcode.get(code, str(code))
    for sock in pending.values():
        sock.close()
    return ok, failed + len(pending), error


def main():
    address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    limit = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    signal.signal(signal.SIGTERM, _stop)
    start = time.monotonic()
    deadline = start + limit
    connected = failed = 0
    stopped_by = "count"
    try:
        while connected + failed < count:
            now = time.monotonic()
            if now >= deadline:
                stopped_by = "time"
                break
            size = min(BATCH, count - connected - failed)
            if rate > 0:
                size = min(size, max(1, int(rate / 10)))
                due = start + (connected + failed) / rate
                if due > now:
                    time.sleep(min(due - now, deadline - now))
                    continue
            ok, bad, error = connect_batch(address, port, size, deadline)
            connected += ok
            failed += bad
            if error == "EADDRNOTAVAIL":
                stopped_by = error
                break
            if bad and failed > 100 and failed > connected:
                stopped_by = error or "failed"
                break
    except Stopped:
        stopped_by = "stopped"
    print(json.dumps({"connected": connected, "failed": failed, "stopped_by": stopped_by}),
          flush=True)


if __name__ == "__main__":
    main()
