"""The naive hold the probe is checked against: connect() until EADDRNOTAVAIL.

Run inside a network namespace with lo up; prints the local ports it was
handed, as JSON. Real connections to a listener on 127.0.0.1 outside the range.
"""

import errno
import json
import socket
import sys


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
        sock.close()
    listener.close()
    return {"ports": ports, "reason": reason}


if __name__ == "__main__":
    print(json.dumps(naive_hold(int(sys.argv[1]))))
