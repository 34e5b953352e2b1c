"""portpool_settings on temp trees: apply, state, all-or-nothing, verify and rollback.

/proc/sys is a tree of plain files here, so writes "succeed" unless a test makes
them fail; the real kernel is exercised by tests/integration and tests/fleet.
"""

import errno
import json
import os

import portpool_settings as mod
import pytest

RANGE = "net.ipv4.ip_local_port_range"
RESERVED = "net.ipv4.ip_local_reserved_ports"
REUSE = "net.ipv4.tcp_tw_reuse"
START = {
    RANGE: "32768 60999",  # a plain file does not print the kernel's tab back
    RESERVED: "",
    "net.ipv4.ip_unprivileged_port_start": "1024",
    REUSE: "2",
    "net.ipv4.tcp_timestamps": "1",
    "net.ipv4.tcp_max_tw_buckets": "131072",
}
TCP = ("  sl  local_address rem_address   st\n"
       "   0: 00000000:AFC8 00000000:0000 0A 0\n")  # a listener on 45000


@pytest.fixture
def tree(tmp_path):
    proc = tmp_path / "proc" / "sys"
    for key, value in START.items():
        path = proc.joinpath(*key.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    net = tmp_path / "proc" / "net"
    net.mkdir()
    (net / "tcp").write_text(TCP)
    root = tmp_path / "root"
    (root / "etc" / "sysctl.d").mkdir(parents=True)
    (root / "usr" / "lib" / "sysctl.d").mkdir(parents=True)
    (root / "etc" / "sysctl.conf").write_text("")
    return tmp_path


def params(**kwargs):
    base = {name: spec.get("default") for name, spec in mod.get_argument_spec().items()}
    base.update(kwargs)
    return base


def paths_for(tree, **kwargs):
    return mod.Paths(params(**kwargs), root=str(tree / "root"),
                     proc_sys=str(tree / "proc" / "sys"), proc_net=str(tree / "proc" / "net"))


def runtime(tree, key):
    return tree.joinpath("proc", "sys", *key.split(".")).read_text()


def snapshot(tree):
    """Every file under the tree, byte for byte, with modes."""
    found = {}
    for dirpath, _, files in os.walk(tree):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                found[path] = (handle.read(), os.stat(path).st_mode)
    return found


SETTINGS = {"ip_local_port_range": "40000 49999", "tcp_tw_reuse": 1}


def test_apply_writes_file_runtime_and_state_then_is_idempotent(tree):
    paths = paths_for(tree)
    result = mod.run_apply(params(settings=SETTINGS), paths, now=lambda: "T0")
    assert result["changed"] and result["state_created"]
    assert result["reserved_added"] == [45000]
    assert runtime(tree, RANGE) == "40000 49999\n"
    assert runtime(tree, RESERVED) == "45000\n"
    assert runtime(tree, REUSE) == "1\n"
    conf = tree / "root" / "etc" / "sysctl.d" / "60-portpool.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o644"
    assert "net.ipv4.tcp_tw_reuse = 1\n" in conf.read_text()
    state = json.loads((tree / "root" / "var" / "lib" / "portpool" / "tune-state.json").read_text())
    assert state["saved_at"] == "T0" and state["file_existed"] is False
    assert state["runtime"] == {RANGE: "32768 60999", RESERVED: "", REUSE: "2"}
    again = mod.run_apply(params(settings=SETTINGS), paths, now=lambda: "T1")
    assert again["changed"] is False and again["changed_keys"] == []


def test_check_mode_changes_nothing_and_reports_the_diff(tree):
    before = snapshot(tree)
    result = mod.run_apply(params(settings=SETTINGS), paths_for(tree), check_mode=True)
    assert result["changed"] is True
    assert snapshot(tree) == before
    assert not (tree / "root" / "var").exists()
    headers = [entry["before_header"] for entry in result["diff"]]
    assert headers[0].endswith("60-portpool.conf (absent)")
    assert "net.ipv4.tcp_tw_reuse = 2" in result["diff"][1]["before"]


def test_later_runs_keep_the_first_saved_values_and_add_new_keys(tree):
    paths = paths_for(tree)
    mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths, now=lambda: "T0")
    mod.run_apply(params(settings={"tcp_tw_reuse": 0, "tcp_timestamps": 1,
                                   "tcp_max_tw_buckets": 262144}), paths, now=lambda: "T1")
    state = json.loads((tree / "root" / "var" / "lib" / "portpool" / "tune-state.json").read_text())
    assert state["saved_at"] == "T0"
    assert state["runtime"] == {REUSE: "2", "net.ipv4.tcp_timestamps": "1",
                                "net.ipv4.tcp_max_tw_buckets": "131072"}


def test_rollback_restores_byte_for_byte_and_twice_is_a_no_op(tree):
    conf = tree / "root" / "etc" / "sysctl.d" / "60-portpool.conf"
    conf.write_bytes(b"# hand-written\tfile\nnet.ipv4.tcp_tw_reuse=0\n")
    os.chmod(conf, 0o600)
    before = snapshot(tree)
    paths = paths_for(tree)
    mod.run_apply(params(settings=SETTINGS), paths)
    mod.run_apply(params(settings={"tcp_max_tw_buckets": 262144}), paths)
    result = mod.run_rollback(params(mode="rollback"), paths)
    assert result["changed"] is True
    after = snapshot(tree)
    state_dir = str(tree / "root" / "var" / "lib" / "portpool")
    assert {k: v for k, v in after.items() if not k.startswith(state_dir)} == before
    assert os.path.exists(os.path.join(state_dir, "tune-state.rolled-back.json"))
    second = mod.run_rollback(params(mode="rollback"), paths)
    assert second["changed"] is False and "nothing to roll back" in second["msg"]


def test_rollback_in_check_mode_changes_nothing(tree):
    paths = paths_for(tree)
    mod.run_apply(params(settings=SETTINGS), paths)
    before = snapshot(tree)
    result = mod.run_rollback(params(mode="rollback"), paths, check_mode=True)
    assert result["changed"] is True and result["diff"]
    assert snapshot(tree) == before


def test_restore_undoes_one_run_and_keeps_the_state(tree):
    paths = paths_for(tree)
    mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths)
    second = mod.run_apply(params(settings={"tcp_tw_reuse": 0}), paths)
    mod.run_rollback(params(mode="rollback", restore=second["before"]), paths)
    assert runtime(tree, REUSE) == "1\n"
    assert (tree / "root" / "var" / "lib" / "portpool" / "tune-state.json").exists()


def _failing_writer(monkeypatch, failing_key, error=None, lie=None):
    real = mod.write_sysctl

    def write(key, value, proc_sys):
        if key == failing_key and value != START.get(key):
            if error is not None:
                raise OSError(error, os.strerror(error))
            real(key, lie, proc_sys)  # "accepted", yet the kernel holds something else
            return
        real(key, value, proc_sys)

    monkeypatch.setattr(mod, "write_sysctl", write)


@pytest.mark.parametrize("error, lie, words", [
    (errno.EINVAL, None, "refused the value (EINVAL)"),
    (errno.EROFS, None, "read-only"),
    (None, "2", "reads back"),
])
def test_a_failed_write_puts_everything_back(tree, monkeypatch, error, lie, words):
    before = snapshot(tree)
    _failing_writer(monkeypatch, REUSE, error=error, lie=lie)
    with pytest.raises(mod.TuneError) as caught:
        mod.run_apply(params(settings=SETTINGS), paths_for(tree))
    message = str(caught.value)
    assert words in message and "put back" in message
    # The range and the reservation were written before tcp_tw_reuse failed: all old again.
    assert snapshot(tree) == before


def test_a_read_only_proc_sys_fails_before_anything_changes(tree, monkeypatch):
    monkeypatch.setattr(mod, "writable", lambda key, proc_sys: False)
    before = snapshot(tree)
    with pytest.raises(mod.TuneError, match="not writable"):
        mod.run_apply(params(settings=SETTINGS), paths_for(tree))
    assert snapshot(tree) == before
    preflight = mod.run_preflight(params(settings=SETTINGS), paths_for(tree))
    assert preflight["host_errors"] and preflight["changed"] is False


def test_low_below_unprivileged_start_fails_on_the_host(tree):
    tree.joinpath("proc", "sys", "net", "ipv4", "ip_unprivileged_port_start").write_text("50000\n")
    result = mod.run_preflight(params(settings=SETTINGS), paths_for(tree))
    assert "ip_unprivileged_port_start 50000" in result["input_errors"][0]
    with pytest.raises(mod.TuneError, match="nothing was changed"):
        mod.run_apply(params(settings=SETTINGS), paths_for(tree))


def test_missing_key_is_a_host_error(tree):
    result = mod.run_preflight(params(settings={"tcp_tw_reuse_delay": 500}, optional_keys=[]),
                               paths_for(tree))
    assert "tcp_tw_reuse_delay" in result["host_errors"][0]
    skipped = mod.run_preflight(params(settings={"tcp_tw_reuse_delay": 500}), paths_for(tree))
    assert skipped["host_errors"] == [] and skipped["skipped_keys"] == [
        "net.ipv4.tcp_tw_reuse_delay"]


def test_overriding_file_is_reported_by_name(tree):
    late = tree / "root" / "usr" / "lib" / "sysctl.d" / "99-vendor.conf"
    late.write_text("net.ipv4.tcp_tw_reuse = 0\n")
    result = mod.run_preflight(params(settings=SETTINGS), paths_for(tree))
    assert result["overrides"] == [{"key": REUSE, "file": "/usr/lib/sysctl.d/99-vendor.conf"}]
    assert any("99-vendor.conf" in warning for warning in result["planned_warnings"])


def test_a_symlink_to_sysctl_conf_is_read_once(tree):
    (tree / "root" / "etc" / "sysctl.conf").write_text("net.ipv4.tcp_tw_reuse = 0\n")
    os.symlink("../sysctl.conf", tree / "root" / "etc" / "sysctl.d" / "99-sysctl.conf")
    result = mod.run_preflight(params(settings=SETTINGS), paths_for(tree))
    assert result["overrides"] == [{"key": REUSE, "file": "/etc/sysctl.d/99-sysctl.conf"}]


def test_verify_reports_mismatches(tree):
    paths = paths_for(tree)
    applied = mod.run_apply(params(settings=SETTINGS), paths)
    expected = {"runtime": applied["target"], "file": applied["after"]["file"]}
    ok = mod.run_verify(params(mode="verify", expected=expected), paths)
    assert ok["mismatches"] == [] and ok["pool"]["usable"] == 9999
    tree.joinpath("proc", "sys", "net", "ipv4", "tcp_tw_reuse").write_text("0\n")
    bad = mod.run_verify(params(mode="verify", expected=expected), paths)
    assert bad["failed"] and bad["mismatches"][0]["key"] == REUSE


def test_validate_mode_fails_with_every_message():
    result = mod.run_validate(params(mode="validate", hosts={
        "h1": {"settings": {"tcp_tw_recycle": 1}},
        "h2": {"settings": {"ip_local_port_range": "1 2; rm -rf /"}}}))
    assert result["failed"]
    assert "h1: portpool_tune_settings.tcp_tw_recycle is refused" in result["msg"]
    assert "h2: portpool_tune_settings.ip_local_port_range" in result["msg"]


@pytest.mark.parametrize("name", ["../x.conf", "x.sh", ".hidden.conf", "a b.conf", ""])
def test_bad_file_names_are_refused(name):
    with pytest.raises(mod.TuneError, match="portpool_tune_file_name"):
        mod.Paths(params(file_name=name))


def test_verify_also_checks_the_facts(tree):
    paths = paths_for(tree)
    applied = mod.run_apply(params(settings=SETTINGS), paths)
    expected = {"runtime": applied["target"], "file": applied["after"]["file"]}
    facts = {"sysctl": {"ip_local_port_range": [40000, 49999],
                        "ip_local_reserved_ports": [[45000, 45000]], "tcp_tw_reuse": 2}}
    result = mod.run_verify(params(mode="verify", expected=expected, facts=facts), paths)
    assert result["failed"] and "in portpool_facts" in result["msg"]
    assert [item["key"] for item in result["mismatches"]] == [REUSE]


def test_documentation_parses_and_matches_the_argument_spec():
    import yaml

    doc = yaml.safe_load(mod.DOCUMENTATION)
    spec = mod.get_argument_spec()
    assert set(doc["options"]) == set(spec)
    for name, option in doc["options"].items():
        assert option["type"] == spec[name]["type"], name
        assert option.get("default") == spec[name].get("default"), name
    yaml.safe_load(mod.EXAMPLES)
    assert yaml.safe_load(mod.RETURN)


def test_verify_also_checks_the_probe(tree):
    paths = paths_for(tree)
    applied = mod.run_apply(params(settings=SETTINGS), paths)
    expected = {"runtime": applied["target"], "file": applied["after"]["file"]}
    good = {"range": [40000, 49999], "expected": 9999, "matches_expected": True}
    assert mod.run_verify(params(mode="verify", expected=expected, probe=good),
                          paths)["mismatches"] == []
    stale = dict(good, range=[32768, 60999])
    result = mod.run_verify(params(mode="verify", expected=expected, probe=stale), paths)
    assert result["failed"] and "in portpool_probe" in result["msg"]
