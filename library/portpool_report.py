#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documentation only: the work is done on the controller by
# action_plugins/portpool_report.py (module_utils/portpool_report_run.py).

DOCUMENTATION = r"""
---
module: portpool_report
short_description: Render the portpool fleet report from per-host audit results
description:
  - Reads every C(*.json) host result file in one or more folders (audits run in
    slices on several controllers are merged; when a host appears more than once the
    result with the newest C(audited_at) wins), aggregates them and writes the fleet
    report in every requested format into O(dest).
  - "Formats: C(fleet.json) (the merged fleet, machine-readable), C(report.md),
    C(report.html) (self-contained: inline CSS, SVG charts and a small sortable-table
    script allowed by a hash-based Content-Security-Policy, no network),
    C(junit.xml) (one testsuite per host, one testcase per rule) and one
    Prometheus textfile per host under C(prometheus/) (node_exporter textfile
    collector format)."
  - Hosts that were unreachable or failed appear in every format as such. A result
    file that cannot be read is reported as a failed host named after the file; it
    never hides the others.
  - "Runs on the controller (C(delegate_to: localhost), C(run_once)); needs the
    C(jinja2) Python package there, which ansible-core already requires."
  - Every file is written atomically (a temporary file created exclusively under a
    random name, fsynced, renamed over it, then the folder fsynced); the Prometheus
    folder is written whole and then moved into place, and the C(latest) link
    beside O(dest) is replaced atomically. A C(prometheus/) folder is replaced only
    when it carries portpool's C(.portpool-report) marker; any other is left alone
    with a warning.
  - Reads only each result's C(summary) block and its findings, never the raw facts
    (docs/report.md). A result file over 16 MiB, nested too deeply or holding
    numbers that break the arithmetic becomes a failed host with the reason.
version_added: "1.0.0"
author:
  - portpool contributors (!UNKNOWN)
options:
  dest:
    description:
      - The run's output folder, created when missing. Relative paths are taken from
        the module's working directory; the role passes an absolute path.
    type: path
    required: true
  result_dirs:
    description:
      - Folders holding one C(<host>.json) result file per host.
      - Files starting with a dot and files not ending in C(.json) are ignored.
      - A missing folder gives a warning, not a failure.
    type: list
    elements: path
    required: true
  templates:
    description:
      - The folder holding the report templates (C(report.html.j2), C(report.md.j2),
        C(junit.xml.j2), C(host.prom.j2) and C(report.js)); the role passes its own
        C(templates) folder.
    type: path
    required: true
  formats:
    description:
      - Which outputs to write.
    type: list
    elements: str
    choices: [json, markdown, html, junit, prometheus]
    default: [json, markdown, html, junit, prometheus]
  fail_on:
    description:
      - JUnit threshold. A rule's testcase fails when the host has an unwaived finding
        of that rule at or above this severity; when all its findings are waived it is
        skipped; otherwise it passes (findings below the threshold are listed in its
        C(system-out)). Unreachable and failed hosts are errors.
    type: str
    choices: [info, low, medium, high, critical]
    default: high
  rules_file:
    description:
      - The rule definitions (a JSON list of C({id, severity, title, description})).
      - When not set, C(rules.json) is looked for in O(dest), in each result folder and
        in each result folder's parent. Rules that appear only in findings are added
        with the title of their findings.
    type: path
  top_destinations:
    description:
      - How many of the fleet's busiest destinations (by share of their pool) the
        report shows, and how many per host are considered.
    type: int
    default: 20
  host_destinations:
    description:
      - How many of each host's busiest destinations its view in the report lists and
        its Prometheus file exports as C(portpool_destination_utilisation_ratio) series
        (one per destination C(ip:port) label). C(0) exports none.
    type: int
    default: 5
  chart_hosts:
    description:
      - How many hosts the usable-pool chart shows (those with the smallest pool).
    type: int
    default: 50
  console_hosts:
    description:
      - How many hosts the console summary lists (worst first).
    type: int
    default: 20
  private:
    description:
      - The report holds every host's facts (listeners, backend addresses, process
        names), so its files are created C(0600) and its folders C(0700).
      - Set to C(false) to create them C(0644) and C(0755), for example when
        node_exporter runs as another user and reads the C(prometheus/) folder.
    type: bool
    default: true
  title:
    description:
      - Title of the HTML and Markdown reports and name of the JUnit testsuites.
    type: str
    default: portpool fleet report
  latest_link:
    description:
      - Point the symbolic link C(latest) beside O(dest) (in its parent folder) at
        O(dest). An existing C(latest) that is not a symbolic link is left alone and a
        warning is given.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: In check mode the results are read and summarised but nothing is written.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Host names become file names only through a sanitiser (letters, digits, C(.), C(_)
    and C(-); anything else is replaced and a hash of the real name appended), so a
    hostile host name cannot write outside O(dest).
  - The console summary (RV(summary)) strips control characters from host-provided
    strings.
seealso:
  - name: node_exporter textfile collector
    description: Point its C(--collector.textfile.directory) at C(reports/latest/prometheus).
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Render the fleet report of this run
  portpool_report:
    dest: "{{ playbook_dir }}/reports/20261123T193025Z"
    result_dirs:
      - "{{ playbook_dir }}/reports/20261123T193025Z/results"
    templates: "{{ role_path }}/templates"
  delegate_to: localhost
  run_once: true
  register: report

- name: Merge the slices of three controllers into one report, HTML and JUnit only
  portpool_report:
    dest: /srv/portpool/merged
    result_dirs:
      - /srv/portpool/slice-a/results
      - /srv/portpool/slice-b/results
      - /srv/portpool/slice-c/results
    templates: roles/portpool_report/templates
    formats: [html, junit]
    fail_on: medium
    latest_link: false
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
dest:
  description: The absolute output folder.
  returned: always
  type: str
  sample: /home/ops/portpool/reports/20261123T193025Z
files:
  description:
    - Path written for each format (the Prometheus entry is the folder).
    - Empty in check mode.
  returned: always
  type: dict
  sample:
    html: /home/ops/portpool/reports/20261123T193025Z/report.html
    prometheus: /home/ops/portpool/reports/20261123T193025Z/prometheus
report:
  description: The main report file (HTML when written, else Markdown, else fleet.json).
  returned: always
  type: str
  sample: /home/ops/portpool/reports/20261123T193025Z/report.html
latest:
  description: The C(latest) link updated, or null.
  returned: always
  type: str
  sample: /home/ops/portpool/reports/latest
file_count:
  description: Result files read (before merging duplicate hosts).
  returned: always
  type: int
  sample: 16
totals:
  description: Fleet totals.
  returned: always
  type: dict
  contains:
    hosts:
      description: Hosts after merging.
      type: int
    status:
      description: Hosts per status (ok, unreachable, failed).
      type: dict
    findings:
      description: Unwaived findings per severity.
      type: dict
    waived:
      description: Waived findings.
      type: int
    worst:
      description: The worst unwaived severity in the fleet, or null.
      type: str
    hosts_with_findings:
      description: Hosts with at least one unwaived finding.
      type: int
    junit:
      description: JUnit counts (tests, failures, errors, skipped).
      type: dict
  sample:
    hosts: 3
    status: {ok: 2, unreachable: 1, failed: 0}
    findings: {info: 0, low: 1, medium: 0, high: 2, critical: 0}
    waived: 1
    worst: high
    hosts_with_findings: 2
    junit: {tests: 48, failures: 2, errors: 1, skipped: 16}
worst_severity:
  description: Same as RV(totals.worst).
  returned: always
  type: str
  sample: high
summary:
  description: The console summary table (one line per host of concern, worst first).
  returned: always
  type: str
  sample: |-
    portpool: 3 host(s): 2 ok, 1 unreachable, 0 failed; unwaived findings: 0 critical, 2 high, ...
    HOST   STATUS       WORST  FINDINGS  TOP FINDINGS
    h03    unreachable  -      -         ssh: connect to host 198.18.1.3 port 22: Connection refused
    h01    ok           high   2         PP004 Listening service port inside the range
    report: /home/ops/portpool/reports/20261123T193025Z/report.html
"""
