"""Benchmark: playbooks/tune.yml against the old four-round-trip flow on one fleet.

    python -m bench.tune [--hosts 3] [--rounds 3]

Builds an SSH test fleet (needs root) and, each round, runs the old flow
(bench/tune_before/tune.yml: preflight, apply, portpool_facts with the probe, then
a verify call that gets the facts and the probe back) and the current tune.yml
alternately, each on hosts that it changes (rollback.yml in between, not timed).
Both run with -vvv, and the SSH connections ansible opens to each host are
counted per host address from their "ESTABLISH SSH CONNECTION" lines. Prints
median wall times, their ratio, and the connection counts.
"""

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from tests.fleet.harness import Fleet, HostSpec

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"ip_local_port_range": "30000 50999", "tcp_tw_reuse": 1}
FLOWS = {"before": "bench/tune_before/tune.yml", "after": "playbooks/tune.yml"}


def play(fleet, playbook, *args):
    """(wall seconds, output) of one ansible-playbook run; fails loudly."""
    extra = json.dumps({"portpool_tune_settings": SETTINGS, "portpool_tune_serial": ["100%"]})
    started = time.perf_counter()
    result = fleet.playbook(playbook, *args, "-e", extra)
    elapsed = time.perf_counter() - started
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s" % (playbook, result.returncode, output[-4000:]))
    return elapsed, output


def round_trips(output):
    """Connections ansible opened, by address (one per module call with pipelining)."""
    return dict(Counter(re.findall(r"^<([^>]+)> ESTABLISH SSH CONNECTION", output, re.M)))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.tune",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    specs = [HostSpec(name="t%02d" % (index + 1), groups=("bench",))
             for index in range(args.hosts)]
    times = {name: [] for name in FLOWS}
    trips = {name: None for name in FLOWS}
    with Fleet.create(specs) as fleet:
        host = specs[0].name
        play(fleet, "playbooks/rollback.yml")  # warm-up: ControlPersist masters, caches
        for number in range(args.rounds):
            for name, playbook in FLOWS.items():
                elapsed, output = play(fleet, playbook, "-vvv")
                if "changed: [%s]" % host not in output:
                    raise SystemExit("%s did not change %s: nothing measured" % (playbook, host))
                times[name].append(elapsed)
                trips[name] = round_trips(output)
                play(fleet, "playbooks/rollback.yml")
            print("  round %d: before %.2fs  after %.2fs" % (
                number + 1, times["before"][-1], times["after"][-1]), flush=True)
    before, after = (statistics.median(times[name]) for name in FLOWS)
    print("tune.yml on %d changed hosts: before median %.2fs, after median %.2fs, "
          "ratio after/before %.2fx; SSH connections per changed host: before %s, after %s"
          % (args.hosts, before, after, after / before, trips["before"], trips["after"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
