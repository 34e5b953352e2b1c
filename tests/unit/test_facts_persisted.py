"""systemd-sysctl precedence on fixture trees built per test."""

import os

import pytest
from ansible.module_utils.portpool_persisted import (
    find_drift,
    list_config_files,
    normalise_key,
    parse_sysctl_conf,
    read_persisted,
    resolve_persisted,
)
from ansible.module_utils.portpool_sysctl import same

RANGE = "net.ipv4.ip_local_port_range"
REUSE = "net.ipv4.tcp_tw_reuse"


def write(root, path, text):
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)
    return full


def link(root, path, target):
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, full)


def test_files_sorted_by_name_across_directories(tmp_path):
    write(tmp_path, "/usr/lib/sysctl.d/10-vendor.conf", "")
    write(tmp_path, "/etc/sysctl.d/50-local.conf", "")
    write(tmp_path, "/run/sysctl.d/30-run.conf", "")
    write(tmp_path, "/usr/local/lib/sysctl.d/40-site.conf", "")
    write(tmp_path, "/etc/sysctl.d/README", "")
    write(tmp_path, "/etc/sysctl.conf", "")
    files, masked = list_config_files(str(tmp_path))
    assert files == ["/usr/lib/sysctl.d/10-vendor.conf", "/run/sysctl.d/30-run.conf",
                     "/usr/local/lib/sysctl.d/40-site.conf", "/etc/sysctl.d/50-local.conf",
                     "/etc/sysctl.conf"]
    assert masked == []


def test_same_name_earlier_directory_wins(tmp_path):
    write(tmp_path, "/usr/lib/sysctl.d/50-pool.conf", "%s = 1024 65000\n" % RANGE)
    write(tmp_path, "/run/sysctl.d/50-pool.conf", "%s = 2000 3000\n" % RANGE)
    write(tmp_path, "/etc/sysctl.d/50-pool.conf", "%s = 32768 60999\n" % RANGE)
    persisted, warnings = read_persisted([RANGE], str(tmp_path))
    assert warnings == []
    assert persisted["files"] == ["/etc/sysctl.d/50-pool.conf"]
    winner = persisted["keys"][RANGE]
    assert (winner["value"], winner["file"], winner["also"]) == (
        "32768 60999", "/etc/sysctl.d/50-pool.conf", [])


def test_dev_null_symlink_masks_the_name(tmp_path):
    write(tmp_path, "/usr/lib/sysctl.d/50-default.conf", "%s = 0\n" % REUSE)
    link(tmp_path, "/etc/sysctl.d/50-default.conf", "/dev/null")
    files, masked = list_config_files(str(tmp_path))
    assert files == []
    assert masked == ["/etc/sysctl.d/50-default.conf"]
    persisted, _warnings = read_persisted([REUSE], str(tmp_path))
    assert persisted["keys"][REUSE] is None


def test_lib_symlinked_to_usr_lib_is_read_once(tmp_path):
    write(tmp_path, "/usr/lib/sysctl.d/10-a.conf", "%s = 1\n" % REUSE)
    link(tmp_path, "/lib", "usr/lib")
    files, _masked = list_config_files(str(tmp_path))
    assert files == ["/usr/lib/sysctl.d/10-a.conf"]


def test_lib_sysctl_d_read_when_distinct(tmp_path):
    write(tmp_path, "/lib/sysctl.d/05-old.conf", "%s = 1\n" % REUSE)
    write(tmp_path, "/usr/lib/sysctl.d/05-old.conf", "%s = 2\n" % REUSE)
    persisted, _warnings = read_persisted([REUSE], str(tmp_path))
    assert persisted["keys"][REUSE]["file"] == "/usr/lib/sysctl.d/05-old.conf"


def test_later_file_overrides_and_others_are_listed(tmp_path):
    write(tmp_path, "/usr/lib/sysctl.d/10-base.conf", "%s = 32768 60999\n" % RANGE)
    write(tmp_path, "/etc/sysctl.d/90-app.conf", "# app\n\n%s=1024\t65000\n" % RANGE)
    write(tmp_path, "/etc/sysctl.d/50-mid.conf", "%s = 20000 30000\n" % RANGE)
    persisted, _warnings = read_persisted([RANGE], str(tmp_path))
    winner = persisted["keys"][RANGE]
    assert winner["value"] == "1024 65000"
    assert winner["file"] == "/etc/sysctl.d/90-app.conf"
    assert winner["line"] == 3
    assert winner["also"] == [
        {"file": "/usr/lib/sysctl.d/10-base.conf", "line": 1, "value": "32768 60999"},
        {"file": "/etc/sysctl.d/50-mid.conf", "line": 1, "value": "20000 30000"},
    ]


def test_sysctl_conf_is_read_last(tmp_path):
    write(tmp_path, "/etc/sysctl.d/99-zzz.conf", "%s = 0\n" % REUSE)
    write(tmp_path, "/etc/sysctl.conf", "%s = 1\n" % REUSE)
    persisted, _warnings = read_persisted([REUSE], str(tmp_path))
    assert persisted["keys"][REUSE]["file"] == "/etc/sysctl.conf"
    assert persisted["keys"][REUSE]["value"] == "1"


def test_sysctl_conf_through_99_symlink_is_read_once_in_that_place(tmp_path):
    write(tmp_path, "/etc/sysctl.conf", "%s = 1\n" % REUSE)
    link(tmp_path, "/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
    write(tmp_path, "/etc/sysctl.d/zz-late.conf", "%s = 2\n" % REUSE)
    persisted, _warnings = read_persisted([REUSE], str(tmp_path))
    assert persisted["files"] == ["/etc/sysctl.d/99-sysctl.conf", "/etc/sysctl.d/zz-late.conf"]
    assert persisted["keys"][REUSE]["file"] == "/etc/sysctl.d/zz-late.conf"


def test_absolute_symlink_resolves_inside_root(tmp_path):
    write(tmp_path, "/etc/sysctl.conf", "%s = 1\n" % REUSE)
    link(tmp_path, "/etc/sysctl.d/99-sysctl.conf", "/etc/sysctl.conf")
    files, _masked = list_config_files(str(tmp_path))
    assert files == ["/etc/sysctl.d/99-sysctl.conf"]


def test_dangling_symlink_is_skipped(tmp_path):
    link(tmp_path, "/etc/sysctl.d/10-gone.conf", "/nowhere.conf")
    assert list_config_files(str(tmp_path)) == ([], [])


@pytest.mark.parametrize("key, expected", [
    ("net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse"),
    ("net/ipv4/tcp_tw_reuse", "net.ipv4.tcp_tw_reuse"),
    ("net/ipv4/conf/enp3s0.200/forwarding", "net.ipv4.conf.enp3s0/200.forwarding"),
    ("  net.core.somaxconn ", "net.core.somaxconn"),
])
def test_key_normalisation(key, expected):
    assert normalise_key(key) == expected


def test_parse_lines_comments_dash_and_errors():
    entries, errors = parse_sysctl_conf(
        "# comment\n; also comment\n\n-net.ipv4.tcp_tw_recycle = 0\n"
        "net/ipv4/tcp_tw_reuse=1\nnot an assignment\n-net.ipv4.conf.lo.*\n"
        "net.ipv4.conf.*.rp_filter = 2\n")
    assert [(e["line"], e["key"], e["value"], e["ignore_errors"], e["glob"]) for e in entries] == [
        (4, "net.ipv4.tcp_tw_recycle", "0", True, False),
        (5, "net.ipv4.tcp_tw_reuse", "1", False, False),
        (7, "net.ipv4.conf.lo.*", None, True, True),
        (8, "net.ipv4.conf.*.rp_filter", "2", False, True),
    ]
    assert errors == [(6, "not an assignment")]


def test_glob_applies_unless_an_explicit_assignment_exists():
    files = [
        ("/etc/sysctl.d/10-glob.conf", parse_sysctl_conf("net.ipv4.tcp_*_reuse = 1\n")[0]),
        ("/etc/sysctl.d/20-glob.conf", parse_sysctl_conf("net.ipv4.tcp_tw_* = 0\n")[0]),
    ]
    result = resolve_persisted(files, [REUSE])
    assert result[REUSE]["value"] == "0"
    assert result[REUSE]["glob"] == "net.ipv4.tcp_tw_*"
    files.insert(0, ("/etc/sysctl.d/05-explicit.conf", parse_sysctl_conf("%s = 2\n" % REUSE)[0]))
    result = resolve_persisted(files, [REUSE])
    # An explicit assignment beats any glob, whatever the order.
    assert (result[REUSE]["value"], result[REUSE]["glob"]) == ("2", None)
    assert len(result[REUSE]["also"]) == 2


def test_dash_pattern_excludes_a_key_from_globs():
    files = [("/etc/sysctl.d/10.conf", parse_sysctl_conf(
        "net.ipv4.tcp_tw_* = 0\n-net.ipv4.tcp_tw_reuse\n")[0])]
    assert resolve_persisted(files, [REUSE])[REUSE] is None


def test_dash_prefix_is_reported():
    files = [("/etc/sysctl.d/10.conf", parse_sysctl_conf("-%s = 1\n" % REUSE)[0])]
    assert resolve_persisted(files, [REUSE])[REUSE]["ignore_errors"] is True


def test_unparsable_line_warns_with_file_and_line(tmp_path):
    write(tmp_path, "/etc/sysctl.d/10-bad.conf", "%s = 1\ngarbage\n" % REUSE)
    persisted, warnings = read_persisted([REUSE], str(tmp_path))
    assert warnings == ["/etc/sysctl.d/10-bad.conf:2: not an assignment: garbage"]
    assert persisted["keys"][REUSE]["value"] == "1"


def test_empty_tree(tmp_path):
    persisted, warnings = read_persisted([REUSE, RANGE], str(tmp_path))
    assert warnings == []
    assert persisted == {"root": str(tmp_path), "files": [], "masked": [],
                         "keys": {REUSE: None, RANGE: None}}


def test_drift_compares_typed_values():
    keys = {
        RANGE: {"value": "32768 60999", "file": "/etc/sysctl.conf"},
        REUSE: {"value": "1", "file": "/etc/sysctl.d/50.conf"},
        "net.ipv4.ip_local_reserved_ports": {"value": "8080, 9000-9010", "file": "/x"},
        "net.ipv4.tcp_tw_recycle": {"value": "0", "file": "/etc/sysctl.d/old.conf"},
        "net.core.somaxconn": None,
    }
    runtime = {RANGE: "32768 60999", REUSE: "2",
               "net.ipv4.ip_local_reserved_ports": "8080,9000-9010",
               "net.ipv4.tcp_tw_recycle": None, "net.core.somaxconn": "4096"}
    assert find_drift(runtime, keys) == {
        REUSE: {"runtime": "2", "persisted": "1", "file": "/etc/sysctl.d/50.conf"},
        "net.ipv4.tcp_tw_recycle": {"runtime": None, "persisted": "0",
                                    "file": "/etc/sysctl.d/old.conf"},
    }


def test_same_whitespace_and_quotes():
    assert same(RANGE, "32768\t60999", "32768 60999")
    # systemd does not unquote: a quoted value is not the runtime value.
    assert not same(RANGE, '"32768 60999"', "32768 60999")
