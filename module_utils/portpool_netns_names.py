# -*- coding: utf-8 -*-
# Copyright: portpool contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Human names for network namespaces: container, pod, or the holding process.

Read from what runtimes leave on the host, never from their APIs: a holder's
cgroup path carries the container id and the Kubernetes pod uid; docker keeps
each container's name in its config.v2.json; kubelet names each pod's log
folder `<namespace>_<pod>_<uid>`. Roots are arguments, for tests.
"""

from __future__ import annotations

import json
import os
import re

DOCKER_ROOT = "/var/lib/docker"
POD_LOGS = "/var/log/pods"
# Largest runtime file read for a name; real ones are a few kB.
MAX_CONFIG_BYTES = 1 << 20

_CONTAINER_ID = re.compile(
    r"(?:docker|cri-containerd|crio|libpod)[-/]([0-9a-f]{64})(?:\.scope)?(?:/|$)")
_POD_UID = re.compile(r"kubepods.*?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_]"
                      r"[0-9a-f]{4}[-_][0-9a-f]{12})")


def _read(path, limit=MAX_CONFIG_BYTES):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def cgroup_ids(cgroup_text):
    """(container id, pod uid) found in a /proc/PID/cgroup text; either may be None."""
    container = pod = None
    for line in (cgroup_text or "").splitlines():
        path = line.split(":", 2)[-1]
        match = _CONTAINER_ID.search(path)
        if match and container is None:
            container = match.group(1)
        match = _POD_UID.search(path)
        if match and pod is None:
            pod = match.group(1).replace("_", "-")
    return container, pod


def docker_name(container_id, docker_root=DOCKER_ROOT):
    """A docker container's name from its config.v2.json, or None."""
    text = _read(os.path.join(docker_root, "containers", container_id, "config.v2.json"))
    if not text:
        return None
    try:
        name = json.loads(text).get("Name")
    except (ValueError, AttributeError):
        return None
    return name.lstrip("/") if isinstance(name, str) and name else None


def docker_sandboxes(docker_root=DOCKER_ROOT):
    """{sandbox netns file name: (container id, name)} from docker's configs."""
    sandboxes = {}
    directory = os.path.join(docker_root, "containers")
    try:
        ids = os.listdir(directory)
    except OSError:
        return sandboxes
    for container_id in ids:
        text = _read(os.path.join(directory, container_id, "config.v2.json"))
        try:
            config = json.loads(text) if text else {}
            key = (config.get("NetworkSettings") or {}).get("SandboxKey") or ""
        except (ValueError, AttributeError):
            continue
        if key:
            name = config.get("Name") if isinstance(config.get("Name"), str) else None
            sandboxes[os.path.basename(key)] = (container_id, (name or "").lstrip("/") or None)
    return sandboxes


def pod_names(pod_logs=POD_LOGS):
    """{pod uid: (namespace, pod name)} from kubelet's log folders."""
    pods = {}
    try:
        names = os.listdir(pod_logs)
    except OSError:
        return pods
    for name in names:
        parts = name.split("_")
        if len(parts) == 3:
            pods[parts[2]] = (parts[0], parts[1])
    return pods


def comm(pid, proc_root="/proc"):
    text = _read(os.path.join(proc_root, str(pid), "comm"), 64)
    return text.strip() if text else None


class Namer:
    """Names namespaces, reading each runtime's folders once per run."""

    def __init__(self, proc_root="/proc", docker_root=DOCKER_ROOT, pod_logs=POD_LOGS):
        self.proc_root = proc_root
        self.docker_root = docker_root
        self._sandboxes = None
        self._pods = None
        self.pod_logs = pod_logs

    def sandboxes(self):
        if self._sandboxes is None:
            self._sandboxes = docker_sandboxes(self.docker_root)
        return self._sandboxes

    def pods(self):
        if self._pods is None:
            self._pods = pod_names(self.pod_logs)
        return self._pods

    def describe(self, namespace):
        """The naming fields of one discover.Namespace, and its display name."""
        named = [name for _directory, name in namespace.named]
        container = pod = holder = None
        for directory, name in namespace.named:
            if directory.endswith("/docker/netns") and name in self.sandboxes():
                container_id, container_name = self.sandboxes()[name]
                container = {"id": container_id[:12], "name": container_name}
        for pid in namespace.pids:
            container_id, pod_uid = cgroup_ids(
                _read(os.path.join(self.proc_root, str(pid), "cgroup"), 65536))
            if container is None and container_id:
                container = {"id": container_id[:12],
                             "name": docker_name(container_id, self.docker_root)}
            if pod is None and pod_uid:
                namespace_name, pod_name = self.pods().get(pod_uid, (None, None))
                pod = {"uid": pod_uid, "namespace": namespace_name, "name": pod_name}
            if container or pod:
                break
        if namespace.pids:
            holder = {"pid": namespace.pids[0], "comm": comm(namespace.pids[0], self.proc_root)}
        if pod:
            kind, display = "kubernetes", "pod %s/%s" % (
                pod["namespace"] or "?", pod["name"] or pod["uid"])
        elif container:
            kind, display = "container", "container %s" % (container["name"] or container["id"])
        elif named:
            kind, display = "named", "netns %s" % named[0]
        else:
            kind, display = "process", "%s[%d]" % (holder["comm"] or "?", holder["pid"])
        return {
            "name": display,
            "kind": kind,
            "netns": named[0] if named else None,
            "container": container,
            "pod": pod,
            "holder": holder,
        }
