"""Benchmark the report step: 1,000 against 10,000 synthetic host results.

    python -m bench.report [--runs 5] [--keep DIR] [--out-dir DIR]

Generates realistic result files (facts with 20 destinations, a probe, a few
findings, some unreachable and failed hosts) for both fleet sizes once, then
times the whole report step (load, merge, aggregate, render and write every
format) alternately, each run in a fresh Python process so its peak memory
is its own. Prints the medians of wall time and of CPU time (this machine is
shared: CPU time is the steadier figure), the 10k/1k ratio and the peak
memory: the process's peak RSS plus the private memory of the forked
renderer (shared copy-on-write pages counted once).
Targets (issue 5): 10,000 hosts in at most 5 s and 500 MB, at most 11x 1,000.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import tests.ansiballz_path  # noqa: F401  (the audit's summary, imported below)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "roles" / "portpool_report" / "templates"
SIZES = (1000, 10000)

RULES = [
    ("PP001", "high", "Usable ephemeral pool below the policy minimum"),
    ("PP002", "low", "Port range ends have the same parity"),
    ("PP003", "medium", "Range starts below ip_unprivileged_port_start or overlaps services"),
    ("PP004", "high", "Listening service port inside the range and not reserved"),
    ("PP005", "medium", "tcp_tw_reuse enabled but tcp_timestamps is 0"),
    ("PP006", "critical", "tcp_tw_recycle present or set"),
    ("PP007", "medium", "tcp_max_tw_buckets lowered or TIME_WAIT overflow seen"),
    ("PP008", "info", "tcp_fin_timeout changed as if it shortened TIME_WAIT"),
    ("PP009", "high", "One destination uses most of its per-destination pool"),
    ("PP010", "medium", "Descriptor limit below the pool a service could need"),
    ("PP011", "low", "Runtime value differs from the value that wins at boot"),
    ("PP012", "low", "Several persisted files set the same key"),
    ("PP013", "medium", "Probe count differs from the expected pool"),
    ("PP014", "high", "bind(0) programs would starve"),
    ("PP015", "low", "Settings differ from the majority of the group"),
]


def synthetic_result(index, rng):
    """One host result in the audit's schema-1 shape, with plausible facts."""
    host = "host-%05d.example.net" % index
    stamp = "2026-11-23T19:%02d:%02dZ" % (index // 60 % 60, index % 60)
    roll = rng.random()
    if roll < 0.02:
        return {"schema": 1, "host": host, "status": "unreachable",
                "error": "Failed to connect to the host via ssh: ssh: connect to host "
                         "%s port 22: Connection timed out" % host,
                "audited_at": stamp, "groups": ["app_servers"], "facts": None,
                "probe": None, "findings": []}
    if roll < 0.03:
        return {"schema": 1, "host": host, "status": "failed",
                "error": "portpool_facts: /proc/net/netstat: Permission denied",
                "audited_at": stamp, "groups": ["proxies"], "facts": None,
                "probe": None, "findings": []}
    low = rng.choice((32768, 1024, 40000, 10000))
    high = rng.choice((60999, 65535, 40999, 61000))
    if high <= low:
        high = low + 999
    reserved = rng.choice((0, 0, 0, 10, 100))
    size = high - low + 1
    usable = size - reserved
    destinations = []
    for rank in range(20):
        total = max(int(usable * rng.random() / (rank + 1)), 1)
        time_wait = int(total * 0.9)
        destinations.append({
            "address": "198.18.%d.%d" % (rank, index % 250 + 1), "port": 443 if rank % 2 else 80,
            "time_wait": time_wait, "established": total - time_wait, "total": total,
            "utilisation": round(total / usable, 4)})
    destinations.sort(key=lambda item: item["total"], reverse=True)
    sysctl = {
        "ip_local_port_range": [low, high], "ip_local_reserved_ports": [[low, low + reserved]]
        if reserved else [], "ip_unprivileged_port_start": 1024, "tcp_tw_reuse": 2,
        "tcp_tw_reuse_delay": 1000, "tcp_timestamps": 1, "tcp_max_tw_buckets": 262144,
        "tcp_fin_timeout": 60, "tcp_tw_recycle": None, "net.core.somaxconn": 4096,
        "fs.nr_open": 1048576, "fs.file-max": 9223372036854775807}
    facts = {
        "sysctl": sysctl,
        "kernel": {"release": "6.18.0-1-amd64", "version": [6, 18, 0]},
        "ephemeral": {"low": low, "high": high, "size": size,
                      "reserved_in_range": reserved, "usable": usable},
        "persisted": {
            "net.ipv4.ip_local_port_range": {
                "value": "%d %d" % (low, high), "file": "/etc/sysctl.d/60-ports.conf",
                "others": ["/etc/sysctl.conf"]},
            "net.ipv4.tcp_tw_reuse": {"value": "2", "file": "/usr/lib/sysctl.d/50-default.conf",
                                      "others": []},
            "drift": []},
        "sockets": {"states": {"ESTABLISHED": 120, "TIME_WAIT": sum(
            d["time_wait"] for d in destinations), "LISTEN": 12, "CLOSE_WAIT": 3},
                    "time_wait": sum(d["time_wait"] for d in destinations),
                    "TCPTimeWaitOverflow": 0},
        "destinations": {"top": destinations, "count": 20 + rng.randrange(200)},
        "listeners_in_range": [{"port": low + 5, "address": "0.0.0.0", "reserved": False}],
        "limits": {"nofile": [1024, 524288], "processes": []},
    }
    probe = {"mode": "lab", "scope": "quick", "expected": usable, "matches_expected": True,
             "hold": {"established": 1000, "expected": 1000, "target": 1000,
                      "stopped_by": "EADDRNOTAVAIL", "lost": 0,
                      "measured_range": [low, low + 999]},
             "summary": "quick: held 1000 of 1000 expected, stopped by EADDRNOTAVAIL"}
    findings = []
    for rule_id, severity, title in rng.sample(RULES, rng.randrange(0, 6)):
        findings.append({
            "id": rule_id, "severity": severity, "title": title, "host": host,
            "message": "%s: net.ipv4.ip_local_port_range is %d %d (%d usable ports, from "
                       "/etc/sysctl.d/60-ports.conf); busiest destination 198.18.0.1:443 "
                       "holds %d sockets" % (title, low, high, usable, destinations[0]["total"]),
            "recommendation": "Set net.ipv4.ip_local_port_range = 1024 65535 in "
                              "/etc/sysctl.d/60-portpool.conf",
            "waived": rng.random() < 0.1})
    return {"schema": 1, "host": host, "status": "ok", "error": None,
            "audited_at": stamp, "groups": [rng.choice(("proxies", "app_servers"))],
            "facts": facts, "probe": probe, "findings": findings,
            "summary": summary_builder()(facts, probe)}


def summary_builder():
    """The audit's summary function, as the audit writes it into each result."""
    from ansible.module_utils.portpool_result_summary import host_summary  # noqa: PLC0415
    return host_summary


def generate(folder, count, seed=5):
    """Write `count` result files and rules.json into folder/results."""
    rng = random.Random(seed)
    results = Path(folder) / "results"
    results.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        data = synthetic_result(index, rng)
        (results / ("%s.json" % data["host"])).write_text(json.dumps(data), encoding="utf-8")
    rules = [{"id": rule_id, "severity": severity, "title": title,
              "description": "Synthetic rule %s." % rule_id}
             for rule_id, severity, title in RULES]
    (Path(folder) / "rules.json").write_text(json.dumps(rules), encoding="utf-8")
    return results


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import tests.ansiballz_path
from ansible.module_utils.portpool_report_render import build_report

def cpu():
    own = resource.getrusage(resource.RUSAGE_SELF)
    forked = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + forked.ru_utime + forked.ru_stime

start, start_cpu = time.perf_counter(), cpu()
result = build_report([sys.argv[2]], sys.argv[3], sys.argv[4], latest_link=False)
elapsed, used = time.perf_counter() - start, cpu() - start_cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
extra = (result["stats"].get("child_private_kb") or 0) / 1024.0
print(json.dumps({"seconds": elapsed, "cpu": used, "peak_mb": peak + extra,
                  "hosts": result["totals"]["hosts"]}))
"""


def run_once(results, out):
    if os.path.exists(out):
        shutil.rmtree(out)
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), str(results), str(out), str(TEMPLATES)],
        check=True, capture_output=True, text=True)
    return json.loads(completed.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per size (default 5)")
    parser.add_argument("--keep", help="generate into this folder and keep it")
    parser.add_argument("--out-dir", help="write the reports here (default: beside the "
                        "generated results); e.g. /dev/shm to leave the disk out")
    args = parser.parse_args([] if argv is None else argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ppreport-bench-"))
    out = work
    try:
        folders = {}
        for size in SIZES:
            folders[size] = generate(work / ("fleet-%d" % size), size)
        print("generated %s synthetic host results in %s" % (
            " and ".join(f"{size:,}" for size in SIZES), work))
        out = Path(tempfile.mkdtemp(prefix="ppreport-out-", dir=args.out_dir)) \
            if args.out_dir else work
        samples = {size: [] for size in SIZES}
        for run in range(args.runs):
            for size in SIZES:
                measured = run_once(folders[size], out / ("out-%d" % size))
                assert measured["hosts"] == size, measured
                samples[size].append(measured)
                print("run %d: %6d hosts  %6.3f s  (CPU %6.3f s)  peak %6.1f MB"
                      % (run + 1, size, measured["seconds"], measured["cpu"],
                         measured["peak_mb"]))
        medians = {size: statistics.median(m["seconds"] for m in samples[size])
                   for size in SIZES}
        cpu = {size: statistics.median(m["cpu"] for m in samples[size]) for size in SIZES}
        peaks = {size: max(m["peak_mb"] for m in samples[size]) for size in SIZES}
        ratio = medians[10000] / medians[1000]
        print()
        print("report step, all formats (median of %d runs):" % args.runs)
        for size in SIZES:
            print("  %6d hosts: %.3f s wall, %.3f s CPU, peak %.1f MB"
                  % (size, medians[size], cpu[size], peaks[size]))
        print("  10k/1k ratio: %.2fx wall, %.2fx CPU (target <= 11x); 10k: %.2f s "
              "(target <= 5 s), %.0f MB (target <= 500 MB)"
              % (ratio, cpu[10000] / cpu[1000], medians[10000], peaks[10000]))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        if args.out_dir and out != work:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
