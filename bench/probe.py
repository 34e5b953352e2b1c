"""Benchmark: portpool_probe's hold against a C baseline doing the same work.

    python -m bench.probe            (as root; PORTPOOL_BENCH_ROUNDS=3 by default)

The baseline is compiled here with the machine's cc. Both run in a fresh
network namespace with lo up, 198.18.0.1/15 on lo and the same
ip_local_port_range, connect to 198.18.0.2 from the same number of worker
processes (each holding its share until EADDRNOTAVAIL), while the parent
accepts and closes every connection at once on port 9: the same hold work.

The module's own work is timed apart from Ansible's start-up: the AnsiballZ
payload is kept (ANSIBLE_KEEP_REMOTE_FILES=1), exploded, and run with
`execute` and scope=full, churn_seconds=0. Module and baseline alternate in one
run; the medians of the ratios module/baseline are printed for a 10,000-port
range and for the default range: for the hold alone (each side times its own
hold), for the whole process (interpreter and namespace set-up included), and
for the CPU time of the whole process (steadier than wall time on a shared
machine). The wall time of a whole
`ansible localhost -m portpool_probe` task with scope=quick is printed last.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
if not (VENV_BIN / "ansible").exists():
    VENV_BIN = Path(sys.executable).parent
RANGES = (("10k", "32768 42767"), ("default", "32768 60999"))
FD_RESERVE = 64  # as portpool_probe_model.FD_RESERVE

BASELINE_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: hold ADDR PORT WORKERS QUOTA\n"); return 2; }
    int workers = atoi(argv[3]), quota = atoi(argv[4]), port = atoi(argv[2]);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, argv[1], &dst.sin_addr);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(port)};
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&any, sizeof any) || listen(lfd, 65535)) {
        perror("listen");
        return 1;
    }
    int report[64], control[64];
    pid_t pids[64];
    pid_t parent = getpid();
    double start = now();
    for (int w = 0; w < workers; w++) {
        int rp[2], cp[2];
        if (pipe(rp) || pipe(cp)) { perror("pipe"); return 1; }
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1);
            close(lfd); close(rp[0]); close(cp[1]);
            int *held = malloc(sizeof(int) * (quota + 1));
            int n = 0;
            while (n < quota) {
                int fd = socket(AF_INET, SOCK_STREAM, 0);
                if (fd < 0) break;
                if (connect(fd, (struct sockaddr *)&dst, sizeof dst)) { close(fd); break; }
                held[n++] = fd;
            }
            int alive = 0;  /* the same check as the module: no pending reset */
            for (int i = 0; i < n; i++) {
                int err = 0;
                socklen_t len = sizeof err;
                if (!getsockopt(held[i], SOL_SOCKET, SO_ERROR, &err, &len) && !err)
                    alive++;
            }
            dprintf(rp[1], "%d\n", alive);
            char c;
            (void)read(cp[0], &c, 1);
            struct linger lg = {1, 0};
            for (int i = 0; i < n; i++) {
                setsockopt(held[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                close(held[i]);
            }
            _exit(0);
        }
        close(rp[1]); close(cp[0]);
        report[w] = rp[0]; control[w] = cp[1]; pids[w] = pid;
    }
    struct pollfd pfd[65];
    int done[64] = {0}, left = workers;
    long total = 0;
    while (left > 0) {
        int n = 0;
        pfd[n].fd = lfd; pfd[n].events = POLLIN; n++;
        for (int w = 0; w < workers; w++)
            if (!done[w]) { pfd[n].fd = report[w]; pfd[n].events = POLLIN; n++; }
        poll(pfd, n, 1000);
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) break;
            close(fd);
        }
        for (int i = 1; i < n; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP))) continue;
            for (int w = 0; w < workers; w++) {
                if (report[w] != pfd[i].fd || done[w]) continue;
                char buf[32] = {0};
                if (read(report[w], buf, sizeof buf - 1) > 0) total += atol(buf);
                done[w] = 1; left--;
            }
        }
    }
    double hold = now() - start;
    for (int w = 0; w < workers; w++) close(control[w]);
    for (int w = 0; w < workers; w++) waitpid(pids[w], NULL, 0);
    printf("{\"established\": %ld, \"seconds\": %.6f}\n", total, hold);
    return 0;
}
"""


def _env(extra=None):
    env = dict(os.environ)
    env["PATH"] = "%s:%s" % (VENV_BIN, env.get("PATH", "/usr/bin:/bin"))
    env["LANG"] = "C"
    env.update(extra or {})
    return env


def compile_baseline(workdir):
    source = workdir / "hold.c"
    source.write_text(BASELINE_C)
    binary = workdir / "hold"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def kept_payload(workdir):
    """Keep the AnsiballZ payload of a cheap run, explode it, return its path."""
    remote = workdir / "remote"
    remote.mkdir()
    subprocess.run(
        ["ansible", "localhost", "-m", "portpool_probe", "-a",
         "sample_ports=10 churn_seconds=0"],
        cwd=REPO, check=True, capture_output=True, text=True,
        env=_env({"ANSIBLE_KEEP_REMOTE_FILES": "1", "ANSIBLE_PIPELINING": "0",
                  "ANSIBLE_REMOTE_TMP": str(remote)}))
    found = sorted(remote.rglob("AnsiballZ_portpool_probe.py"))
    if not found:
        raise SystemExit("no AnsiballZ payload kept under %s" % remote)
    payload = found[0]
    subprocess.run([sys.executable, str(payload), "explode"], check=True, capture_output=True)
    args_path = payload.parent / "debug_dir" / "args"
    args = json.loads(args_path.read_text())
    args["ANSIBLE_MODULE_ARGS"].update({"scope": "full", "churn_seconds": 0, "timeout": 900})
    args["ANSIBLE_MODULE_ARGS"].pop("sample_ports", None)
    args_path.write_text(json.dumps(args))
    return payload


def _in_namespace(port_range, command, lab=False):
    lines = []
    if lab:
        lines += ["ip link set lo up", "ip addr add 198.18.0.1/15 dev lo",
                  "sysctl -qw net.core.somaxconn=65535"]
    lines.append("sysctl -qw net.ipv4.ip_local_port_range='%s'" % port_range)
    lines.append('exec "$@"')
    return ["unshare", "--net", "sh", "-c", "\n".join(lines), "sh", *command]


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_module(payload, port_range):
    start, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run(_in_namespace(port_range, [sys.executable, str(payload), "execute"]),
                          capture_output=True, text=True, check=False, env=_env())
    wall, cpu = time.monotonic() - start, _children_cpu() - cpu
    text = done.stdout
    result = json.JSONDecoder().raw_decode(text[text.index("{"):])[0]
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result.get("msg"))
    hold = result["probe"]["hold"]
    return wall, hold["seconds"], hold["established"], hold["workers"], cpu


def run_baseline(binary, port_range, workers, quota):
    start, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run(
        _in_namespace(port_range, [str(binary), "198.18.0.2", "9", str(workers), str(quota)],
                      lab=True),
        capture_output=True, text=True, check=True)
    wall, cpu = time.monotonic() - start, _children_cpu() - cpu
    result = json.loads(done.stdout)
    return wall, result["seconds"], result["established"], cpu


def quick_task_wall(rounds):
    times = []
    for _ in range(rounds):
        start = time.monotonic()
        subprocess.run(["ansible", "localhost", "-m", "portpool_probe", "-a", "scope=quick"],
                       cwd=REPO, check=True, capture_output=True, env=_env())
        times.append(time.monotonic() - start)
    return times


def main(argv=None):
    del argv
    if os.geteuid() != 0:
        print("bench.probe needs root (network namespaces)", file=sys.stderr)
        return 1
    rounds = int(os.environ.get("PORTPOOL_BENCH_ROUNDS", "3"))
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    workdir = Path(tempfile.mkdtemp(prefix="ppprobe-bench-"))
    status = 0
    try:
        binary = compile_baseline(workdir)
        payload = kept_payload(workdir)
        for name, port_range in RANGES:
            low, high = (int(part) for part in port_range.split())
            pool = high - low + 1
            per_worker = max(1, fd_limit - FD_RESERVE)
            workers = -(-pool // per_worker)
            wall_ratios, hold_ratios, cpu_ratios = [], [], []
            for index in range(rounds):
                order = ("module", "baseline") if index % 2 == 0 else ("baseline", "module")
                runs = {}
                for which in order:
                    if which == "module":
                        runs[which] = run_module(payload, port_range)
                    else:
                        runs[which] = run_baseline(binary, port_range, workers, per_worker)
                m_wall, m_hold, m_count, m_workers, m_cpu = runs["module"]
                b_wall, b_hold, b_count, b_cpu = runs["baseline"]
                if m_count != pool or b_count != pool or m_workers != workers:
                    print("  mismatch: module %d (%d workers), baseline %d, pool %d"
                          % (m_count, m_workers, b_count, pool))
                    status = 1
                wall_ratios.append(m_wall / b_wall)
                hold_ratios.append(m_hold / b_hold)
                cpu_ratios.append(m_cpu / b_cpu)
                print("  %-7s round %d: module %.2f s (hold %.2f s, cpu %.2f s), baseline %.2f s"
                      " (hold %.2f s, cpu %.2f s), %d ports, %d worker(s)"
                      % (name, index + 1, m_wall, m_hold, m_cpu, b_wall, b_hold, b_cpu, pool,
                         workers), flush=True)
            print("probe full %-7s (%d ports): median ratio module/baseline %.2fx hold only,"
                  " %.2fx whole run, %.2fx cpu time (%d rounds)"
                  % (name, pool, statistics.median(hold_ratios),
                     statistics.median(wall_ratios), statistics.median(cpu_ratios), rounds),
                  flush=True)
        times = quick_task_wall(rounds)
        print("probe quick: `ansible localhost -m portpool_probe -a scope=quick` median wall"
              " %.2f s (%d runs)" % (statistics.median(times), rounds), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
