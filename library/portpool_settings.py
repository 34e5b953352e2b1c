#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portpool_settings
short_description: Apply pool sysctls all-or-nothing, persist them, roll them back
description:
  - Manages a chosen subset of C(net.ipv4.ip_local_port_range), C(ip_local_reserved_ports),
    C(tcp_tw_reuse), C(tcp_tw_reuse_delay), C(tcp_timestamps) and C(tcp_max_tw_buckets).
    Keys left out of O(settings) are not touched.
  - "O(state=present) (the default): validate, plan, save the previous runtime values and
    the previous content (or absence) of the sysctl.d file in O(state_dir) before the first change,
    write the file atomically (mode 0644, a header, unquoted values), write only the
    changed keys straight to C(/proc/sys) (never C(sysctl --system)), read each back and
    compare it whitespace-normalised. If any step fails, everything written in this run
    is put back, so a host is either all old or all new."
  - Listening TCP ports that the new range covers are added to C(ip_local_reserved_ports),
    merged with what is already reserved, unless O(protect_listeners=false).
  - Warns, naming the file, when a file that systemd-sysctl applies after ours at boot
    sets one of the managed keys to a different value.
  - "O(state=absent): restore exactly the saved runtime values and file, then retire the
    saved state; a second rollback finds nothing to do."
  - The state directory must be a real directory owned by root that nobody else can
    write (created 0700); the saved state is checked like user input (its fields,
    managed keys only, values portpool accepts) and refused otherwise. A target file
    that is a symlink or a C(/dev/null) mask is never replaced. One C(flock) per host,
    on O(state_dir), serialises apply, verify and rollback.
  - "In check mode O(state=present) is the preflight: the host-side checks (the host's
    C(ip_unprivileged_port_start), keys the kernel lacks, a read-only C(/proc/sys)), and
    what would change, changing nothing. Problems come back as RV(input_errors) and
    RV(host_errors) and fail the call. Checking many hosts' settings at once on the
    controller is M(portpool_tune_validate)'s job."
  - Values are data, never commands. Nothing is run through a shell.
version_added: "1.0.0"
author: portpool contributors (!UNKNOWN)
options:
  state:
    description:
      - C(present) puts O(settings) in place (at runtime and in the file), verified in the
        same call; C(absent) puts back what the first tune found and retires the saved
        state. When neither O(state) nor O(mode) is given, C(present).
    type: str
    choices: [present, absent]
  mode:
    description:
      - Deprecated spelling of O(state), kept for playbooks written before it. C(apply) is
        O(state=present), C(rollback) is O(state=absent), C(preflight) is O(state=present)
        in check mode; C(verify) compares the host with O(expected).
      - Mutually exclusive with O(state).
    type: str
    choices: [preflight, apply, verify, rollback]
  settings:
    description:
      - Desired values by short name (C(ip_local_port_range), C(ip_local_reserved_ports),
        C(tcp_tw_reuse), C(tcp_tw_reuse_delay), C(tcp_timestamps), C(tcp_max_tw_buckets)).
      - A null value means "not managed". C(tcp_tw_recycle) is refused with the reason.
      - C(ip_local_port_range) is C('low high') or C([low, high]);
        C(ip_local_reserved_ports) is C('8080,9000-9010') or a list.
    type: dict
  layers:
    description:
      - The ordered variables the settings were merged from, as C([[name, dict], ...]).
        Only used to name the variable that set a bad value in error messages.
    type: list
    elements: raw
    default: []
  protect_listeners:
    description: Add listening TCP ports inside the new range to C(ip_local_reserved_ports).
    type: bool
    default: true
  min_pool_size:
    description: The fewest usable ports (range minus reserved ports in it) a range may leave.
    type: int
    default: 1024
  optional_keys:
    description:
      - Short names that are skipped with a warning where the kernel lacks them.
        Any other missing key is an error for that host.
    type: list
    elements: str
    default: [tcp_tw_reuse_delay]
  file_name:
    description:
      - Name of the file in O(sysctl_dir), C(NN-name.conf), ASCII only.
      - Names distributions ship (C(99-sysctl.conf), C(99-protect-links.conf),
        C(50-default.conf), C(10-*.conf), ...) and names that exist in a later sysctl.d
        directory are refused (ours would replace that file at boot), as is a file that
        is a symlink or a C(/dev/null) mask.
    type: str
    default: 60-portpool.conf
  sysctl_dir:
    description: Directory the file is written to.
    type: path
    default: /etc/sysctl.d
  state_dir:
    description:
      - Where the previous values are saved before the first change (created 0700).
      - Must be a directory owned by root that nobody else can write (not a symlink);
        anything else is refused, because rollback writes what it holds as root.
    type: path
    default: /var/lib/portpool
  lock_timeout:
    description:
      - Seconds to wait for another portpool run on this host (one lock per host, a
        C(flock) on O(state_dir) itself, held by apply, verify and rollback)
        before failing.
    type: int
    default: 60
  run_id:
    description:
      - For O(mode=verify) and O(state=absent) with O(restore). The RV(run_id) an apply
        returned. Verify fails, and rollback refuses, when another run changed the host
        after that one, so an older run never undoes a newer one.
    type: str
  restore:
    description:
      - For O(state=absent). Restore these C(runtime) values (dotted names) and this C(file)
        content (null for absent), as returned by O(state=present) under RV(before), instead of
        the saved state; the saved state is kept. Used to undo one run that failed
        verification without undoing earlier runs.
    type: dict
  facts:
    description:
      - For O(mode=verify). The host's C(ansible_facts.portpool) from C(portpool_facts),
        gathered after applying; its C(sysctl) values must show O(expected) as well.
    type: dict
  probe:
    description:
      - For O(mode=verify). The C(probe) result of a quick C(portpool_probe) run after
        applying; it must have measured the range and the usable pool the settings give.
    type: dict
  verify:
    description:
      - For O(state=present). When the run changed the host, read it back in the same call as
        O(mode=verify) would (each written key in C(/proc/sys), the file and its mode, this
        run still the host's last), and fail with RV(mismatches) when it differs. The failed
        result keeps RV(before), RV(run_id) and RV(state_created) to undo exactly this run.
    type: bool
    default: true
  verify_probe:
    description:
      - For O(state=present) with O(verify). Also run a C(portpool_probe) measurement (these are
        its options) after a change, in the same call, and check it measured the range and
        usable pool the settings give. A probe that fails fails the verification.
    type: dict
    suboptions:
      mode: {description: See M(portpool_probe)., type: str, default: lab, choices: [lab, host]}
      scope:
        {description: See M(portpool_probe)., type: str, default: quick, choices: [quick, full]}
      sample_ports: {description: See M(portpool_probe)., type: int}
      churn_seconds: {description: See M(portpool_probe)., type: float, default: 1.5}
      timeout: {description: See M(portpool_probe)., type: int, default: 120}
      max_connections: {description: See M(portpool_probe)., type: int}
      destination: {description: See M(portpool_probe)., type: str}
      namespace: {description: See M(portpool_probe)., type: str}
  expected:
    description:
      - For O(mode=verify). The runtime values (dotted names) and C(file) content that should
        be in place, as returned by O(state=present) under RV(after).
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    description: Reports what would change; writes no file, no value and no state.
  diff_mode:
    support: full
    description: The file before and after, and each changed runtime value before and after.
  platform:
    platforms: [posix]
notes:
  - Needs root (become) to write C(/proc/sys), the file and the state directory.
  - C(sysctl -w) can exit 0 after the kernel refused a value (EINVAL), so the module
    writes C(/proc/sys) itself and reads every value back.
seealso:
  - module: ansible.posix.sysctl
"""

EXAMPLES = r"""
- name: Widen the pool and reuse TIME_WAIT for outgoing connections
  portpool_settings:
    settings:
      ip_local_port_range: "15000 64999"
      tcp_tw_reuse: 1
  become: true
  register: tuned

- name: Check what would change, with the host-side checks, without changing anything
  portpool_settings:
    state: present
    settings: "{{ portpool_tune_effective }}"
  check_mode: true
  become: true

- name: Put back what the first tune run found
  portpool_settings:
    state: absent
  become: true
"""

RETURN = r"""
target:
  description: The runtime values this host should have (dotted names), managed keys only.
  returned: state present (and in check mode)
  type: dict
  sample: {"net.ipv4.ip_local_port_range": "15000 64999", "net.ipv4.tcp_tw_reuse": "1"}
changed_keys:
  description: Keys whose runtime value was (or in check mode would be) written.
  returned: state present or absent (not the deprecated mode verify)
  type: list
  elements: str
file:
  description: Path of the managed sysctl.d file.
  returned: always
  type: str
  sample: /etc/sysctl.d/60-portpool.conf
file_changed:
  description: Whether the file was (or would be) written or removed.
  returned: state present or absent (not the deprecated mode verify)
  type: bool
before:
  description: Runtime values (C(runtime)) and file content (C(file), null when absent) found.
  returned: state present or absent (not the deprecated mode verify)
  type: dict
  sample: {"runtime": {"net.ipv4.tcp_tw_reuse": "2"}, "file": null}
after:
  description: Runtime values and file content after the run (or, in check mode, planned).
  returned: state present or absent (not the deprecated mode verify)
  type: dict
reserved_added:
  description: Listening ports added to C(ip_local_reserved_ports) to protect them.
  returned: state present (and in check mode)
  type: list
  elements: int
skipped_keys:
  description: Optional keys this kernel lacks, left unmanaged.
  returned: state present (and in check mode)
  type: list
  elements: str
overrides:
  description: Files applied after ours at boot that set a managed key (each also a warning).
  returned: state present (and in check mode)
  type: list
  elements: dict
  sample: [{"key": "net.ipv4.tcp_tw_reuse", "file": "/etc/sysctl.d/99-sysctl.conf"}]
boot_overrides:
  description:
    - Files applied after ours at boot that set a managed key to a different value
      (each also a warning); a file that sets the same value is left out.
    - C(value) is what the kernel gets at boot, C(ours) what portpool sets, C(why) one
      line saying so.
  returned: state present (and in check mode)
  type: list
  elements: dict
  sample: [{"key": "net.ipv4.tcp_tw_reuse", "file": "/etc/sysctl.d/99-sysctl.conf",
            "line": 3, "value": "0", "ours": "1", "why": "net.ipv4.tcp_tw_reuse is also..."}]
input_errors:
  description: "Check mode (or O(mode=preflight)): bad settings for this host (fatal for the
    whole rollout)."
  returned: state present in check mode
  type: list
  elements: str
host_errors:
  description: "Check mode (or O(mode=preflight)): why this host cannot be tuned (missing key,
    read-only)."
  returned: state present in check mode
  type: list
  elements: str
planned_warnings:
  description: "Check mode (or O(mode=preflight)): the warnings a real run gives."
  returned: state present in check mode
  type: list
  elements: str
state_file:
  description: Where the previous values are (or were) saved.
  returned: state present or absent (not the deprecated mode verify)
  type: str
  sample: /var/lib/portpool/tune-state.json
state_saved:
  description: Whether this run saved or extended the saved state.
  returned: state present
  type: bool
state_created:
  description: Whether this run saved the state for the first time (the host was untouched).
  returned: state present
  type: bool
run_id:
  description: "O(state=present): this run's id when it changed the host (pass it to verify
    and undo)."
  returned: state present
  type: str
saved_at:
  description: "O(state=absent): when the restored state was saved (UTC, ISO 8601)."
  returned: state absent, when there was a state
  type: str
mismatches:
  description: "O(state=present) with O(verify), and O(mode=verify): keys (and C(file)) whose
    value differs from what should be in place."
  returned: state present when it changed the host and O(verify); mode verify
  type: list
  elements: dict
pool:
  description: "O(mode=verify): the pool the runtime values give (low, high, size, usable...)."
  returned: state present after a verified change, and mode verify, when the range is readable
  type: dict
probe:
  description: "O(state=present) with O(verify_probe): what the probe measured after the change
    (see RV(portpool_probe#module:probe)); null when it failed."
  returned: state present when it changed the host and O(verify_probe) is set
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.portpool_probe_run import measure, probe_argument_spec

# Re-exported: tests use them here.
from ansible.module_utils.portpool_tune_apply import (  # noqa: F401  # pylint: disable=unused-import
    Paths,
    read_target,
    run_apply,
    run_apply_verified,
    run_check,
    run_preflight,
    run_rollback,
    run_verify,
)
from ansible.module_utils.portpool_tune_state import TuneError


def get_argument_spec():
    return dict(
        state=dict(type="str", choices=["present", "absent"]),
        mode=dict(type="str", choices=["preflight", "apply", "verify", "rollback"]),
        settings=dict(type="dict"),
        layers=dict(type="list", elements="raw", default=[]),
        protect_listeners=dict(type="bool", default=True),
        min_pool_size=dict(type="int", default=1024),
        optional_keys=dict(type="list", elements="str", default=["tcp_tw_reuse_delay"],
                           no_log=False),  # sysctl names, not secrets
        file_name=dict(type="str", default="60-portpool.conf"),
        sysctl_dir=dict(type="path", default="/etc/sysctl.d"),
        state_dir=dict(type="path", default="/var/lib/portpool"),
        lock_timeout=dict(type="int", default=60),
        run_id=dict(type="str"),
        expected=dict(type="dict", default={}),
        restore=dict(type="dict"),
        facts=dict(type="dict"),
        probe=dict(type="dict"),
        verify=dict(type="bool", default=True),
        verify_probe=dict(type="dict", options=probe_argument_spec(on_record=False)),
    )


def main():
    module = AnsibleModule(argument_spec=get_argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("state", "mode")],
                           required_if=[("state", "present", ("settings",))])
    params = module.params
    params["settings"] = params["settings"] or {}
    if params["mode"]:
        module.deprecate("portpool_settings: mode=%s is now %s" % (params["mode"], {
            "apply": "state=present", "rollback": "state=absent",
            "preflight": "state=present in check mode",
            "verify": "state=present in check mode (nothing would change)"}[params["mode"]]),
            version="1.0.0", collection_name="portpool.portpool")
    mode = params["mode"] or {"absent": "rollback"}.get(params["state"], "apply")
    try:
        paths = Paths(params)
        if mode == "preflight":
            result = run_preflight(params, paths)
        elif mode == "apply" and module.check_mode:
            result = run_check(params, paths)
        elif mode == "apply":
            result = run_apply_verified(params, paths, False, measure)
        elif mode == "verify":
            result = run_verify(params, paths)
        else:
            result = run_rollback(params, paths, module.check_mode)
    except TuneError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (getattr(exc, "filename", "") or "I/O error", exc))
    if not module._diff:
        result.pop("diff", None)
    warnings = result.pop("warnings", [])
    # Ansible prints warnings without the host: say which one.
    for warning in warnings:
        module.warn(os.uname().nodename + ": " + warning)
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
