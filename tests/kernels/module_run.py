"""Run one of the project's modules directly, the way Ansible's runtime would.

The matrix runs inside emulated kernels where starting the `ansible` CLI costs
about 25 s; calling the module file with its arguments as JSON costs a few
seconds and exercises the same code against the same kernel.
"""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# `python -c CODE ARGS`: AnsibleModule reads its arguments from sys.argv[1].
BOOTSTRAP = ("import runpy, sys; sys.path.insert(0, %r); import tests.ansiballz_path; "
             "runpy.run_path(%r, run_name='__main__')")


def module_argv(name, args):
    """argv that runs library/<name>.py with `args` as its module arguments."""
    code = BOOTSTRAP % (str(REPO), str(REPO / "library" / (name + ".py")))
    return [sys.executable, "-c", code, json.dumps({"ANSIBLE_MODULE_ARGS": args})]


def run_module(name, args, prefix=(), timeout=180):
    """The module's JSON result; `prefix` wraps it (e.g. `unshare --net`)."""
    done = subprocess.run([*prefix, *module_argv(name, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)
    start = done.stdout.find("{")
    assert start >= 0, "no result from %s: %s %s" % (name, done.stdout, done.stderr[-3000:])
    return json.JSONDecoder().raw_decode(done.stdout[start:])[0]


def shell_quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


class ModuleServer:
    """One module_batch.py process answering module calls one at a time.

    Under emulation each run_module() pays Python's start and imports again
    (about 10 s); a server pays them once, and the test can still check the
    system between two calls."""

    def __init__(self, name, prefix=(), python=sys.executable, env=None):
        self.proc = subprocess.Popen(
            [*prefix, python, str(Path(__file__).with_name("module_batch.py")), name],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(self, args, **case):
        """The module's JSON result for `args` (case keys: env, nofile, netns...)."""
        return self.run(dict(case, args=args))["result"]

    def run(self, case):
        """module_batch.py's answer for one case: result, output, naive."""
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line.startswith("{"), "module_batch.py stopped (exit %s): %r" % (
            self.proc.poll(), line)
        answer = json.loads(line)
        assert answer["result"] is not None, answer["output"]
        return answer

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
