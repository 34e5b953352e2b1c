"""A stand-in service for a fleet host: listen on the given TCP ports until killed."""

import signal
import socket
import sys

sockets = []
for port in sys.argv[1:]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", int(port)))
    listener.listen(128)
    sockets.append(listener)
signal.pause()
