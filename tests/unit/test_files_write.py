"""portpool_files: one atomic write for the controller's results and tune's files."""

import errno
import os

import pytest
from ansible.module_utils import portpool_files


def test_the_mode_is_set_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        portpool_files.atomic_write(str(tmp_path / "conf"), b"a = 1\n", 0o644, sync=True)
    finally:
        os.umask(old)
    assert oct((tmp_path / "conf").stat().st_mode & 0o777) == oct(0o644)
    assert (tmp_path / "conf").read_bytes() == b"a = 1\n"
    assert os.listdir(tmp_path) == ["conf"]  # no temporary file left


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP])
def test_a_filesystem_that_cannot_sync_a_folder_is_not_an_error(tmp_path, monkeypatch, code):
    def refuse(_fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(portpool_files.os, "fsync", refuse)
    portpool_files.fsync_dir(str(tmp_path))


def test_a_disk_error_while_syncing_the_folder_is_raised(tmp_path, monkeypatch):
    def fail(_fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(portpool_files.os, "fsync", fail)
    with pytest.raises(OSError) as caught:
        portpool_files.fsync_dir(str(tmp_path))
    assert caught.value.errno == errno.EIO


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old\n")

    def broken():
        yield "half"
        raise ValueError("template failed")

    with pytest.raises(ValueError):
        portpool_files.atomic_write(str(target), broken(), sync=True)
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["state.json"]
