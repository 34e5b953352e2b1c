"""A known socket population inside the network namespace this process runs in.

Run it under `unshare --net` (never in the machine's own namespace: it sets
net.* sysctls). It brings lo up, puts 198.18.x addresses on it, sets the
ephemeral range and reserved ports, opens listeners (one reserved and one not
inside the range), makes ESTABLISHED and TIME_WAIT sockets (the client closes
first) to several destinations, prints one line `ready <json>` and holds
everything until stdin closes.

`--capture DIR` instead writes the kernel's raw sock_diag replies of that
population and the counts ss reports for it into DIR, and its /proc/net/tcp,
tcp6 and netstat into DIR/../proc_facts/net (the unit-test fixtures).

Only the standard library and module_utils/portpool_sockdiag.py (for the
capture) are used.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RANGE = (40000, 49999)
RESERVED = "45000,47000-47010"
SERVICE_PORT = 8080
SERVICE6_PORT = 8081
LISTEN_RESERVED = 45000  # inside the range and reserved
LISTEN_UNRESERVED = 46000  # inside the range, not reserved: an audit finding
ADDRESSES = ("198.18.0.2", "198.18.0.3", "198.18.0.4")

# (destination address, port, established, time_wait)
PLAN = (
    ("198.18.0.2", SERVICE_PORT, 5, 0),
    ("198.18.0.3", SERVICE_PORT, 2, 7),
    ("198.18.0.4", SERVICE_PORT, 0, 4),
    ("127.0.0.5", SERVICE_PORT, 1, 3),
    ("::1", SERVICE6_PORT, 2, 1),
    ("127.0.0.1", LISTEN_UNRESERVED, 1, 0),  # accepted side has a listener's port
)


def sysctl_write(name, value):
    path = Path("/proc/sys") / name.replace(".", "/")
    if not name.startswith("net."):
        raise ValueError("only net.* sysctls are per network namespace")
    path.write_text("%s\n" % value)


def setup(max_tw_buckets=None):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in ADDRESSES:
        subprocess.run(["ip", "addr", "add", address + "/32", "dev", "lo"], check=True)
    sysctl_write("net.ipv4.ip_local_port_range", "%d %d" % RANGE)
    sysctl_write("net.ipv4.ip_local_reserved_ports", RESERVED)
    if max_tw_buckets is not None:
        sysctl_write("net.ipv4.tcp_max_tw_buckets", max_tw_buckets)


def listener(family, address, port):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address, port))
    sock.listen(128)
    return sock


def build(plan=PLAN):
    """Open listeners and sockets per `plan`; returns what must stay open."""
    held = [
        listener(socket.AF_INET, "0.0.0.0", SERVICE_PORT),
        listener(socket.AF_INET6, "::", SERVICE6_PORT),
        listener(socket.AF_INET, "0.0.0.0", LISTEN_RESERVED),
        listener(socket.AF_INET, "127.0.0.1", LISTEN_UNRESERVED),
    ]
    servers = {
        SERVICE_PORT: held[0], SERVICE6_PORT: held[1],
        LISTEN_RESERVED: held[2], LISTEN_UNRESERVED: held[3]}
    for address, port, established, time_wait in plan:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        for index in range(established + time_wait):
            client = socket.socket(family, socket.SOCK_STREAM)
            client.settimeout(5)
            client.connect((address, port))
            accepted, _peer = servers[port].accept()
            if index < established:
                held.extend((client, accepted))
            else:
                client.close()  # the client closes first: it holds TIME_WAIT
                accepted.close()
    return held


def ss_count(*filters):
    out = subprocess.run(["ss", "-Htan", *filters], capture_output=True, text=True,
                         check=True, env=dict(os.environ, LANG="C")).stdout
    return len(out.splitlines())


def capture(directory):
    """Write raw sock_diag replies, /proc/net/tcp{,6} and ss's counts into `directory`."""
    sys.path.insert(0, str(ROOT / "module_utils"))
    import portpool_sockdiag as sd

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dumps = {
        "sockdiag_all_v4.bin": (socket.AF_INET, sd.ALL_STATES, b""),
        "sockdiag_all_v6.bin": (socket.AF_INET6, sd.ALL_STATES, b""),
        "sockdiag_tw_v4.bin": (socket.AF_INET, 1 << sd.TIME_WAIT, b""),
        "sockdiag_tw_range_v4.bin": (
            socket.AF_INET, 1 << sd.TIME_WAIT, sd.port_range_bytecode(*RANGE)),
    }
    for name, (family, states, bytecode) in dumps.items():
        chunks = []
        sock = sd.open_diag_socket()
        try:
            sock.send(sd.build_request(family, states, 1, bytecode))
            for _ in range(10_000):
                chunk = sock.recv(1 << 20)
                chunks.append(chunk)
                if not chunk or sd.parse_diag_buffer(chunk, len(chunk), sd.SocketTally()):
                    break
        finally:
            sock.close()
        (directory / name).write_bytes(b"".join(chunks))
    proc_net = directory.parent / "proc_facts" / "net"
    proc_net.mkdir(parents=True, exist_ok=True)
    for name in ("tcp", "tcp6", "netstat"):
        (proc_net / name).write_text(Path("/proc/net", name).read_text())
    low, high = RANGE
    in_range = "( sport >= :%d and sport <= :%d )" % (low, high)
    expected = {
        "range": [low, high],
        "states": {
            state: {"ipv4": ss_count("-4", "state", state), "ipv6": ss_count("-6", "state", state)}
            for state in ("established", "time-wait", "listening", "syn-recv", "fin-wait-1",
                          "fin-wait-2", "close-wait", "last-ack", "closing", "syn-sent")},
        "destinations": {
            "%s:%d" % (address, port): {
                "time_wait": ss_count("state", "time-wait", in_range, "dst", _ss_addr(address),
                                      "dport", "= :%d" % port),
                "established": ss_count("state", "established", in_range, "dst",
                                        _ss_addr(address), "dport", "= :%d" % port)}
            for address, port, _e, _t in PLAN},
    }
    (directory / "sockdiag_expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def _ss_addr(address):
    return "[%s]" % address if ":" in address else address


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    max_tw = None
    if "--max-tw-buckets" in argv:
        max_tw = int(argv[argv.index("--max-tw-buckets") + 1])
    setup(max_tw)
    held = build()
    if "--capture" in argv:
        capture(argv[argv.index("--capture") + 1])
        return 0
    print("ready " + json.dumps({"range": RANGE, "pid": os.getpid()}), flush=True)
    sys.stdin.read()  # hold the sockets until the test closes our stdin
    for sock in held:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
