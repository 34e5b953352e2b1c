"""Benchmark: `ansible-playbook audit.yml` against `ansible all -m ping` on one fleet,
unsliced and in three slices merged.

    python -m bench.audit [--hosts 100] [--rounds 3] [--slices 3]

Builds an SSH test fleet (needs root; the harness makes up to 200 hosts), warms
every command up once (SSH ControlPersist masters, Python caches), then runs, in
each round: the ping; a first audit, into a folder with no measurements on record,
so every host holds its range; the repeat audit, whose hosts' configurations are on
record from the earlier runs (docs/probe.md), which is what a scheduled audit of
an unchanged fleet costs; the audit without the probe; and the repeat audit in
slices (`--limit` runs one after another, each into its own folder) followed by
`playbooks/report.yml` merging them. It prints each one's median wall time and
ratio to the ping (target: audit <= 1.3x), the controller's CPU-seconds per host
(user + system of ansible and every process it waited for: forks, ssh clients)
and the controller's peak memory (largest resident set of one of those
processes) and the CPU-seconds the rest of the machine spent meanwhile, which is
the test hosts' work (sshd, the modules, the probe): on this one machine they
share the controller's cores, while in a real fleet each host has its own.
Reports go into a temporary folder, not the repository's.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fleet.harness import Fleet, HostSpec

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("web", "db", "cache", "batch")


class Measure:
    """Wall seconds, controller CPU-seconds, peak RSS (MiB) of one or more commands, and
    the machine's other CPU-seconds meanwhile (the test hosts')."""

    def __init__(self, wall=0.0, cpu=0.0, peak_mib=0.0, others=0.0):
        self.wall, self.cpu, self.peak_mib, self.others = wall, cpu, peak_mib, others

    def __add__(self, other):
        return Measure(self.wall + other.wall, self.cpu + other.cpu,
                       max(self.peak_mib, other.peak_mib), self.others + other.others)


def machine_cpu_seconds():
    """CPU-seconds every process on the machine has used (user, nice, system, irq...)."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = handle.readline().split()[1:]
    busy = sum(int(value) for index, value in enumerate(fields) if index not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def measured(fleet, argv, out_dir, expect_ok=True):
    """Run one command the way the harness runs ansible; its Measure. Fails loudly."""
    with tempfile.TemporaryFile(dir=out_dir) as stdout, \
            tempfile.TemporaryFile(dir=out_dir) as stderr:
        started = time.perf_counter()
        machine_before = machine_cpu_seconds()
        process = subprocess.Popen(argv, cwd=REPO, env=fleet.env(), stdout=stdout,
                                   stderr=stderr)
        try:
            # wait4: the child's rusage, including every descendant it waited for.
            _pid, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        elapsed = time.perf_counter() - started
        machine = machine_cpu_seconds() - machine_before
        process.returncode = os.waitstatus_to_exitcode(status)
        if expect_ok and process.returncode != 0:
            stdout.seek(0)
            stderr.seek(0)
            raise SystemExit("%s failed (%d):\n%s\n%s" % (
                " ".join(argv[:3]), process.returncode, stdout.read()[-3000:].decode(),
                stderr.read()[-2000:].decode()))
    controller = usage.ru_utime + usage.ru_stime
    return Measure(elapsed, controller, usage.ru_maxrss / 1024.0, max(0.0, machine - controller))


def slices_of(names, count):
    """`count` interleaved slices, the way AWX deals hosts out: drift spans slices."""
    return [names[index::count] for index in range(count)]


def line(label, runs, hosts, ping_wall):
    wall = statistics.median(run.wall for run in runs)
    cpu = statistics.median(run.cpu for run in runs)
    peak = max(run.peak_mib for run in runs)
    others = statistics.median(run.others for run in runs)
    return ("%-34s wall %7.2fs (%5.2fx ping)  controller CPU %7.2fs = %.3f s/host  "
            "peak RSS %6.1f MiB  hosts' CPU %.3f s/host"
            % (label, wall, wall / ping_wall, cpu, cpu / hosts, peak, others / hosts))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.audit",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=3)
    args = parser.parse_args(argv)
    names = ["b%03d" % (index + 1) for index in range(args.hosts)]
    specs = [HostSpec(name=name, groups=(GROUPS[index % len(GROUPS)],))
             for index, name in enumerate(names)]
    started = time.perf_counter()
    with Fleet.create(specs) as fleet, tempfile.TemporaryDirectory(prefix="ppaudit-bench-") as out:
        print("fleet of %d hosts up in %.0fs" % (args.hosts, time.perf_counter() - started),
              flush=True)
        inventory = str(fleet.inventory)
        ping = ["ansible", "-i", inventory, "all", "-m", "ansible.builtin.ping"]
        playbook = ["ansible-playbook", "-i", inventory]

        # Run folders side by side in `out` share its probes.json; a first audit gets a
        # folder of its own, with no record beside it.
        def audit(folder, *extra):
            return [*playbook, "audit.yml", "-e", "portpool_report_dir=%s/%s" % (out, folder),
                    "-e", "portpool_report_latest_link=false", *extra]

        def sliced(round_number):
            total = Measure()
            folders = []
            for number, hosts in enumerate(slices_of(names, args.slices), 1):
                folder = "r%d-slice-%d" % (round_number, number)
                total += measured(fleet, audit(folder, "--limit", ",".join(hosts),
                                               "-e", "portpool_audit_slice=%d" % number), out)
                folders.append("%s/%s" % (out, folder))
            merge = [*playbook, "playbooks/report.yml", "-e", "portpool_report_gate=false",
                     "-e", "portpool_report_latest_link=false",
                     "-e", "portpool_report_dir=%s/r%d-merged" % (out, round_number),
                     "-e", '{"portpool_report_results": [%s]}' % ", ".join(
                         '"%s"' % folder for folder in folders)]
            return total + measured(fleet, merge, out)

        measured(fleet, ping, out)
        measured(fleet, audit("warm"), out)
        runs = {"ping": [], "first": [], "audit": [], "noprobe": [], "sliced": []}
        for number in range(args.rounds):
            runs["ping"].append(measured(fleet, ping, out))
            runs["first"].append(measured(fleet, audit("first-%d/run" % number), out))
            runs["audit"].append(measured(fleet, audit("r%d" % number), out))
            runs["noprobe"].append(measured(fleet, audit(
                "r%d-noprobe" % number, "-e", "portpool_audit_probe=false"), out))
            runs["sliced"].append(sliced(number))
            print("  round %d: ping %.1fs  first audit %.1fs  repeat audit %.1fs  without probe"
                  " %.1fs  %d slices + merge %.1fs" % (number + 1, *(runs[key][-1].wall for key in (
                      "ping", "first", "audit", "noprobe")), args.slices, runs["sliced"][-1].wall),
                  flush=True)
    ping_wall = statistics.median(run.wall for run in runs["ping"])
    print("bench.audit: %d hosts, %d rounds, medians (forks as in ansible.cfg):"
          % (args.hosts, args.rounds))
    print(line("ansible all -m ping", runs["ping"], args.hosts, ping_wall))
    print(line("audit.yml, first (every host holds)", runs["first"], args.hosts, ping_wall))
    print(line("audit.yml, repeat (target <= 1.3x)", runs["audit"], args.hosts, ping_wall))
    print(line("audit.yml without the probe", runs["noprobe"], args.hosts, ping_wall))
    print(line("%d slices one after another + merge" % args.slices, runs["sliced"], args.hosts,
               ping_wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
