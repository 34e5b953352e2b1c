"""A test host with "containers": other network namespaces inside it.

Run it as `unshare --net --mount --pid --fork --mount-proc --propagation
private python3 netns_host.py [containers]`: the new namespaces are the host,
so its /proc shows only its own processes and its /run/netns (a tmpfs here)
only its own named namespaces, as on a real machine. The host is tuned
(range HOST_RANGE, tcp_tw_reuse 1). With `containers` it also gets:

- a named namespace `pp-blue` (ip netns add), left at the kernel's defaults
  but for its range, set to BLUE_RANGE;
- a namespace held only by a process: facts_scenario.py's socket population
  (listeners, ESTABLISHED and TIME_WAIT to several destinations).

Prints one line `ready <json>` (the namespaces' inodes and the population's
pid inside the host), then holds everything until stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST_RANGE = "20000 29999"
BLUE_RANGE = "41000 41999"


def write(path, value):
    Path(path).write_text("%s\n" % value)


def main(with_containers):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    write("/proc/sys/net/ipv4/ip_local_port_range", HOST_RANGE)
    write("/proc/sys/net/ipv4/tcp_tw_reuse", "1")
    os.makedirs("/run/netns", exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run/netns"],
                   check=True)
    ready = {"namespaces": {}}
    population = None
    if with_containers:
        subprocess.run(["ip", "netns", "add", "pp-blue"], check=True)
        subprocess.run(["ip", "netns", "exec", "pp-blue", "sh", "-c",
                        "echo '%s' > /proc/sys/net/ipv4/ip_local_port_range" % BLUE_RANGE],
                       check=True)
        ready["namespaces"]["named"] = os.stat("/run/netns/pp-blue").st_ino
        population = subprocess.Popen(
            ["unshare", "--net", sys.executable, str(HERE / "facts_scenario.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = population.stdout.readline()
        if not line.startswith("ready "):
            raise SystemExit("population did not start: %r" % line)
        ready["namespaces"]["process"] = os.stat("/proc/%d/ns/net" % population.pid).st_ino
        ready["population_pid"] = population.pid
    print("ready " + json.dumps(ready), flush=True)
    sys.stdin.read()
    if population is not None:
        population.stdin.close()
        population.wait(timeout=10)


if __name__ == "__main__":
    main("containers" in sys.argv[1:])
