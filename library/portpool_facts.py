#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portpool_facts
short_description: Ephemeral-port pool settings, where they come from, and live port pressure
description:
  - Collects in one call everything needed to judge a host's ephemeral-port pool, and
    returns it as C(ansible_facts.portpool).
  - The sysctl settings that shape the pool, typed and whitespace-normalised; a key the
    running kernel lacks is V(null), never an error.
  - The value of each setting that would win at boot, following systemd-sysctl's order
    (C(/etc/sysctl.d), C(/run/sysctl.d), C(/usr/local/lib/sysctl.d), C(/usr/lib/sysctl.d),
    C(/lib/sysctl.d), then C(/etc/sysctl.conf)), every other file that sets it, and the
    keys whose runtime value differs from it.
  - TCP socket counts per state, and the outgoing connections (local port inside the
    ephemeral range) grouped per destination address and port against the
    per-destination pool. Socket data comes from the kernel's NETLINK_SOCK_DIAG
    interface (what C(ss) uses) with the states filtered in the kernel, and from
    C(/proc/net/tcp) and C(/proc/net/tcp6) where netlink is unavailable.
  - Listening sockets whose port lies inside the ephemeral range, and the descriptor
    limits of named processes or systemd units.
  - Read-only. A missing or unreadable C(/proc) file gives V(null) and a warning, never
    a failure.
  - Needs only the Python standard library on the target. Run it as root to see every
    process's descriptors; sockets and sysctls are readable by any user.
version_added: "0.1.0"
author:
  - portpool contributors (!UNKNOWN)
options:
  processes:
    description:
      - Process names (as in C(/proc/PID/comm), at most 15 characters are compared) or
        systemd units (names ending in C(.service), C(.scope), C(.socket) or C(.slice))
        whose descriptor limits to report under C(limits.processes).
      - A unit's main pid comes from C(systemctl show -p MainPID) when systemd runs,
        else from the unit's cgroup under C(/sys/fs/cgroup).
    type: list
    elements: str
    default: []
  destinations_top:
    description:
      - How many destinations to return, busiest first. The number of destinations in
        all is returned as well.
    type: int
    default: 20
  config_root:
    description:
      - Directory the sysctl configuration paths (C(/etc/sysctl.d) and the others) are
        read under. Meant for tests and for auditing a mounted image.
    type: path
    default: /
  proc_root:
    description:
      - Where procfs is mounted. Meant for tests with fixture trees; a value other than
        C(/proc) implies O(socket_source=proc).
    type: path
    default: /proc
  socket_source:
    description:
      - Where socket data comes from. V(auto) uses netlink sock_diag and falls back to
        C(/proc/net/tcp) and C(/proc/net/tcp6) when netlink is unavailable.
    type: str
    choices: [auto, netlink, proc]
    default: auto
  probe_failure:
    description:
      - What a failed probe does. V(fail) fails the module (the facts are still in the
        result). V(report) returns the facts and the probe's message as RV(probe_error),
        so a caller that judges the facts (the audit) gets them without a failed task
        dumping them to the console.
    type: str
    choices: [fail, report]
    default: fail
  probe:
    description:
      - Also run M(portpool_probe) with these options, in the same call, and return its
        result as RV(probe). The audit uses this to pay one round trip per host.
      - O(probe.sample_ports) larger than the host's usable pool is lowered to the pool
        (a narrow range is a finding, not an error), unlike in M(portpool_probe).
      - When the probe fails the module fails with the probe's message, and the result
        still carries the facts under C(ansible_facts.portpool); with
        O(probe_failure=report) it succeeds and returns the message as RV(probe_error).
      - See M(portpool_probe) for what each option does.
    type: dict
    suboptions:
      mode:
        description: C(lab) (a private network namespace, needs root) or C(host).
        type: str
        choices: [lab, host]
        default: lab
      scope:
        description: C(quick) (O(probe.sample_ports) ports) or C(full) (the whole range).
        type: str
        choices: [quick, full]
        default: quick
      sample_ports:
        description: Usable ports a C(quick) run measures (1000 by default).
        type: int
      churn_seconds:
        description: Seconds of connect-and-close per churn destination; C(0) disables it.
        type: float
        default: 1.5
      timeout:
        description: Upper bound in seconds for the hold.
        type: int
        default: 120
      max_connections:
        description: Stop the hold after this many connections.
        type: int
      destination:
        description: C(mode=host) only; the loopback address the hold connects to.
        type: str
      namespace:
        description:
          - Copy this network namespace's values into the lab instead of the host's
            (an C(ip netns) name or a path such as C(/proc/PID/ns/net)); see
            M(portpool_probe).
        type: str
      on_record:
        description:
          - Keys of lab measurements the caller already holds; a host whose key is
            among them does not repeat the hold (see M(portpool_probe)).
        type: list
        elements: str
  namespaces:
    description:
      - Other network namespaces on the host (containers, pods, C(ip netns)), each read
        from inside with the same facts as the host's, under C(namespaces).
      - A namespace is found through the files runtimes bind-mount (C(/run/netns),
        C(/run/docker/netns)) and through every process's C(/proc/PID/ns/net), and
        counted once by its inode. Entering them needs root; without it they are
        counted but not read, and C(namespaces.reasons) says so.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Look for other namespaces at all.
        type: bool
        default: true
      max_count:
        description: Read at most this many namespaces; the rest are counted as skipped.
        type: int
        default: 64
      seconds:
        description: Time budget for reading them; namespaces not started by then are skipped.
        type: float
        default: 10.0
      match:
        description:
          - Shell-style patterns; only namespaces whose name, C(ip netns) name,
            container name or id, or C(pod-namespace/pod-name) matches one are read.
            Empty reads them all.
        type: list
        elements: str
        default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    description: Only reads; check mode returns the same facts.
  diff_mode:
    support: none
  platform:
    platforms: posix
  facts:
    support: full
notes:
  - Outgoing connections are told apart from incoming ones by their local port, the
    way the kernel picks ports for anonymous C(connect()). A socket whose local port
    has a listener is taken as incoming even when the port lies inside the range.
  - Each destination's C(utilisation) is its sockets divided by the usable ports of
    the range (range minus reserved ports), because the kernel's pool is per
    destination address and port.
  - C(/etc/sysctl.conf) is read last, as C(sysctl --system) does; distributions whose
    systemd reads it through an C(/etc/sysctl.d/99-sysctl.conf) symlink get it once, in
    that place.
seealso:
  - name: sysctl.d(5)
    description: File precedence systemd-sysctl applies at boot.
    link: https://www.freedesktop.org/software/systemd/man/latest/sysctl.d.html
  - name: sock_diag(7)
    description: The netlink interface the socket data comes from.
    link: https://man7.org/linux/man-pages/man7/sock_diag.7.html
"""

EXAMPLES = r"""
- name: Gather the port-pool facts
  portpool_facts:

- name: Show the five busiest destinations
  ansible.builtin.debug:
    var: ansible_facts.portpool.destinations.top[:5]

- name: Also report the descriptor limits of nginx and the haproxy unit
  portpool_facts:
    processes:
      - nginx
      - haproxy.service
    destinations_top: 50

- name: Gather the facts and run a quick probe in one round trip (needs root)
  portpool_facts:
    probe:
      churn_seconds: 0
  become: true
  register: pool

- name: Read the sysctl.d tree of a mounted image instead of the running system's
  portpool_facts:
    config_root: /mnt/image
"""

RETURN = r"""
probe_error:
  description: Why the probe failed, with O(probe_failure=report); the facts are complete.
  returned: when the probe failed and O(probe_failure=report)
  type: str
  sample: "mode=lab needs root to create its network namespace: use become: true"
probe:
  description: What M(portpool_probe) returns as RV(portpool_probe#module:probe), when
    O(probe) is set; null when the probe was skipped (O(probe.mode=host) in check mode).
  returned: when O(probe) is set
  type: dict
  sample: {"matches_expected": true, "hold": {"established": 1000, "expected": 1000}}
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    portpool:
      description: Everything portpool knows about the host's ephemeral-port pool.
      returned: always
      type: complex
      contains:
        sysctl:
          description:
            - Runtime values, typed. V(null) when the kernel lacks the key or it cannot
              be read (then with a warning).
            - C(ip_local_port_range) is V([low, high]); C(ip_local_reserved_ports) a
              sorted, merged list of V([low, high]); the others integers.
            - C(somaxconn) is C(net.core.somaxconn), C(nr_open) C(fs.nr_open),
              C(file_max) C(fs.file-max); the rest are C(net.ipv4.*).
          returned: always
          type: dict
          sample:
            ip_local_port_range: [32768, 60999]
            ip_local_reserved_ports: [[8080, 8080]]
            ip_unprivileged_port_start: 1024
            tcp_tw_reuse: 2
            tcp_tw_reuse_delay: 1000
            tcp_timestamps: 1
            tcp_max_tw_buckets: 262144
            tcp_fin_timeout: 60
            tcp_tw_recycle: null
            somaxconn: 4096
            nr_open: 1073741816
            file_max: 9223372036854775807
        kernel:
          description: Kernel release and its parsed version V([major, minor, patch]).
          returned: always
          type: dict
          sample: {release: 6.18.0-1-amd64, version: [6, 18, 0]}
        ephemeral:
          description:
            - The per-destination pool, from the range and the reserved ports. V(null)
              when the range cannot be read.
            - Keys C(low), C(high), C(size), C(reserved_in_range), C(usable).
          returned: always
          type: dict
          sample: {low: 32768, high: 60999, size: 28232, reserved_in_range: 0, usable: 28232}
        persisted:
          description:
            - What would be applied at boot. C(keys) maps each sysctl, by its short
              name as in C(sysctl), to V(null) (nothing sets it) or to C(value),
              C(file), C(line),
              C(ignore_errors) (the C(-) prefix), C(glob) (the pattern that matched, or
              V(null)) and C(also) (every other assignment as C(file), C(line),
              C(value), in reading order).
            - C(files) lists the files read in order, C(masked) the C(/dev/null)
              symlinks, C(root) the O(config_root) used.
            - C(drift) maps each key whose runtime value differs from the winning one
              to C(runtime), C(persisted) and C(file); values are compared typed, so
              whitespace differences are not drift.
          returned: always
          type: dict
          sample:
            root: /
            files: [/etc/sysctl.d/50-pool.conf, /etc/sysctl.conf]
            masked: []
            keys:
              ip_local_port_range:
                value: 1024 65000
                file: /etc/sysctl.d/50-pool.conf
                line: 3
                ignore_errors: false
                glob: null
                also: [{file: /etc/sysctl.d/10-base.conf, line: 1, value: 32768 60999}]
            drift:
              ip_local_port_range:
                runtime: 32768 60999
                persisted: 1024 65000
                file: /etc/sysctl.d/50-pool.conf
        sockets:
          description:
            - TCP sockets per state for C(ipv4), C(ipv6) and their C(total) (state
              names as C(ss) spells them, lower case with underscores; request
              sockets count as C(syn_recv)), C(time_wait) (IPv4 and IPv6), the
              C(TCPTimeWaitOverflow) counter from C(/proc/net/netstat) (V(null) when
              unreadable) and C(source) (V(netlink) or V(proc)).
            - V(null) when neither netlink nor C(/proc/net/tcp) can be read.
          returned: always
          type: dict
          sample:
            source: netlink
            time_wait: 12
            TCPTimeWaitOverflow: 0
            total: {established: 4, syn_sent: 0, syn_recv: 0, fin_wait1: 0, fin_wait2: 0,
                    time_wait: 12, close: 0, close_wait: 0, last_ack: 0, listen: 3,
                    closing: 0}
            ipv4: {established: 4, time_wait: 12, listen: 2}
            ipv6: {established: 0, time_wait: 0, listen: 1}
        destinations:
          description:
            - Outgoing connections (local port inside the ephemeral range, no listener
              on it) grouped by remote C(address) and C(port). C(top) holds the
              O(destinations_top) busiest by C(total), each with C(time_wait),
              C(established), C(total) (sockets in any state but LISTEN and CLOSE)
              and C(utilisation) (C(total) / C(ephemeral.usable)). C(count) is the
              number of destinations in all.
            - V(null) when sockets or the range cannot be read.
          returned: always
          type: dict
          sample:
            count: 2
            top:
              - {address: 198.18.0.2, port: 443, time_wait: 20000, established: 12,
                 total: 20012, utilisation: 0.7088}
              - {address: "2001:db8::1", port: 80, time_wait: 3, established: 0,
                 total: 3, utilisation: 0.0001}
        listeners_in_range:
          description:
            - Listening sockets whose port lies inside the ephemeral range, with
              C(address), C(port), C(family) and C(reserved) (the port is in
              C(ip_local_reserved_ports)). An unreserved one may fail to bind after a
              restart while outgoing connections hold its port. V(null) when sockets
              or the range cannot be read.
          returned: always
          type: list
          elements: dict
          sample: [{address: 0.0.0.0, port: 40500, family: ipv4, reserved: false}]
        limits:
          description:
            - C(nofile) is this module's own RLIMIT_NOFILE as C(soft) and C(hard).
            - C(processes) has one entry per running process found for each
              O(processes) name (a unit gives its main pid), with C(name), C(kind)
              (V(process) or V(unit)), C(pid), C(open_fds) and C(max_open_files)
              (C(soft), C(hard) from C(/proc/PID/limits); V(unlimited) where so). A
              name with no running process gives one entry with C(pid) V(null). Values
              that cannot be read are V(null), with a warning.
          returned: always
          type: dict
          sample:
            nofile: {soft: 1024, hard: 524288}
            processes:
              - {name: nginx, kind: process, pid: 812, open_fds: 37,
                 max_open_files: {soft: 1024, hard: 524288}}
        namespaces:
          description:
            - The host's other network namespaces (see O(namespaces)); V(null) when
              O(namespaces.enabled) is false.
            - C(found) counts them all; C(inspected) those read; C(skipped) counts
              C(filtered) (by O(namespaces.match)), C(limit), C(time) and C(errors);
              C(reasons) says why any were not read; C(stale_files) lists files under
              the netns folders with no namespace mounted on them.
            - Each of C(items) has C(id) (C(net:[inode])), C(inode), C(name) (for
              people), C(kind) (V(kubernetes), V(container), V(named) or V(process)),
              C(netns) (its C(ip netns) name), C(container) (C(id), C(name)), C(pod)
              (C(uid), C(namespace), C(name)), C(holder) (C(pid), C(comm)),
              C(processes) (how many hold it), C(error), and the namespace's own
              C(sysctl) (C(net.*) keys only), C(ephemeral), C(sockets),
              C(destinations) and C(listeners_in_range), shaped as the host's.
          returned: always
          type: dict
          sample:
            found: 1
            inspected: 1
            skipped: {filtered: 0, limit: 0, time: 0, errors: 0}
            reasons: []
            stale_files: []
            seconds: 0.012
            items:
              - id: "net:[4026532301]"
                inode: 4026532301
                name: container web-1
                kind: container
                netns: null
                container: {id: 3f2a9c1b7d44, name: web-1}
                pod: null
                holder: {pid: 5123, comm: nginx}
                processes: 3
                error: null
                sysctl: {ip_local_port_range: [32768, 60999], tcp_tw_reuse: 2}
                ephemeral: {low: 32768, high: 60999, size: 28232, reserved_in_range: 0,
                            usable: 28232}
                sockets: {source: netlink, time_wait: 20000}
                destinations: {count: 1, top: [{address: 198.18.0.2, port: 5432,
                                                time_wait: 20000, established: 12,
                                                total: 20012, utilisation: 0.7088}]}
                listeners_in_range: []
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.portpool_limits import (
    describe_pid,
    is_unit,
    main_pid_from_cgroup,
    own_nofile,
    pids_by_comm,
    unit_cgroup_pids,
)
from ansible.module_utils.portpool_netns_inspect import (
    namespace_facts,
    namespaces_argument_spec,
)
from ansible.module_utils.portpool_persisted import find_drift, read_persisted
from ansible.module_utils.portpool_probe_run import measure, probe_argument_spec

# Re-exported: tests use them here.
from ansible.module_utils.portpool_snapshot import (  # noqa: F401  # pylint: disable=unused-import
    collect_sockets,
    network_snapshot,
    read_runtime,
    type_sysctls,
)
from ansible.module_utils.portpool_sockdiag import NetlinkUnavailable
from ansible.module_utils.portpool_sysctl import (
    KNOWN_KEYS,
    parse_kernel_version,
    read_sysctl,
    short_name,
)


def get_argument_spec():
    return {
        "processes": {"type": "list", "elements": "str", "default": []},
        "destinations_top": {"type": "int", "default": 20},
        "config_root": {"type": "path", "default": "/"},
        "proc_root": {"type": "path", "default": "/proc"},
        "socket_source": {"type": "str", "choices": ["auto", "netlink", "proc"],
                          "default": "auto"},
        "probe": {"type": "dict", "options": probe_argument_spec()},
        "probe_failure": {"type": "str", "choices": ["fail", "report"], "default": "fail"},
        "namespaces": {"type": "dict", "options": namespaces_argument_spec(), "default": {}},
    }


def kernel_facts(proc_root="/proc"):
    """Kernel release and parsed version, from procfs or uname()."""
    release = None
    try:
        release = read_sysctl("kernel.osrelease", os.path.join(proc_root, "sys"))
    except OSError:
        release = None
    if release is None:
        release = os.uname().release
    return {"release": release, "version": parse_kernel_version(release)}


def find_process_pids(module, name, proc_root):
    """(kind, [pids]) for a process name or systemd unit."""
    if not is_unit(name):
        return "process", pids_by_comm(name, proc_root)
    systemctl = module.get_bin_path("systemctl") if proc_root == "/proc" else None
    if systemctl and os.path.isdir("/run/systemd/system"):
        rc, out, _err = module.run_command(
            # `--`: a unit name is never read as an option (-H host would ssh there).
            [systemctl, "show", "--property", "MainPID", "--value", "--", name],
            environ_update={"LANG": "C", "LC_ALL": "C"})
        if rc == 0 and out.strip().isdigit():
            pid = int(out.strip())
            return "unit", [pid] if pid else []
    pids = unit_cgroup_pids(name)
    if not pids:
        return "unit", []
    main = main_pid_from_cgroup(pids, proc_root)
    return "unit", [main] if main else []


def limits_facts(module, names, proc_root):
    warnings = []
    processes = []
    for name in names:
        kind, pids = find_process_pids(module, name, proc_root)
        for pid in pids or [None]:
            entry, more = describe_pid(name, kind, pid, proc_root)
            processes.append(entry)
            warnings.extend(more)
    return {"nofile": own_nofile(), "processes": processes}, warnings


def gather(module, params):
    """Every fact; returns (facts, warnings). I/O is behind the helpers it calls."""
    proc_root = params["proc_root"]
    source = params["socket_source"]
    snapshot, runtime, warnings = network_snapshot(
        KNOWN_KEYS, proc_root, source, params["destinations_top"])
    persisted, more = read_persisted(KNOWN_KEYS, params["config_root"])
    warnings.extend(more)
    persisted["drift"] = find_drift(runtime, persisted["keys"])
    # Facts name every sysctl by its short name, as `sysctl` does (docs/facts.md).
    for table in ("keys", "drift"):
        persisted[table] = {short_name(key): value for key, value in persisted[table].items()}

    limits, more = limits_facts(module, params["processes"], proc_root)
    warnings.extend(more)
    namespaces = None
    if (params.get("namespaces") or {}).get("enabled") and proc_root == "/proc":
        namespaces, more = namespace_facts(params["namespaces"], params["destinations_top"])
        warnings.extend(more)
    facts = {
        "sysctl": snapshot["sysctl"],
        "kernel": kernel_facts(proc_root),
        "ephemeral": snapshot["ephemeral"],
        "persisted": persisted,
        "sockets": snapshot["sockets"],
        "destinations": snapshot["destinations"],
        "listeners_in_range": snapshot["listeners_in_range"],
        "limits": limits,
        "namespaces": namespaces,
    }
    return facts, warnings


def probe_options(options, facts):
    """The probe's options, with a sample larger than the usable pool lowered to it."""
    options = dict(options)
    usable = (facts.get("ephemeral") or {}).get("usable")
    if options.get("sample_ports") and usable and options["sample_ports"] > usable:
        options["sample_ports"] = usable
    return options


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    if module.params["destinations_top"] < 0:
        module.fail_json(msg="destinations_top must be 0 or more")
    bounds = module.params["namespaces"]
    if bounds["max_count"] < 0 or bounds["seconds"] <= 0:
        module.fail_json(msg="namespaces.max_count must be 0 or more and "
                             "namespaces.seconds above 0")
    try:
        facts, warnings = gather(module, module.params)
    except NetlinkUnavailable as exc:
        module.fail_json(msg="socket_source=netlink: %s" % exc)
    for warning in warnings:
        module.warn(warning)
    result = {"changed": False, "ansible_facts": {"portpool": facts}}
    if module.params["probe"] is not None:
        outcome = measure(probe_options(module.params["probe"], facts), module.check_mode)
        if outcome.error and module.params["probe_failure"] == "report":
            result["probe_error"] = outcome.error
            module.exit_json(**result)
        if outcome.error:
            module.fail_json(msg="probe: %s" % outcome.error, **result)
        if outcome.skipped:
            module.warn("probe skipped: %s" % outcome.skipped)
        result["probe"] = outcome.probe
    module.exit_json(**result)


if __name__ == "__main__":
    main()
