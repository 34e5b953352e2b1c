"""portpool_settings on temp trees: apply, state, all-or-nothing, verify and rollback.

/proc/sys is a tree of plain files here, so writes "succeed" unless a test makes
them fail; the real kernel is exercised by tests/integration and tests/fleet.
"""

import errno
import json
import os

import portpool_settings as mod
import pytest
from ansible.module_utils import portpool_tune_apply as apply_mod

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
    real = apply_mod.write_sysctl

    def write(key, value, proc_sys):
        if key == failing_key and value != START.get(key):
            if error is not None:
                raise OSError(error, os.strerror(error))
            real(key, lie, proc_sys)  # "accepted", yet the kernel holds something else
            return
        real(key, value, proc_sys)

    monkeypatch.setattr(apply_mod, "write_sysctl", write)


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
    monkeypatch.setattr(apply_mod, "writable", lambda key, proc_sys: False)
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


# ---- the security review (issue 11) -----------------------------------------------------

STATE_DIR = ("root", "var", "lib", "portpool")


def state_dir(tree):
    return tree.joinpath(*STATE_DIR)


def test_a_state_directory_others_can_write_is_refused(tree):
    """H1: a planted state in a world-writable directory is never used."""
    paths = paths_for(tree)
    mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths)
    os.chmod(state_dir(tree), 0o777)
    before = snapshot(tree)
    with pytest.raises(mod.TuneError, match="writable by group or others"):
        mod.run_rollback(params(mode="rollback"), paths)
    with pytest.raises(mod.TuneError, match="refusing the state directory"):
        mod.run_apply(params(settings={"tcp_tw_reuse": 0}), paths)
    assert snapshot(tree) == before


def test_a_symlinked_state_directory_is_refused(tree, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    state_dir(tree).parent.mkdir(parents=True)
    os.symlink(elsewhere, state_dir(tree))
    with pytest.raises(mod.TuneError, match="it is a symlink"):
        mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths_for(tree))
    assert list(elsewhere.iterdir()) == []


def test_the_state_directory_is_created_and_kept_0700(tree):
    state_dir(tree).mkdir(parents=True, mode=0o755)
    os.chmod(state_dir(tree), 0o755)
    mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths_for(tree))
    assert state_dir(tree).stat().st_mode & 0o7777 == 0o700
    assert (state_dir(tree) / "tune-state.json").stat().st_mode & 0o7777 == 0o600


def planted(tree, **changes):
    """A state portpool could have written, with `changes` on top."""
    import base64

    state = {"version": 1, "saved_at": "T0", "file": "/etc/sysctl.d/60-portpool.conf",
             "file_existed": True,
             "file_content_b64": base64.b64encode(b"net.ipv4.tcp_tw_reuse = 0\n").decode(),
             "file_mode": 0o644, "runtime": {REUSE: "2"}}
    state.update(changes)
    state_dir(tree).mkdir(parents=True, mode=0o700)
    path = state_dir(tree) / "tune-state.json"
    path.write_text(json.dumps(state))
    os.chmod(path, 0o600)
    return state


EVIL = b"kernel.core_pattern = |/tmp/x %p\nfs.protected_symlinks = 0\n"


@pytest.mark.parametrize("changes, words", [
    ({"file_content_b64": __import__("base64").b64encode(EVIL).decode()},
     "kernel.core_pattern, which portpool does not manage"),
    ({"file_mode": 0o4777}, "file_mode 2559 is not a plain permission mode"),
    ({"runtime": {RANGE: "1024 1025; x"}}, "runtime.ip_local_port_range"),
    ({"runtime": {"kernel.core_pattern": "|x"}}, "'kernel.core_pattern'"),
    ({"file": "/etc/cron.d/60-portpool.conf"}, "is not in /etc/sysctl.d"),
    ({"file_content_b64": "@@@"}, "not base64"),
    ({"version": 1, "extra": 1}, "unknown fields 'extra'"),
    ({"runtime": []}, "runtime is not an object"),
])
def test_a_planted_state_file_is_refused_and_changes_nothing(tree, changes, words):
    """H1: the state is checked like user input before anything is restored."""
    planted(tree, **changes)
    before = snapshot(tree)
    with pytest.raises(mod.TuneError) as caught:
        mod.run_rollback(params(mode="rollback"), paths_for(tree))
    assert "refusing the saved state" in str(caught.value)
    assert words in str(caught.value)
    assert snapshot(tree) == before


def test_a_state_file_owned_by_someone_else_is_refused(tree):
    planted(tree)
    os.chown(state_dir(tree) / "tune-state.json", 65534, 65534)
    with pytest.raises(mod.TuneError, match="owned by uid 65534"):
        mod.run_rollback(params(mode="rollback"), paths_for(tree))


def test_a_restored_file_never_gets_a_group_or_world_writable_mode(tree):
    conf = tree / "root" / "etc" / "sysctl.d" / "60-portpool.conf"
    conf.write_text("net.ipv4.tcp_tw_reuse = 0\n")
    os.chmod(conf, 0o666)
    paths = paths_for(tree)
    mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths)
    mod.run_rollback(params(mode="rollback"), paths)
    assert conf.read_text() == "net.ipv4.tcp_tw_reuse = 0\n"
    assert conf.stat().st_mode & 0o7777 == 0o644


@pytest.mark.parametrize("link, words", [
    ("/dev/null", "masked (a symlink to /dev/null)"),
    ("../sysctl.conf", "is a symlink to ../sysctl.conf"),
])
def test_a_masked_or_symlinked_file_is_refused_and_kept(tree, link, words):
    """H2: the mask or link stays exactly as it was."""
    conf = tree / "root" / "etc" / "sysctl.d" / "60-portpool.conf"
    os.symlink(link, conf)
    before = snapshot(tree)
    preflight = mod.run_preflight(params(settings=SETTINGS), paths_for(tree))
    assert any(words in error for error in preflight["host_errors"])
    with pytest.raises(mod.TuneError, match="nothing was changed"):
        mod.run_apply(params(settings=SETTINGS), paths_for(tree))
    assert os.readlink(conf) == link
    assert snapshot(tree) == before
    assert not state_dir(tree).exists()


def test_a_mask_made_after_the_tune_is_not_replaced_by_rollback(tree):
    paths = paths_for(tree)
    mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths)
    conf = tree / "root" / "etc" / "sysctl.d" / "60-portpool.conf"
    conf.unlink()
    os.symlink("/dev/null", conf)
    with pytest.raises(mod.TuneError, match="masked"):
        mod.run_rollback(params(mode="rollback"), paths)
    assert os.readlink(conf) == "/dev/null"


def test_reserving_every_port_is_refused(tree):
    """H3: the pool is the current range minus the new reservation."""
    before = snapshot(tree)
    result = mod.run_preflight(params(settings={"ip_local_reserved_ports": "0-65535"}),
                               paths_for(tree))
    assert any("leaves 0 usable ports" in error for error in result["input_errors"])
    with pytest.raises(mod.TuneError, match="usable ports"):
        mod.run_apply(params(settings={"ip_local_reserved_ports": "32768-60000"}),
                      paths_for(tree))
    assert snapshot(tree) == before


def test_a_renamed_file_is_refused_until_rolled_back(tree):
    """M2: the state names its file; a tune under another name is refused."""
    paths = paths_for(tree)
    mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths)
    other = paths_for(tree, file_name="70-portpool.conf")
    before = snapshot(tree)
    with pytest.raises(mod.TuneError, match=r"is for /etc/sysctl\.d/60-portpool\.conf"):
        mod.run_apply(params(settings={"tcp_tw_reuse": 0}, file_name="70-portpool.conf"),
                      other)
    assert snapshot(tree) == before
    mod.run_rollback(params(mode="rollback"), paths)
    assert sorted(os.listdir(tree / "root" / "etc" / "sysctl.d")) == []


@pytest.mark.parametrize("name", ["99-protect-links.conf", "99-sysctl.conf", "50-default.conf",
                                  "10-network-security.conf", "60-pörtpool.conf"])
def test_distribution_and_non_ascii_file_names_are_refused(name):
    """M3 (and L13)."""
    with pytest.raises(mod.TuneError, match="portpool_tune_file_name"):
        mod.Paths(params(file_name=name))


def test_a_name_shipped_in_a_later_directory_is_refused(tree):
    """M3: ours would replace /usr/lib/sysctl.d/70-vendor.conf at boot."""
    (tree / "root" / "usr" / "lib" / "sysctl.d" / "70-vendor.conf").write_text(
        "fs.protected_fifos = 1\n")
    paths = paths_for(tree, file_name="70-vendor.conf")
    result = mod.run_preflight(params(settings=SETTINGS, file_name="70-vendor.conf"), paths)
    assert any("would replace /usr/lib/sysctl.d/70-vendor.conf" in error
               for error in result["host_errors"])


def test_an_existing_file_with_foreign_settings_is_not_overwritten(tree):
    conf = tree / "root" / "etc" / "sysctl.d" / "60-portpool.conf"
    conf.write_text("vm.swappiness = 10\n")
    with pytest.raises(mod.TuneError, match=r"vm\.swappiness, which portpool does not manage"):
        mod.run_apply(params(settings=SETTINGS), paths_for(tree))
    assert conf.read_text() == "vm.swappiness = 10\n"


def test_a_second_run_waits_for_the_lock_then_fails_clearly(tree):
    """M1: one lock per host; the second run gives up after lock_timeout."""
    import fcntl

    state_dir(tree).mkdir(parents=True, mode=0o700)
    holder = os.open(state_dir(tree), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        before = snapshot(tree)
        for call in (lambda p: mod.run_apply(params(settings=SETTINGS), p),
                     lambda p: mod.run_rollback(params(mode="rollback"), p),
                     lambda p: mod.run_verify(params(mode="verify"), p)):
            with pytest.raises(mod.TuneError, match="another portpool run holds the lock on"):
                call(paths_for(tree, lock_timeout=0))
        assert snapshot(tree) == before
    finally:
        os.close(holder)


def test_an_older_run_does_not_undo_a_newer_one(tree):
    """M1: run A's verification and undo see that run B changed the host after it."""
    paths = paths_for(tree)
    first = mod.run_apply(params(settings={"tcp_tw_reuse": 1}), paths)
    second = mod.run_apply(params(settings={"tcp_tw_reuse": 0}), paths)
    expected = {"runtime": first["target"], "file": first["after"]["file"]}
    verified = mod.run_verify(params(mode="verify", expected=expected,
                                     run_id=first["run_id"]), paths)
    assert verified["failed"] and "another portpool run changed this host" in verified["msg"]
    before = snapshot(tree)
    undone = mod.run_rollback(params(mode="rollback", run_id=first["run_id"]), paths)
    assert undone["changed"] is False and "not undone: another portpool run" in undone["msg"]
    assert snapshot(tree) == before
    assert runtime(tree, REUSE) == "0\n"
    ok = mod.run_verify(params(mode="verify", run_id=second["run_id"],
                               expected={"runtime": second["target"]}), paths)
    assert ok["mismatches"] == []
    mod.run_rollback(params(mode="rollback", restore=second["before"],
                            run_id=second["run_id"]), paths)
    assert runtime(tree, REUSE) == "1\n"


def test_a_second_run_waits_for_the_lock_and_then_goes_on(tree):
    """M1: a run that finds the host locked waits (bounded) instead of failing at once."""
    import fcntl
    import threading

    state_dir(tree).mkdir(parents=True, mode=0o700)
    holder = os.open(state_dir(tree), os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    released = threading.Event()

    def release():
        released.set()
        os.close(holder)

    timer = threading.Timer(0.3, release)
    timer.start()
    try:
        result = mod.run_apply(params(settings={"tcp_tw_reuse": 1}),
                               paths_for(tree, lock_timeout=10))
        # It changed the host only once the other run had let go.
        assert released.is_set()
    finally:
        timer.join(timeout=5)
    assert result["changed"] and runtime(tree, REUSE) == "1\n"


class _Outcome:
    def __init__(self, probe=None, error=None):
        self.probe, self.error = probe, error


def test_apply_verifies_in_the_same_call(tree):
    paths = paths_for(tree)
    calls = []

    def measure(options, check_mode):
        calls.append((options, check_mode))
        return _Outcome(probe={"range": [40000, 49999], "expected": 9999,
                               "matches_expected": True})

    applied = mod.run_apply_verified(
        params(settings=SETTINGS, verify_probe={"scope": "quick"}), paths, measure=measure)
    assert applied["changed"] and not applied.get("failed")
    assert applied["mismatches"] == [] and applied["pool"]["usable"] == 9999
    assert calls == [({"scope": "quick"}, False)] and applied["probe"]["matches_expected"]
    # Unchanged and check-mode runs touch nothing, so they neither read back nor probe.
    again = mod.run_apply_verified(params(settings=SETTINGS, verify_probe={}), paths,
                                   measure=measure)
    checked = mod.run_apply_verified(params(settings=SETTINGS, verify_probe={}), paths,
                                     check_mode=True, measure=measure)
    assert len(calls) == 1 and "mismatches" not in again and "mismatches" not in checked


def test_apply_fails_its_verification_and_keeps_what_undoes_it(tree, monkeypatch):
    paths = paths_for(tree)
    real = apply_mod.run_verify

    def tampered(checked, paths):
        # Something else changes the kernel between the write and the read-back.
        tree.joinpath("proc", "sys", "net", "ipv4", "tcp_tw_reuse").write_text("0\n")
        return real(checked, paths)

    monkeypatch.setattr(apply_mod, "run_verify", tampered)
    applied = mod.run_apply_verified(params(settings=SETTINGS), paths)
    assert applied["failed"] and "verification failed" in applied["msg"]
    assert [m["key"] for m in applied["mismatches"]] == [REUSE]
    assert applied["run_id"] and applied["state_created"] and applied["before"]
    undone = mod.run_rollback(params(mode="rollback", run_id=applied["run_id"]), paths)
    assert undone["changed"] and runtime(tree, RANGE) == "32768 60999\n"


def test_a_failed_probe_fails_the_verification(tree):
    applied = mod.run_apply_verified(
        params(settings=SETTINGS, verify_probe={}), paths_for(tree),
        measure=lambda options, check_mode: _Outcome(error="no lab namespace"))
    assert applied["failed"] and "the probe failed: no lab namespace" in applied["msg"]
    assert applied["probe"] is None


def test_verify_false_only_applies(tree):
    applied = mod.run_apply_verified(params(settings=SETTINGS, verify=False), paths_for(tree))
    assert applied["changed"] and "mismatches" not in applied
