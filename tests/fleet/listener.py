"""A stand-in service for a fleet host: accept on the given TCP ports until killed.

Each connection is accepted and closed once the client has closed its side, so
a client that closes first (tests/fleet/churn.py) keeps TIME_WAIT on its host,
as a real backend would leave it.
"""

import selectors
import signal
import socket
import sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
selector = selectors.DefaultSelector()
for port in sys.argv[1:]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", int(port)))
    listener.listen(4096)
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ, "listen")

while True:
    for key, _ in selector.select():
        sock = key.fileobj
        if key.data == "listen":
            for _ in range(256):
                try:
                    conn, _peer = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.setblocking(False)
                try:
                    closed = conn.recv(4096) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:  # the client was quicker: close at once
                    conn.close()
                else:
                    selector.register(conn, selectors.EVENT_READ, "conn")
            continue
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if not data:  # the client closed: close our side too
            selector.unregister(sock)
            sock.close()
