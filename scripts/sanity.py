#!/usr/bin/env python3
"""Run `ansible-test sanity` on the generated collection, without a network.

ansible-test gives each sanity test its own virtual environment and bootstraps
pip into it with a get-pip.py it downloads from its own CI file host, which
neither CI nor a developer here can reach. So, with HOME pointed at
build/ansible-test-home (nothing of the user's home is touched):

- `--wheels` (run by `make`, the one step that needs the package index) saves
  the exact wheels ansible-test's sanity requirement files pin into
  build/sanity-wheels;
- a stand-in get_pip_<version>.py in ansible-test's cache installs pip from
  Python's own ensurepip and that wheel folder, and gives each sanity venv a
  pip.conf with no index, so every later install in it is local.

    python3 scripts/sanity.py --wheels      # once, online
    python3 scripts/sanity.py [--all] [ansible-test sanity options]
    python3 scripts/sanity.py --refresh-ignores [--all]

By default only the tests the collection is held to run (TESTS below): they
are what `make test` needs, and skipping the rest saves three of nine venvs
(ansible-doc, runtime-metadata, yamllint) and their run time. `--all` runs
ansible-test's whole default set; any `--test` option picks the tests itself.

--refresh-ignores rewrites tests/collection/sanity-ignore.txt to what the sources
need now (adds the new findings, drops entries no longer needed): run it after
merging source changes, then read its diff, which is the list of new findings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import ansible_test
from ansible_test._internal.python_requirements import get_venv_packages

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
COLLECTION = BUILD / "collection" / "ansible_collections" / "portpool" / "portpool"
HOME = BUILD / "ansible-test-home"
WHEELS = BUILD / "sanity-wheels"
BIN = Path(sys.executable).parent
IGNORES = ROOT / "tests" / "collection" / "sanity-ignore.txt"
# Tests whose findings have codes an ignore entry can name (test:code).
CODED = ("pep8", "pylint", "validate-modules", "yamllint")
# validate-modules checks DOCUMENTATION against the argument specs, pep8 and pylint
# the code, import and compile that every file loads on the controller's Python
# (ansible-core 2.19 needs 3.11+; the EE uses 3.11). pylint is most of the time.
TESTS = ("validate-modules", "pep8", "pylint", "import", "compile")
# With --all, every default sanity test runs, except:
SKIP = (
    "shellcheck",  # no shell scripts in the collection, and no shellcheck here
    "pslint",  # PowerShell
)
ANSIBLE_TEST = BIN / "ansible-test"

SHIM = '''\
"""Stand-in for ansible-test's get-pip.py: written by scripts/sanity.py."""
import ensurepip
import os
import re
import subprocess
import sys

WHEELS = {wheels!r}
# get-pip.py's own flags; pip install has none of these.
GET_PIP_ONLY = {{"--no-setuptools", "--no-wheel"}}

ensurepip.bootstrap(upgrade=True)
# Every later pip call in this venv (ansible-test's requirement installs) stays local.
with open(os.path.join(sys.prefix, "pip.conf"), "w") as handle:
    handle.write("[global]\\nno-index = true\\nfind-links = %s\\n" % WHEELS)
arguments = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--no-index",
                          "--find-links", WHEELS, *arguments]))
'''


def ansible_test_data():
    return Path(ansible_test.__file__).parent / "_data" / "requirements"


def bootstrap_pip_version():
    """The pip version ansible-test bootstraps into its venvs (its get-pip file name)."""
    class Python:
        version = "%d.%d" % sys.version_info[:2]

    return get_venv_packages(Python())["pip"]


def requirement_files():
    return sorted(p for p in ansible_test_data().glob("sanity.*.txt")
                  if p.name not in ("sanity.pslint.txt", "sanity.changelog.txt"))


def download_wheels():
    """Fetch the pinned sanity requirements once, so test runs need no network."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
           "--dest", str(WHEELS)]
    subprocess.run([*pip, "pip==%s" % bootstrap_pip_version()], check=True)
    for requirements in requirement_files():
        subprocess.run([*pip, "-r", str(requirements)], check=True)


def install_shim():
    version = bootstrap_pip_version()
    cache = HOME / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    shim = cache / ("get_pip_%s.py" % version.replace(".", "_"))
    shim.write_text(SHIM.format(wheels=str(WHEELS)))


def run_sanity(extra, capture=False):
    everything = "--all" in extra
    extra = [argument for argument in extra if argument != "--all"]
    if not COLLECTION.is_dir():
        sys.exit("sanity: no collection at %s: run `make collection` first" % COLLECTION)
    if not any(WHEELS.glob("pip-*.whl")):
        sys.exit("sanity: no wheels in %s: run `%s --wheels` first" % (WHEELS, __file__))
    install_shim()
    # ansible-test lists a collection's files with git, from the nearest .git up the
    # tree: without one here it would find this repository, which ignores build/.
    if not (COLLECTION / ".git").exists():
        subprocess.run(["git", "init", "--quiet", str(COLLECTION)], check=True)
    env = dict(os.environ, HOME=str(HOME), ANSIBLE_NOCOLOR="1",
               PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
    command = [str(ANSIBLE_TEST), "sanity", "--color", "no",
               "--python", "%d.%d" % sys.version_info[:2]]
    if everything:
        command += [option for test in SKIP for option in ("--skip-test", test)]
    elif "--test" not in extra:
        command += [option for test in TESTS for option in ("--test", test)]
    started = time.monotonic()
    done = subprocess.run([*command, *extra], cwd=COLLECTION, env=env, text=True,
                          stderr=subprocess.STDOUT if capture else None,
                          stdout=subprocess.PIPE if capture else None)
    print("ansible-test sanity: exit %d in %.0f s" % (done.returncode, time.monotonic() - started))
    return done.stdout if capture else done.returncode


def needed_ignores(output, current):
    """Ignore entries from one sanity run: its findings, minus the unneeded entries.

    An entry that stays keeps its trailing `# reason` (ansible-test allows one).
    """
    test, found, unneeded = None, set(), set()
    for line in output.splitlines():
        running = re.match(r'Running sanity test "([\w-]+)"( on Python (\S+))?', line)
        if running:
            test = running.group(1) + ("-" + running.group(3) if running.group(3) else "")
            continue
        error = re.match(r"ERROR: (\S+?):(\d+):\d+: (?:([\w-]+): )?(.*)", line)
        if not error or test is None:
            continue
        path, number, code, message = error.groups()
        if path.startswith("tests/sanity/ignore-"):
            if "unnecessary" in message:
                unneeded.add(current[int(number) - 1])
        elif test in CODED and code:
            found.add("%s %s:%s" % (path, test, code))
        else:
            found.add("%s %s" % (path, test))
    kept = [line for line in current if line not in unneeded]
    known = {re.sub(r" *#.*$", "", line) for line in kept}
    return sorted(set(kept) | (found - known))


def refresh_ignores(extra):
    generated = next((COLLECTION / "tests" / "sanity").glob("ignore-*.txt"))
    current = generated.read_text().splitlines()
    output = run_sanity(["--failure-ok", *extra], capture=True)
    entries = needed_ignores(output, current)
    header = [line for line in IGNORES.read_text().splitlines() if line.startswith("#")]
    IGNORES.write_text("\n".join(header + entries) + "\n")
    print("%s: %d entries (was %d)" % (IGNORES.relative_to(ROOT), len(entries), len(current)))
    return 0


def main():
    if sys.argv[1:] == ["--wheels"]:
        download_wheels()
        return 0
    if sys.argv[1:2] == ["--refresh-ignores"]:
        return refresh_ignores(sys.argv[2:])
    return run_sanity(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
