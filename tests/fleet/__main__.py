"""Run the SSH test fleet by hand.

    python -m tests.fleet up --hosts 8        # prints the inventory path
    python -m tests.fleet up --spec fleet.yml # hosts described in YAML (HostSpec fields)
    python -m tests.fleet status
    python -m tests.fleet down                # removes every fleet started by hand

Needs root. Fleets made by `up` stay until `down`; ones made by tests go away
with the test run (or at the next start, if the run was killed).
"""

import argparse
import json
import sys

import yaml

from tests.fleet.harness import FLEET_RUN, Fleet, FleetError, HostSpec, cleanup_stale


def _specs(args):
    if args.spec:
        with open(args.spec, encoding="utf-8") as handle:
            entries = yaml.safe_load(handle) or []
        if not isinstance(entries, list):
            raise FleetError("%s: expected a list of hosts" % args.spec)
        specs = []
        for entry in entries:
            try:
                specs.append(HostSpec(**entry))
            except TypeError as exc:
                raise FleetError("%s: %s" % (args.spec, exc)) from exc
        return specs
    specs = [HostSpec(name="h%02d" % (index + 1)) for index in range(args.hosts)]
    if args.become and specs:
        specs[-1].become = True
    return specs


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a fleet and print its inventory path")
    up.add_argument("--hosts", type=int, default=4, help="number of hosts (default 4)")
    up.add_argument("--spec", help="YAML list of hosts (HostSpec fields)")
    up.add_argument("--no-become", dest="become", action="store_false",
                    help="do not reach the last host as the sudo user")
    commands.add_parser("down", help="remove fleets started by hand, and stale ones")
    commands.add_parser("status", help="list running fleets")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            fleet = Fleet.create(_specs(args), persistent=True)
            print(fleet.inventory)
        elif args.command == "down":
            removed = cleanup_stale(include_persistent=True)
            print("removed %d fleet(s)" % len(removed))
        else:
            for record in sorted(FLEET_RUN.glob("slot-*/fleet.json")):
                data = json.loads(record.read_text())
                print("slot %d: %d hosts, inventory %s/inventory.yml%s" % (
                    data["slot"], len(data["hosts"]), data["dir"],
                    " (by hand)" if data.get("persistent") else ""))
    except FleetError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
