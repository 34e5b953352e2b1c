"""Benchmark: portpool_facts' per-destination breakdown against what an operator types.

Run as root: `python -m bench.facts [--sockets N] [--rounds R]`.

In an anonymous network namespace (`unshare --net`, gone when the child exits)
the benchmark widens ip_local_port_range and raises tcp_max_tw_buckets (net.*
only, inside the namespace), creates N TIME_WAIT sockets (client closes
first) spread over 8 destinations (4 addresses from 198.18.0.0/15 put on lo, 2
ports: one listener per creator process), then times,
alternately in one run:

- portpool: the module's breakdown (`netlink_timewait_destinations` +
  `summarise_destinations`, the module's own code) in a fresh Python process,
  wall clock including interpreter start-up but not Ansible's;
- pipeline: `ss -Htan state time-wait | awk '{print $4}' | sort | uniq -c | sort -rn`;
- ss: `ss -Htan state time-wait > /dev/null` alone.

Once, for information, it also times the module's whole socket collection
(every state, counts, destinations, listeners: `collect_sockets`) and the whole
module through its AnsiballZ payload (built by Ansible beforehand with
ANSIBLE_KEEP_REMOTE_FILES=1 and run with `execute`).

It prints the median of each, the median ratios portpool/pipeline and
portpool/ss, the in-process time of the breakdown alone, and the child's peak
RSS (ru_maxrss). TIME_WAIT lasts 60 s, so creation and timing are each bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_UTILS = ROOT / "module_utils"
DESTINATIONS = ("198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14")
PORT = 8080
RANGE = (10000, 65000)
CREATE_BUDGET = 40.0  # seconds; TIME_WAIT lasts 60 s, so creation + timing stay below
TIMING_BUDGET = 15.0
PIPELINE = "ss -Htan state time-wait | awk '{print $4}' | sort | uniq -c | sort -rn"

# The child that times the module's breakdown: only the standard library and
# the module's own module_utils file.
CORE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
start = time.perf_counter()
import portpool_sockdiag as sd
low, high, usable = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
raw = sd.netlink_timewait_destinations(low, high)
top, count = sd.summarise_destinations(sd.timewait_raw(raw), usable, 20)
elapsed = time.perf_counter() - start
json.dump({"elapsed": elapsed, "count": count,
           "sockets": sum(entry["total"] for entry in top),
           "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, sys.stdout)
"""


# The module's whole socket collection (all states, counts, destinations,
# listeners) as portpool_facts.gather() runs it, for information.
FULL = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import tests.ansiballz_path
sys.path.insert(0, tests.ansiballz_path.LIBRARY)
import portpool_facts as pf
from ansible.module_utils import portpool_sockdiag as sd
low, high, usable = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
tally, source, warnings = pf.collect_sockets(low, high)
top, count = sd.summarise_destinations(tally.destinations, usable, 20)
counts = sd.state_counts(tally)
elapsed = time.perf_counter() - start
json.dump({"elapsed": elapsed, "time_wait": counts["total"]["time_wait"], "source": source,
           "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, sys.stdout)
"""


def run(argv, **kwargs):
    return subprocess.run(argv, check=True, env=dict(os.environ, LANG="C"), **kwargs)


def setup_namespace():
    run(["ip", "link", "set", "lo", "up"])
    for address in DESTINATIONS:
        run(["ip", "addr", "add", address + "/32", "dev", "lo"])
    Path("/proc/sys/net/ipv4/ip_local_port_range").write_text("%d %d\n" % RANGE)
    Path("/proc/sys/net/ipv4/tcp_max_tw_buckets").write_text("400000\n")


def create_timewait(total, deadline, workers=2):
    """Make `total` client-side TIME_WAIT sockets, round-robin over DESTINATIONS.

    Client closes first, then the accepted side: each pair is closed at once, so
    descriptors stay bounded whatever RLIMIT_NOFILE is. `workers` forked
    processes share the work (each with its own listener port). Returns the
    number made before `deadline`.
    """
    share = [total // workers + (1 if index < total % workers else 0)
             for index in range(workers)]
    children = []
    for index in range(workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: make its share, report the count, exit at once
            os.close(read_end)
            made = 0
            try:
                made = _create_share(share[index], PORT + index, deadline)
            finally:
                os.write(write_end, str(made).encode())
                os._exit(0)
        os.close(write_end)
        children.append((pid, read_end))
    made = 0
    for pid, read_end in children:
        with os.fdopen(read_end) as handle:
            made += int(handle.read() or 0)
        os.waitpid(pid, 0)
    return made


def _create_share(count, port, deadline):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(4096)
    targets = [(address, port) for address in DESTINATIONS]
    accept = server._accept  # the bare descriptor: no socket object per connection
    made = 0
    try:
        while made < count:
            if made % 1000 == 0 and time.monotonic() > deadline:
                break
            client = socket.socket()
            client.connect(targets[made % len(targets)])
            accepted, _peer = accept()
            client.close()  # the client closes first: it holds TIME_WAIT
            os.close(accepted)
            made += 1
    finally:
        server.close()
    return made


def timewait_count():
    out = run(["ss", "-Htan", "state", "time-wait"], capture_output=True).stdout
    return out.count(b"\n")


def time_core(usable):
    argv = [sys.executable, "-c", CORE, str(MODULE_UTILS), str(RANGE[0]), str(RANGE[1]),
            str(usable)]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError("breakdown child failed: %s" % proc.returncode)
    result = json.loads(out)
    result["wall"] = wall
    result["child_maxrss_kb"] = usage.ru_maxrss
    return result


def time_shell(argv):
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def keep_ansiballz(workdir):
    """Have Ansible build the module's AnsiballZ payload, keep it, and explode it.

    Returns the payload's path: `python <it> execute` then runs the whole module
    (Python and Ansible's module start-up included, Ansible's controller not).
    """
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8",
               PATH=str(bin_dir) + os.pathsep + os.environ.get("PATH", ""),
               ANSIBLE_PIPELINING="0", ANSIBLE_KEEP_REMOTE_FILES="1",
               ANSIBLE_REMOTE_TMP=str(workdir / "remote"),
               ANSIBLE_LOCAL_TEMP=str(workdir / "local"))
    subprocess.run([str(bin_dir / "ansible"), "localhost", "-o", "-m", "portpool_facts"],
                   cwd=str(ROOT), env=env, check=True, capture_output=True, timeout=300)
    payload = next((workdir / "remote").glob("*/AnsiballZ_portpool_facts.py"))
    subprocess.run([sys.executable, str(payload), "explode"], cwd=str(payload.parent),
                   check=True, capture_output=True)
    return payload


def time_ansiballz(payload):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(payload), "execute"], cwd=str(payload.parent),
                          check=True, capture_output=True)
    wall = time.perf_counter() - start
    facts = json.loads(proc.stdout)["ansible_facts"]["portpool"]
    return wall, facts["sockets"]["time_wait"]


def inner(total, rounds):
    """Runs inside the namespace: create, time alternately, print one JSON line."""
    setup_namespace()
    usable = RANGE[1] - RANGE[0] + 1
    workdir = Path(tempfile.mkdtemp(prefix="ppfacts-bench-"))
    try:
        payload = keep_ansiballz(workdir)
        result = _measure(total, rounds, usable, payload)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


def _measure(total, rounds, usable, payload):
    start = time.monotonic()
    made = create_timewait(total, start + CREATE_BUDGET)
    created = time.monotonic() - start
    before = timewait_count()
    samples = {"portpool": [], "pipeline": [], "ss": [], "core": []}
    rss = []
    check = None
    timing_end = time.monotonic() + TIMING_BUDGET
    for _ in range(rounds):
        if time.monotonic() > timing_end:
            break
        core = time_core(usable)
        samples["portpool"].append(core["wall"])
        samples["core"].append(core["elapsed"])
        rss.append(core["child_maxrss_kb"])
        check = core
        samples["pipeline"].append(time_shell(["bash", "-c", PIPELINE]))
        samples["ss"].append(time_shell(["ss", "-Htan", "state", "time-wait"]))
    full = json.loads(subprocess.run(
        [sys.executable, "-c", FULL, str(ROOT), str(RANGE[0]), str(RANGE[1]), str(usable)],
        check=True, capture_output=True).stdout)
    full["ansiballz"], full["ansiballz_time_wait"] = time_ansiballz(payload)
    after = timewait_count()
    return {"full": full, "asked": total, "made": made, "create_seconds": created,
            "timewait_before": before, "timewait_after": after, "samples": samples,
            "maxrss_kb": rss, "breakdown": check}


def report(result):
    samples = result["samples"]
    median = {name: statistics.median(values) for name, values in samples.items() if values}
    ratio_pipe = statistics.median(
        p / q for p, q in zip(samples["portpool"], samples["pipeline"]))
    ratio_ss = statistics.median(p / q for p, q in zip(samples["portpool"], samples["ss"]))
    ratio_core_ss = statistics.median(p / q for p, q in zip(samples["core"], samples["ss"]))
    peak_mb = max(result["maxrss_kb"]) / 1024
    print("TIME_WAIT sockets: %d made (of %d asked) in %.1f s; ss counted %d before "
          "timing, %d after; load average %.1f"
          % (result["made"], result["asked"], result["create_seconds"],
             result["timewait_before"], result["timewait_after"], os.getloadavg()[0]))
    print("portpool breakdown: %d destinations, %d sockets in the top entries"
          % (result["breakdown"]["count"], result["breakdown"]["sockets"]))
    print("rounds: %d (alternating portpool, pipeline, ss)" % len(samples["portpool"]))
    for name in ("portpool", "core", "pipeline", "ss"):
        print("  median %-9s %7.1f ms" % (name, median[name] * 1000))
    print("ratio portpool/pipeline (median): %.2fx  target < 1.0x" % ratio_pipe)
    print("ratio portpool/ss alone (median): %.2fx  target <= 1.0x" % ratio_ss)
    print("ratio breakdown in-process/ss alone (median): %.2fx" % ratio_core_ss)
    full = result["full"]
    print("module's full socket collection (all states, one run, for information): "
          "%.1f ms, %d TIME_WAIT via %s, peak RSS %.1f MB"
          % (full["elapsed"] * 1000, full["time_wait"], full["source"],
             full["maxrss_kb"] / 1024))
    print("whole module via its AnsiballZ payload's `execute` (one run, for information; "
          "Python and Ansible module start-up included): %.1f ms, %d TIME_WAIT"
          % (full["ansiballz"] * 1000, full["ansiballz_time_wait"]))
    print("peak RSS of the portpool child: %.1f MB  target < 100 MB" % peak_mb)
    ok = ratio_pipe < 1.0 and ratio_ss <= 1.0 and peak_mb < 100
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    total = 100_000
    rounds = 7
    if "--sockets" in argv:
        total = int(argv[argv.index("--sockets") + 1])
    if "--rounds" in argv:
        rounds = int(argv[argv.index("--rounds") + 1])
    if "--inner" in argv:
        inner(total, rounds)
        return 0
    if os.geteuid() != 0:
        print("bench.facts needs root (network namespaces)", file=sys.stderr)
        return 2
    # RLIMIT_NOFILE (20,000 here) is no concern: the creators close each pair at
    # once, TIME_WAIT sockets hold no descriptor.
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "bench.facts", "--inner",
         "--sockets", str(total), "--rounds", str(rounds)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    return report(json.loads(proc.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    sys.exit(main())
