"""Connect to address:port and close from the client side, a bounded number of times.

Runs inside a fleet host (Fleet.churn, `python -m tests.fleet churn`). The client
closes first, so each connection leaves a TIME_WAIT entry on this host for 60 s:
the pressure a busy proxy puts on its pool to one backend. It stops at the
count, at the time limit, or when the kernel has no local port left
(EADDRNOTAVAIL), and prints one JSON line: {"connected", "failed", "stopped_by"}.

    churn.py ADDRESS PORT COUNT [RATE_PER_SECOND] [MAX_SECONDS]
"""

import errno
import json
import signal
import socket
import sys
import time


class Stopped(Exception):
    """SIGTERM (Fleet.stop_churn): stop and still print the summary."""


def _stop(*_):
    raise Stopped


signal.signal(signal.SIGTERM, _stop)

address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
limit = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
start = time.monotonic()
connected = failed = 0
stopped_by = "count"
try:
    while connected + failed < count:
        now = time.monotonic()
        if now - start > limit:
            stopped_by = "time"
            break
        if rate > 0:
            due = start + (connected + failed) / rate
            if due > now:
                time.sleep(due - now)
        try:
            client = socket.create_connection((address, port), timeout=2)
        except OSError as exc:
            failed += 1
            if exc.errno == errno.EADDRNOTAVAIL:
                stopped_by = "EADDRNOTAVAIL"
                break
            if failed > 100 and failed > connected:
                stopped_by = errno.errorcode.get(exc.errno or 0, str(exc))
                break
            continue
        client.close()
        connected += 1
except Stopped:
    stopped_by = "stopped"
print(json.dumps({"connected": connected, "failed": failed, "stopped_by": stopped_by}),
      flush=True)
