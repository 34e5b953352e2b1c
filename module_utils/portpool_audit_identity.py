# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What makes a result file describe itself: run, slice, policy hash and version.

A merge of sliced audits (AWX job slicing, or `--limit` shards on several
controllers) reads these to refuse mixed policies and to say where each host
came from. Pure functions: the portpool_audit action stamps every file with them.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from .portpool_version import VERSION


def policy_hash(policy):
    """A stable short hash of one host's merged policy dict (key order does not matter).

    fail_on is left out: it only sets the gate, which the merge applies again, so
    slices gated at different thresholds still judged the hosts the same way.
    """
    judged = {key: value for key, value in policy.items() if key != "fail_on"}
    text = json.dumps(judged, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def run_identity(run_id=None, slice_name=None, awx=None):
    """The `run` block of every result file of one audit run.

    `awx`: AWX's extra vars (awx_job_id, awx_job_slice_number, awx_job_slice_count)
    when the run is an AWX job. The slice is named after them ("2/3"); otherwise
    after `slice_name` (portpool_audit_slice, for --limit shards), or None.
    """
    awx = {key: value for key, value in (awx or {}).items() if value not in (None, "")}
    job = _as_int(awx.get("awx_job_id"))
    number = _as_int(awx.get("awx_job_slice_number"))
    count = _as_int(awx.get("awx_job_slice_count"))
    slice_id = slice_name or None
    if not slice_id and number is not None and count and count > 1:
        slice_id = "%d/%d" % (number, count)
    if not run_id:
        run_id = "awx-%d" % job if job is not None else uuid.uuid4().hex[:12]
    return {
        "id": str(run_id),
        "slice": None if slice_id is None else str(slice_id),
        "awx_job_id": job,
        "slice_number": number,
        "slice_count": count,
        "portpool_version": VERSION,
    }


def stamp(document, run, policy):
    """The result document with its run block, policy and policy hash added."""
    document["run"] = run
    document["policy"] = policy
    document["policy_hash"] = policy_hash(policy)
    document["portpool_version"] = run["portpool_version"]
    return document
