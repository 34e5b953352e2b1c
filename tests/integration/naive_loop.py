"""The naive hold the probe is checked against: connect() until EADDRNOTAVAIL.

Run inside a network namespace with lo up: `naive_loop.py PORT [RUNS]` prints,
as JSON, a list with one entry per run: the local ports it was handed and why
it stopped. Real connections to a listener on 127.0.0.1 outside the range,
reset at the end of each run so that none waits in TIME_WAIT for the next.
"""

import errno
import json
import socket
import struct
import sys

LINGER_RESET = struct.pack("ii", 1, 0)


def naive_hold(listen_port):
    """{"ports": the local ports connect() handed out, "reason": why it stopped}."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", listen_port))
    listener.listen(4096)
    held, reason = [], None
    for _ in range(70000):  # bounded: more than any range has ports
        sock = socket.socket()
        code = sock.connect_ex(("127.0.0.1", listen_port))
        if code:
            sock.close()
            reason = errno.errorcode.get(code, str(code))
            break
        held.append(sock)
    ports = sorted(sock.getsockname()[1] for sock in held)
    for sock in held:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        sock.close()
    listener.close()
    return {"ports": ports, "reason": reason}


def naive_holds(listen_port, runs):
    """`runs` naive holds one after another: connect()'s search is not
    deterministic on a same-parity range, so one run says little there."""
    return [naive_hold(listen_port) for _ in range(runs)]


if __name__ == "__main__":
    print(json.dumps(naive_holds(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)))
