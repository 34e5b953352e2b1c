#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

DOCUMENTATION = r"""
---
module: portpool_probe
short_description: Measure a host's ephemeral-port pool the way the kernel really allocates it
description:
  - Measures empirically what the sysctls only promise. It connects to one destination
    until C(connect) fails with C(EADDRNOTAVAIL), keeping every connection open, and
    compares the count with the size of C(net.ipv4.ip_local_port_range) minus the
    C(net.ipv4.ip_local_reserved_ports) inside it.
  - While that destination is exhausted it checks the three facts of the
    bind-before-connect trap; a connection to a second destination still succeeds (the pool
    is per destination ip:port), C(bind) to port 0 fails with C(EADDRINUSE), and
    C(IP_BIND_ADDRESS_NO_PORT) + bind + connect succeeds.
  - It then churns (connect and close, client first) to a remote-like and to a loopback
    destination, and reports how many connections went through before the first failure,
    the rate achieved, whether TIME_WAIT reuse took effect, and the sustainable rate the
    model predicts (usable ports / 60 s, or usable ports / C(tcp_tw_reuse_delay) with reuse).
  - The hold is fast and exact. Where the kernel allows it, sockets in repair mode
    (C(TCP_REPAIR)) get their port from connect()'s own search without sending a packet, and
    worker processes take the inside of the range chunk by chunk, each search narrowed with
    C(IP_LOCAL_PORT_RANGE) (or, where the kernel refuses that option, the lab's own range
    narrowed one chunk at a time). A final pass with connect()'s own search over the whole
    range then takes the two end ports if it can, so the count is what an application gets,
    and RV(probe.hold.missing_ports) names every usable port that was not handed out. Where
    C(TCP_REPAIR) is refused it holds real connections instead; RV(probe.method) says which
    way was used and why.
  - In C(mode=lab) (the default) nothing in the host's network namespace is touched. A
    forked child calls C(unshare) with C(CLONE_NEWNET) (as root) or C(CLONE_NEWUSER) and
    C(CLONE_NEWNET) (without root, where the kernel allows unprivileged user namespaces); the
    lab namespaces are anonymous and die with that child, even when the module is killed with
    SIGKILL. The child brings C(lo) up, puts
    198.18.0.1/15 on it (198.18.0.0/15 destinations then behave as remote peers for
    C(tcp_tw_reuse=2)) and uses 127.0.0.5 as the loopback destination. It copies the host's
    C(ip_local_port_range), C(ip_local_reserved_ports), C(ip_unprivileged_port_start),
    C(tcp_tw_reuse), C(tcp_tw_reuse_delay) (when the kernel has it), C(tcp_timestamps) and
    C(tcp_max_tw_buckets) into the lab, and raises the lab's own C(net.core.somaxconn) so
    its listener never drops a connection. Without root and without user namespaces it fails
    with one line naming the setting that refuses them; use C(become) then.
  - When the per-process descriptor limit (C(RLIMIT_NOFILE)) is below the pool, the hold is
    spread over worker processes (a pool is per network namespace, descriptors are per
    process) and the limit is reported as a finding of its own.
  - Every exit path closes every socket and reaps every child; the processes die with the
    module (parent-death signal), so nothing remains after SIGKILL. The module also ends
    the probe when its own parent or its output channel goes away (a killed controller).
  - Test hook, environment variable C(PORTPOOL_PROBE_REFUSE) (comma-separated C(repair),
    C(port_range_option), C(userns)) makes the probe act as if the kernel refused those,
    to exercise each fallback.
version_added: "1.0.0"
author:
  - portpool contributors (!UNKNOWN)
options:
  mode:
    description:
      - C(lab) measures in a private, anonymous network namespace carrying the host's
        settings; the host's own pool is never touched. Needs root.
      - C(host) measures in the host's own network namespace against a loopback destination
        (the 2012 NANOG thread's experiment), for hosts where namespaces are unavailable.
        While it runs, programs on the host that C(bind) to port 0 may fail. It is bounded
        by O(timeout) and O(max_connections), and checks when it finishes that no socket of
        its own is left in the host's namespace. Connections it churns stay in TIME_WAIT
        for 60 seconds towards its own loopback destination only.
    type: str
    choices: [lab, host]
    default: lab
  scope:
    description:
      - C(quick) narrows the lab's range to O(sample_ports) usable ports, starting at the
        configured low end (same start parity, reserved ports inside stay reserved), so every
        check runs in well under a second; the full-range expected count is still computed
        and reported, and RV(probe.measured_range) says which range was measured.
      - C(full) measures the whole configured range, for the real count (a fraction of a
        second for 28,232 ports with repair-mode sockets and a narrowed search; seconds with
        the fallbacks, which RV(probe.hold.seconds) and RV(probe.method) report).
      - In C(mode=host) the host's range cannot be narrowed; C(quick) there caps the hold at
        O(sample_ports) connections and the exhaustion checks are reported as null unless the
        whole range fits in the sample.
    type: str
    choices: [quick, full]
    default: quick
  sample_ports:
    description:
      - Usable ports a C(quick) run measures.
      - Defaults to 1000, or to the whole pool when the range has fewer usable ports. An
        explicit value larger than the pool fails.
    type: int
  churn_seconds:
    description:
      - Upper bound in seconds of connect-and-close per churn destination (both destinations
        at once). A run stops as soon as reuse is decided, C(tcp_tw_reuse_delay) (up to 2 s
        on kernels without that sysctl) after the first failure at most. C(0) disables churn.
        At most 30 in C(mode=host).
      - To see TIME_WAIT reuse take effect the run must outlast the time needed to use up the
        measured ports plus C(tcp_tw_reuse_delay) (1 s by default).
    type: float
    default: 1.5
  timeout:
    description:
      - Upper bound in seconds for the hold; when it expires the hold stops with
        RV(probe.hold.stopped_by=timeout). The whole probe is bounded by this plus
        O(churn_seconds) plus 30 s for set-up and teardown. At most 300 in C(mode=host).
    type: int
    default: 120
  max_connections:
    description:
      - Stop the hold after this many connections (RV(probe.hold.stopped_by=cap)). Unset
        means the measured pool is the only bound.
    type: int
  destination:
    description:
      - C(mode=host) only. The IPv4 loopback address (127.0.0.0/8) the hold connects to;
        the per-destination and churn checks use other 127.0.0.x addresses. Defaults to
        C(127.0.0.5).
    type: str
  namespace:
    description:
      - Measure the pool of another network namespace on the host (a container's or a
        pod's). The lab copies that namespace's C(net.*) values instead of the host's.
      - An C(ip netns) name (C(/run/netns/NAME)) or the path of a namespace file, such
        as C(/proc/PID/ns/net) of a process in the container. Needs root to enter it.
      - C(mode=lab) only. RV(probe.settings_from) says whose values were copied.
    type: str
  on_record:
    description:
      - Configuration keys (RV(probe.key)) whose lab measurement the caller already
        holds, from an earlier run or another host. When this host's key is one of them
        the hold is not repeated and RV(probe) holds only C(key), C(on_record=true),
        C(mode), C(scope), C(settings), C(settings_from) and C(summary).
      - The key hashes everything a lab measurement depends on (the kernel's release,
        build and architecture, root or not, the descriptor limits, the copied
        settings, the options and portpool's version), so a match measures nothing new.
      - C(mode=lab) only; C(mode=host) always measures.
    type: list
    elements: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: partial
    details: >-
      C(mode=lab) changes nothing on the host and runs in check mode. C(mode=host) would hold
      the host's own ports, so in check mode it measures nothing and returns RV(skipped).
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - C(changed) is always false.
  - Uses only the Python standard library on the target (ctypes for C(unshare) and C(prctl)
    on Python < 3.12, ioctls to configure C(lo)).
  - The listener the probe opens for itself uses a port outside the measured range (port 9
    in the lab), because a port bound explicitly is skipped by the search of C(connect).
seealso:
  - name: NANOG thread, TCP time_wait and port exhaustion for servers (2012)
    description: The experiment the hold reproduces.
    link: https://mailman.nanog.org/pipermail/nanog/2012-December/054082.html
  - name: ip-sysctl documentation
    description: C(ip_local_port_range), C(ip_local_reserved_ports), C(tcp_tw_reuse).
    link: https://docs.kernel.org/networking/ip-sysctl.html
"""

EXAMPLES = r"""
- name: Verify every semantic of the pool quickly, in a lab namespace
  portpool_probe:
  become: true
  register: probe_quick

- name: Count the whole configured pool
  portpool_probe:
    scope: full
    churn_seconds: 0
  become: true
  register: probe_full

- name: Fail when the pool is not what the settings promise
  ansible.builtin.assert:
    that:
      - probe_full.probe.matches_expected
    fail_msg: "{{ probe_full.probe.summary }}"

- name: Watch TIME_WAIT reuse over a longer churn on a small sample
  portpool_probe:
    sample_ports: 500
    churn_seconds: 3
  become: true

- name: Where namespaces are unavailable, run the thread's experiment on the host itself
  portpool_probe:
    mode: host
    scope: full
    timeout: 60
    max_connections: 30000
    churn_seconds: 0
"""

RETURN = r"""
skipped:
  description: True when C(mode=host) ran in check mode and measured nothing.
  returned: when skipped
  type: bool
probe:
  description: What was measured.
  returned: success, unless skipped
  type: dict
  contains:
    mode:
      description: C(lab) or C(host).
      type: str
      sample: lab
    scope:
      description: C(quick) or C(full).
      type: str
      sample: quick
    settings_from:
      description: Whose C(net.*) values the lab copied, C(host) or C(namespace PATH)
        (see O(namespace)).
      type: str
      sample: host
    key:
      description: C(mode=lab) only, else null. What this measurement depends on, hashed
        (see O(on_record)).
      type: str
      sample: 0f3c9a1d2b7e4c5a8f6e0d1c2b3a4958
    on_record:
      description: True when the key was in O(on_record) and nothing was measured.
      type: bool
      returned: when true
    range:
      description: The host's configured C(ip_local_port_range), [low, high].
      type: list
      elements: int
      sample: [32768, 60999]
    reserved_in_range:
      description: Ports of C(ip_local_reserved_ports) inside the configured range.
      type: int
      sample: 0
    expected:
      description: Usable ports of the configured range for one destination (range size minus
        reserved ports inside it), whatever the scope.
      type: int
      sample: 28232
    measured_range:
      description: The range the hold measured (narrowed in quick lab runs); same as
        RV(probe.hold.measured_range).
      type: list
      elements: int
      sample: [32768, 33767]
    hold:
      description: Connections to one destination, all kept open.
      type: dict
      contains:
        established:
          description: Connections still holding their port when the hold stopped.
          type: int
          sample: 1000
        lost:
          description: Connections that succeeded but were reset while held (their port
            went back to the pool, so they do not count); 0 on a healthy run.
          type: int
          sample: 0
        expected:
          description: Usable ports of the measured range (minus the listener's port if it
            had to lie inside).
          type: int
          sample: 1000
        target:
          description: What the hold aimed for, RV(probe.hold.expected) or O(max_connections)
            when lower.
          type: int
          sample: 1000
        stopped_by:
          description: C(EADDRNOTAVAIL) (the pool is exhausted), C(EMFILE) (descriptor limit),
            C(timeout) or C(cap) (O(max_connections)).
          type: str
          sample: EADDRNOTAVAIL
        low_end_may_be_skipped:
          description: The measured range's ends share parity (an odd number of ports) and
            its low end is not reserved. connect()'s own search then may leave out one end
            port (either one), so a hold one short of RV(probe.hold.expected) can still match.
          type: bool
          sample: false
        missing_ports:
          description: Usable ports of the measured range that no held socket got, as compact
            ranges; null when the hold did not exhaust the pool or could not tell (no
            partitioned search).
          type: list
          elements: str
          sample: ["50002"]
        final_pass:
          description: Ports the final pass (connect()'s own search over the whole measured
            range) took after the chunks.
          type: int
          sample: 2
        ends_held_directly:
          description: Ends of a same-parity range that the final pass did not get and that
            were then held with a search narrowed to that one port. connect()'s own search
            reaches the low end only when it starts on it (one search in (ports - 1) / 2),
            which a fill from empty usually meets on the way and the final pass seldom does.
            Counted in RV(probe.hold.established).
          type: list
          elements: int
          sample: [40000]
        workers_peak_rss_kb:
          description: Sum of the hold workers' peak resident memory, in KiB.
          type: int
          sample: 40000
        worker_reasons:
          description: Why each worker process stopped.
          type: list
          elements: str
          sample: [EADDRNOTAVAIL]
        seconds:
          description: Duration of the hold, from the first worker start to the last report.
          type: float
          sample: 0.07
        workers:
          description: Processes the hold was spread over.
          type: int
          sample: 1
        fd_limit_per_process:
          description: RLIMIT_NOFILE each worker ran with (the soft limit raised to the hard
            one).
          type: int
          sample: 20000
        fd_limit_below_pool:
          description: True when one process cannot hold the configured pool (the thread's
            NR_OPEN case); holding it takes several processes.
          type: bool
          sample: true
        measured_range:
          description: The range the hold measured, [low, high].
          type: list
          elements: int
          sample: [32768, 33767]
    per_destination:
      description: While the hold destination is exhausted, a connection to a second
        destination succeeds. Null when the hold did not exhaust the pool.
      type: bool
      sample: true
    bind_zero_blocked:
      description: While exhausted, C(bind) to C(0.0.0.0) port 0 fails with EADDRINUSE (the
        bind-before-connect trap). Null when the pool was not exhausted.
      type: bool
      sample: true
    bind_address_no_port_ok:
      description: While exhausted, C(IP_BIND_ADDRESS_NO_PORT) + bind + connect to the second
        destination succeeds. Null when the pool was not exhausted.
      type: bool
      sample: true
    churn:
      description: Connect-and-close runs, client closing first. Null when O(churn_seconds=0).
      type: dict
      contains:
        remote:
          description: Churn to a remote-like 198.18.0.0/15 destination (null in host mode).
          type: dict
          contains:
            destination:
              description: Address and port churned to.
              type: str
              sample: 198.18.0.4:9
            connections:
              description: Connections that succeeded during the run.
              type: int
              sample: 1000
            failures:
              description: Failed connect() calls (after each one the run pauses 2 ms).
              type: int
              sample: 600
            seconds:
              description: Duration of the run.
              type: float
              sample: 1.5
            before_first_failure:
              description: Connections before the first EADDRNOTAVAIL; null when the run never
                used RV(probe.churn.range) up. Where TIME_WAIT reuse applies, a churn slower than
                usable ports / reuse delay gets ports back before it runs out, so this can be
                null or above the pool; a small O(sample_ports) keeps it exact.
              type: int
              sample: 1000
            first_failure_at:
              description: Seconds into the run of the first EADDRNOTAVAIL; null when none.
              type: float
              sample: 0.05
            expected_before_first_failure:
              description: Usable ports of RV(probe.churn.range).
              type: int
              sample: 1000
            rate_per_s:
              description: Connections per second achieved over the run.
              type: float
              sample: 666.7
            reuse_expected:
              description: Whether TIME_WAIT reuse should apply to this destination
                (tcp_tw_reuse 1, or 2 for loopback, with tcp_timestamps on).
              type: bool
              sample: false
            reuse_effective:
              description: True when connections succeeded after the first failure (a
                TIME_WAIT 4-tuple was reused), false when none did for longer than the reuse
                delay, null when the run could not tell.
              type: bool
              sample: false
            model_rate_per_s:
              description: Sustainable rate for the measured range by the model.
              type: float
              sample: 16.7
            tw_overflow:
              description: TCPTimeWaitOverflow increase during the run (sockets that skipped
                TIME_WAIT because of tcp_max_tw_buckets), in the measuring namespace.
              type: int
              sample: 0
            other_errors:
              description: Failures other than EADDRNOTAVAIL, by errno name.
              type: dict
              sample: {}
        loopback:
          description: Same fields, for a 127.0.0.0/8 destination.
          type: dict
        range:
          description: The ports the churn runs used. In the lab, the first O(sample_ports)
            usable ports of the range (a run only has to use a destination up to see whether
            TIME_WAIT is reused, and using up the whole default range takes seconds of CPU);
            in host mode, the host's range.
          type: list
          elements: int
          sample: [32768, 33767]
        model_rate_per_s:
          description: Sustainable new connections per second to one remote destination for
            the configured range; usable ports / 60 s, or usable ports / reuse delay when
            tcp_tw_reuse applies to remote peers.
          type: float
          sample: 470.5
        model_rate_loopback_per_s:
          description: The same for a loopback destination.
          type: float
          sample: 28232.0
        seconds:
          description: O(churn_seconds).
          type: float
          sample: 1.5
        tw_reuse:
          description: The tcp_tw_reuse in effect.
          type: int
          sample: 2
        tw_reuse_delay_ms:
          description: The reuse delay in effect (1000 when the kernel lacks the sysctl).
          type: int
          sample: 1000
        timestamps:
          description: The tcp_timestamps in effect.
          type: int
          sample: 1
    method:
      description: How the hold was taken. C(sockets) is C(repair) or C(connect) (real
        connections); C(partition) is C(socket) (IP_LOCAL_PORT_RANGE), C(namespace) (the
        lab's own range, chunk by chunk) or C(none); C(lab) is C(root), C(user namespace) or
        null (host mode); C(notes) says in one line each what the kernel refused.
      type: dict
      sample: {"sockets": "repair", "partition": "socket", "lab": "root", "notes": []}
    matches_expected:
      description: The hold stopped with EADDRNOTAVAIL after exactly RV(probe.hold.expected)
        connections less the RV(probe.hold.missing_ports), and those are none or one end of a
        range whose ends share parity (the only ports connect()'s own search can miss).
      type: bool
      sample: true
    listener_port:
      description: Port of the probe's own listener.
      type: int
      sample: 9
    destinations:
      description: Addresses used for the hold, the second destination and the churn runs.
      type: dict
      sample: {"hold": "198.18.0.2", "second": "198.18.0.3", "churn_remote": "198.18.0.4",
               "churn_loopback": "127.0.0.5"}
    settings:
      description: The host's values of the copied sysctls (null for those the kernel lacks).
      type: dict
      sample: {"net.ipv4.ip_local_port_range": "32768 60999", "net.ipv4.tcp_tw_reuse": "2"}
    host_sockets:
      description: C(mode=host) only; sockets (not TIME_WAIT) on the probe's port in the
        host's namespace before and after, and whether they are back where they were.
      type: dict
      sample: {"before": 0, "after": 0, "restored": true}
    summary:
      description: One line saying which range was measured and how the hold ended.
      type: str
      sample: "quick: measured 32768-33767 (1000 usable ports) in a lab namespace; ..."
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.portpool_probe_run import measure, probe_argument_spec


def get_argument_spec():
    return probe_argument_spec()


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True)
    outcome = measure(module.params, module.check_mode)
    if outcome.error:
        module.fail_json(msg=outcome.error)
    if outcome.skipped:
        module.exit_json(changed=False, skipped=True, msg=outcome.skipped)
    module.exit_json(changed=False, probe=outcome.probe)


if __name__ == "__main__":
    main()
