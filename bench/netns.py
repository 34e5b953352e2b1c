"""Benchmark: namespace discovery on a host with 200 namespaces against one with none.

Run as root: `python -m bench.netns [--namespaces N] [--rounds R]`.

Two test hosts are made, each a fresh set of network, mount and PID namespaces
(so each sees only its own processes and its own /run/netns, on a tmpfs):

- busy: N other network namespaces, three in four named (`ip netns add`) and
  one in four held only by a process (`unshare --net sleep`), as containers are;
- listening: the same, with a TCP listener in each namespace, as a container
  serving something has (an idle namespace is answered from
  /proc/net/sockstat; one with any socket costs a walk of the kernel's
  established hash table per family);
- empty: none.

The whole `ansible localhost -m portpool_facts` task is timed inside each,
alternately, R rounds: with the default bounds (64 namespaces read, the rest
counted as skipped) and with `max_count` N (every one read). It prints the
medians, the ratio busy/empty for each, and what the module reported. The
target is a ratio under 2. Everything is gone when the hosts' init processes
exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNSHARE_HOST = ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
                "--propagation", "private"]

# Runs as the host's init: make the namespaces, say ready, hold until stdin closes.
HOST = r"""
import ctypes, os, socket, subprocess, sys
count, listening = int(sys.argv[1]), sys.argv[2] == "listen"
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
os.makedirs("/run/netns", exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/netns"], check=True)
holders = []
for index in range(count):
    if index % 4 == 3:
        holders.append(subprocess.Popen(["unshare", "--net", "sleep", "3600"]))
    else:
        subprocess.run(["ip", "netns", "add", "bench-%d" % index], check=True)
sockets = []
if listening:  # one listener per namespace, all held by this process
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    paths = ["/run/netns/" + name for name in sorted(os.listdir("/run/netns"))]
    paths += ["/proc/%d/ns/net" % holder.pid for holder in holders]
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        assert libc.setns(fd, 0x40000000) == 0, path
        os.close(fd)
        listener = socket.create_server(("127.0.0.1", 8080))
        sockets.append(listener)
    assert libc.setns(home, 0x40000000) == 0
print("ready", flush=True)
sys.stdin.read()
for holder in holders:
    holder.kill()
"""


@contextlib.contextmanager
def host(count, listening=False):
    proc = subprocess.Popen([*UNSHARE_HOST, sys.executable, "-c", HOST, str(count),
                             "listen" if listening else "idle"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit("the bench host did not start: %r" % line)
        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid), encoding="ascii") as f:
            (init,) = [int(pid) for pid in f.read().split()]
        yield init
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def facts_task(init, args):
    """Seconds for the whole ansible task inside the host, and the namespaces fact."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep
               + os.environ["PATH"])
    task_args = json.dumps(args) if args else ""  # `-a {}` would be a raw parameter
    start = time.perf_counter()
    result = subprocess.run(
        ["nsenter", "-t", str(init), "-n", "-m", "-p", "--wd=%s" % ROOT, "--",
         "ansible", "localhost", "-o", "-m", "portpool_facts", "-a", task_args],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit("portpool_facts failed:\n" + result.stdout + result.stderr)
    line = next(line for line in result.stdout.splitlines() if " => " in line)
    facts = json.loads(line.split(" => ", 1)[1])["ansible_facts"]["portpool"]
    return elapsed, facts["namespaces"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args(argv if argv is not None else [])
    if os.geteuid() != 0:
        print("bench.netns needs root (namespaces)", file=sys.stderr)
        return 1
    read_all = {"namespaces": {"max_count": options.namespaces}}
    # (label, host kind, module args): each busy case is timed against the empty host.
    cases = [("default bounds", "idle", {}), ("read all", "idle", read_all),
             ("read all, listening", "listening", read_all)]
    times = {}
    reported = {}
    with host(options.namespaces) as idle, host(options.namespaces, True) as listening, \
            host(0) as empty:
        hosts = {"idle": idle, "listening": listening}
        for _round in range(options.rounds):
            for label, kind, args in cases:
                for side, init in (("busy", hosts[kind]), ("empty", empty)):
                    elapsed, fact = facts_task(init, args)
                    times.setdefault((label, side), []).append(elapsed)
                    reported[(label, side)] = fact
    print("whole `ansible localhost -m portpool_facts` task, median of %d rounds"
          % options.rounds)
    for label, _kind, _args in cases:
        busy_s = statistics.median(times[(label, "busy")])
        empty_s = statistics.median(times[(label, "empty")])
        fact = reported[(label, "busy")]
        print("  %-20s %d namespaces: %.2f s, none: %.2f s, ratio %.2fx (target < 2x); "
              "found %d, read %d, skipped %s, in-module %.2f s"
              % (label, options.namespaces, busy_s, empty_s, busy_s / empty_s, fact["found"],
                 fact["inspected"], fact["skipped"], fact["seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
