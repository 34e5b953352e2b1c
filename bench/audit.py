"""Benchmark: `ansible-playbook audit.yml` against `ansible all -m ping` on one fleet.

    python -m bench.audit [--hosts 16] [--rounds 5]

Builds an SSH test fleet of 16 hosts (needs root), warms both commands up once
(SSH ControlPersist masters, Python caches), then runs them alternately and
prints each median wall time and the median ratio audit/ping. Target: <= 1.5x.
For scale it also times the audit without the probe (portpool_audit_probe=false),
which shows what the quick probe adds to the one module round trip per host.
The audit writes its reports into a temporary folder, not the repository's.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fleet.harness import Fleet, HostSpec

REPO = Path(__file__).resolve().parents[1]


def timed(fleet, argv, env=None):
    """Wall time of one command run the way the harness runs ansible; fails loudly."""
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, env=dict(fleet.env(), **(env or {})),
                            capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s\n%s" % (
            " ".join(argv[:2]), result.returncode, result.stdout[-3000:], result.stderr[-2000:]))
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.audit",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    specs = [HostSpec(name="b%02d" % (index + 1), groups=("bench",))
             for index in range(args.hosts)]
    with Fleet.create(specs) as fleet, tempfile.TemporaryDirectory(prefix="ppaudit-bench-") as out:
        inventory = str(fleet.inventory)
        ping = ["ansible", "-i", inventory, "all", "-m", "ansible.builtin.ping"]
        audit = ["ansible-playbook", "-i", inventory, "audit.yml",
                 "-e", "portpool_report_dir=%s/run" % out]
        facts_only = [*audit, "-e", "portpool_audit_probe=false"]
        timed(fleet, ping)
        timed(fleet, audit)
        pings, audits, ratios, facts_ratios = [], [], [], []
        for _ in range(args.rounds):
            ping_s = timed(fleet, ping)
            audit_s = timed(fleet, audit)
            facts_s = timed(fleet, facts_only)
            pings.append(ping_s)
            audits.append(audit_s)
            ratios.append(audit_s / ping_s)
            facts_ratios.append(facts_s / ping_s)
            print("  round: ping %.2fs  audit %.2fs (%.2fx)  audit without probe %.2fs (%.2fx)"
                  % (ping_s, audit_s, ratios[-1], facts_s, facts_ratios[-1]), flush=True)
    print("audit.yml on %d hosts: median %.2fs; ansible all -m ping: median %.2fs; "
          "median ratio %.2fx (target <= 1.5x); without the probe %.2fx" % (
              args.hosts, statistics.median(audits), statistics.median(pings),
              statistics.median(ratios), statistics.median(facts_ratios)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
