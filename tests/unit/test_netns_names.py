"""Naming network namespaces from what runtimes leave on disk, on fixture trees."""

import json
import os

from ansible.module_utils.portpool_netns_discover import Namespace, discover
from ansible.module_utils.portpool_netns_names import Namer, cgroup_ids, docker_name, pod_names

DOCKER_ID = "3f2a9c1b7d44" + "0" * 52
POD_UID = "7c1d2e3f-0a1b-4c2d-8e9f-001122334455"


def _proc(tmp_path, pid, cgroup, comm="nginx"):
    directory = tmp_path / "proc" / str(pid)
    directory.mkdir(parents=True)
    (directory / "cgroup").write_text(cgroup)
    (directory / "comm").write_text(comm + "\n")
    return str(tmp_path / "proc")


def _docker(tmp_path, container_id, name, sandbox=""):
    directory = tmp_path / "docker" / "containers" / container_id
    directory.mkdir(parents=True)
    (directory / "config.v2.json").write_text(json.dumps(
        {"Name": "/" + name, "NetworkSettings": {"SandboxKey": sandbox}}))
    return str(tmp_path / "docker")


def test_cgroup_ids_for_each_runtime_layout():
    assert cgroup_ids("0::/system.slice/docker-%s.scope\n" % DOCKER_ID) == (DOCKER_ID, None)
    assert cgroup_ids("12:memory:/docker/%s\n" % DOCKER_ID) == (DOCKER_ID, None)
    systemd_pod = ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s"
                   ".slice/cri-containerd-%s.scope\n" % (POD_UID.replace("-", "_"), DOCKER_ID))
    assert cgroup_ids(systemd_pod) == (DOCKER_ID, POD_UID)
    cgroupfs_pod = "0::/kubepods/burstable/pod%s/%s\n" % (POD_UID, DOCKER_ID)
    assert cgroup_ids(cgroupfs_pod) == (None, POD_UID)
    assert cgroup_ids("0::/user.slice/user-0.slice/session-3.scope\n") == (None, None)
    assert cgroup_ids(None) == (None, None)


def test_docker_name_and_bad_configs(tmp_path):
    root = _docker(tmp_path, DOCKER_ID, "web-1")
    assert docker_name(DOCKER_ID, root) == "web-1"
    assert docker_name("f" * 64, root) is None
    (tmp_path / "docker" / "containers" / DOCKER_ID / "config.v2.json").write_text("{not json")
    assert docker_name(DOCKER_ID, root) is None


def test_pod_names_from_kubelet_log_folders(tmp_path):
    logs = tmp_path / "pods"
    (logs / ("shop_cart-7d9f_%s" % POD_UID)).mkdir(parents=True)
    (logs / "not-a-pod-folder").mkdir()
    assert pod_names(str(logs)) == {POD_UID: ("shop", "cart-7d9f")}
    assert pod_names(str(tmp_path / "absent")) == {}


def test_namer_prefers_pod_then_container_then_netns_then_process(tmp_path):
    proc = _proc(tmp_path, 10, "0::/kubepods/burstable/pod%s/%s\n" % (POD_UID, DOCKER_ID))
    _proc(tmp_path, 11, "0::/system.slice/docker-%s.scope\n" % DOCKER_ID)
    _proc(tmp_path, 12, "0::/user.slice\n", comm="haproxy")
    docker = _docker(tmp_path, DOCKER_ID, "web-1")
    (tmp_path / "pods" / ("shop_cart_%s" % POD_UID)).mkdir(parents=True)
    namer = Namer(proc, docker, str(tmp_path / "pods"))

    pod = namer.describe(Namespace(1, pids=[10], processes=1))
    assert pod["kind"] == "kubernetes"
    assert pod["name"] == "pod shop/cart"
    assert pod["pod"] == {"uid": POD_UID, "namespace": "shop", "name": "cart"}

    container = namer.describe(Namespace(2, pids=[11], processes=1))
    assert container["kind"] == "container"
    assert container["container"] == {"id": DOCKER_ID[:12], "name": "web-1"}
    assert container["name"] == "container web-1"

    named = namer.describe(Namespace(3, named=[("/run/netns", "blue")], pids=[12]))
    assert (named["kind"], named["name"], named["netns"]) == ("named", "netns blue", "blue")

    process = namer.describe(Namespace(4, pids=[12], processes=2))
    assert process["kind"] == "process"
    assert process["name"] == "haproxy[12]"
    assert process["holder"] == {"pid": 12, "comm": "haproxy"}


def test_namer_names_docker_sandboxes_by_their_netns_file(tmp_path):
    proc = _proc(tmp_path, 12, "0::/user.slice\n")
    docker = _docker(tmp_path, DOCKER_ID, "db", sandbox="/var/run/docker/netns/9ab1c2")
    namer = Namer(proc, docker, str(tmp_path / "pods"))
    described = namer.describe(Namespace(5, named=[("/run/docker/netns", "9ab1c2")]))
    assert described["container"] == {"id": DOCKER_ID[:12], "name": "db"}
    assert described["kind"] == "container"


def test_discover_skips_stale_files_and_the_callers_own_namespace(tmp_path):
    netns = tmp_path / "netns"
    netns.mkdir()
    (netns / "left-behind").write_text("")  # nothing mounted on it: not a namespace
    found, notes = discover("/proc", directories=[str(netns)])
    own = os.stat("/proc/self/ns/net").st_ino
    assert own not in [namespace.inode for namespace in found]
    assert notes["stale_files"] == [str(netns / "left-behind")]
