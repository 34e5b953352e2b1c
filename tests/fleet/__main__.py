"""Run the SSH test fleet by hand (as root, from the repository, with .venv/bin/python).

    INV=$(python -m tests.fleet up --hosts 4)   # stdout: the inventory path
    python -m tests.fleet up --spec fleet.yml    # hosts described in YAML (see up --help)
    python -m tests.fleet status                 # every fleet: slot, owner, inventory
    python -m tests.fleet churn "$INV" --host h01 --to h02:5432 --count 15000 --reset
    python -m tests.fleet down "$INV"            # this fleet only (or a slot number)
    python -m tests.fleet down                   # only fleets whose owner has gone

Fleets made by `up` belong to the shell that ran it (or --owner-pid) and stay
until `down`; ones made by tests go away with the test run (or at the next
start, if the run was killed).
"""

import argparse
import json
import sys

import yaml

from tests.fleet.harness import (
    FLEET_RUN,
    Fleet,
    FleetError,
    HostSpec,
    fleet_records,
    invoking_shell,
    owner_alive,
    remove_slots,
    resolve_slot,
    select_for_down,
    slot_subnet,
)

SPEC_HELP = """The --spec file is a YAML list of hosts, one mapping per host, with these
HostSpec fields:

%s

Example:

  - {name: proxy1, groups: [proxies], sysctls: {net.ipv4.ip_local_port_range: "40000 40999"}}
  - {name: db1, become: true, listeners: [5432]}
"""


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
                raise FleetError("%s: %s (fields: see up --help)" % (args.spec, exc)) from exc
        return specs
    specs = [HostSpec(name="h%02d" % (index + 1)) for index in range(args.hosts)]
    if args.become and specs:
        specs[-1].become = True
    return specs


def _destination(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT or ADDRESS:PORT, got %r" % text)
    return host, int(port)


def _parser():
    parser = argparse.ArgumentParser(prog="python -m tests.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="start a fleet and print its inventory path",
        epilog=SPEC_HELP % HostSpec.field_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("--hosts", type=int, default=4, help="number of hosts (default 4)")
    up.add_argument("--spec", help="YAML list of hosts (HostSpec fields, below)")
    up.add_argument("--no-become", dest="become", action="store_false",
                    help="do not reach the last host as the sudo user")
    up.add_argument("--owner-pid", type=int,
                    help="the fleet is stale once this process ends (default: the shell "
                         "that ran up)")
    down = commands.add_parser(
        "down", help="remove one fleet, or those whose owner has gone")
    down.add_argument("fleet", nargs="?",
                      help="slot number, slot directory or inventory path; without it, "
                           "only fleets whose owner process has ended")
    down.add_argument("--dry-run", action="store_true", help="only say what would go")
    commands.add_parser("status", help="list running fleets")
    churn = commands.add_parser(
        "churn", help="make TIME_WAIT on a host: connect and close first, N times")
    churn.add_argument("fleet", help="slot number, slot directory or inventory path")
    churn.add_argument("--host", required=True, help="the host the connections start from")
    churn.add_argument("--to", required=True, type=_destination,
                       help="HOST:PORT (a fleet host with a listener) or ADDRESS:PORT")
    churn.add_argument("--count", type=int, required=True, help="connections to make")
    churn.add_argument("--rate", type=float, default=0,
                       help="connections per second (default: as fast as possible)")
    churn.add_argument("--seconds", type=float, default=60, help="time limit (default 60)")
    churn.add_argument("--reset", action="store_true",
                       help="first drop the host's TIME_WAIT to that destination, so it "
                            "ends with exactly --count")
    return parser


def _status():
    for slot, record in fleet_records().items():
        if record is None:
            print("slot %d: unreadable record" % slot)
            continue
        print("slot %d: %d hosts, subnet %s, inventory %s/inventory.yml, owner pid %s (%s)%s"
              % (slot, len(record["hosts"]), slot_subnet(slot), record["dir"],
                 record.get("owner_pid"), "running" if owner_alive(record) else "gone",
                 ", by hand" if record.get("persistent") else ", a test run"))


def _down(args):
    slots, refusals = select_for_down(fleet_records(), args.fleet)
    for line in refusals:
        print("kept: %s" % line, file=sys.stderr)
    if args.dry_run:
        print("would remove: %s" % (", ".join("slot %d" % s for s in slots) or "nothing"))
        return 0
    removed = remove_slots(slots)
    print("removed %d fleet(s)%s" % (
        len(removed), ": " + ", ".join("slot %d" % s for s in removed) if removed else ""))
    return 1 if refusals else 0


def _churn(args):
    slot = resolve_slot(args.fleet)
    record = fleet_records().get(slot)
    if record is None:
        raise FleetError("no fleet in slot %d" % slot)
    fleet = Fleet.attach(record)
    destination, port = args.to
    if args.reset:
        fleet.clear_time_wait(args.host, destination, port)
    result = fleet.churn(args.host, destination, port, args.count, rate=args.rate,
                         seconds=args.seconds)
    print(json.dumps(result))
    return 0 if result["connected"] else 1


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            fleet = Fleet.create(_specs(args), persistent=True,
                                 owner_pid=args.owner_pid or invoking_shell())
            print(fleet.inventory)
            print("slot %d, subnet %s, %d hosts, owner pid %d; remove it with: "
                  "python -m tests.fleet down %d" % (
                      fleet.slot, slot_subnet(fleet.slot), len(fleet.hosts),
                      fleet.owner_pid, fleet.slot), file=sys.stderr)
            return 0
        if args.command == "down":
            return _down(args)
        if args.command == "churn":
            return _churn(args)
        if not FLEET_RUN.exists():
            return 0
        _status()
    except FleetError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
