"""Shared test set-up: import paths for library/ and module_utils/, privilege gates.

Unit tests import modules straight from library/ and their helpers as
ansible.module_utils.<name>, the way Ansible resolves them at run time.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests import ansiballz_path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, ansiballz_path.LIBRARY)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_privilege():
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network and mount namespaces"
    for tool in ("ip", "unshare", "nsenter", "ss"):
        if shutil.which(tool) is None:
            return "needs %s (iproute2/util-linux); run `make test` as root to install it" % tool
    return None


def pytest_collection_modifyitems(config, items):
    reason = missing_privilege()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root, namespaces and iproute2")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # In CI (root) nothing may skip: a skip there hides a broken set-up.
    skipped = terminalreporter.stats.get("skipped", [])
    if IN_CI and skipped:
        terminalreporter.write_line(
            "CI: %d test(s) skipped; in CI every test must run" % len(skipped), red=True)
        config._portpool_ci_skips = len(skipped)


def pytest_sessionfinish(session, exitstatus):
    if getattr(session.config, "_portpool_ci_skips", 0):
        session.exitstatus = 1
