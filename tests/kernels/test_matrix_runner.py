"""The matrix runner's own logic: package choice, selection file, per-kernel report."""

from tests.kernels import images, vm
from tests.kernels.__main__ import report, selected_tests


def test_newest_package_compares_numbers_not_text():
    names = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64",
             "linux-image-6.1.0-57-cloud-amd64", "linux-image-6.1.0-10-amd64"]
    assert images.newest_package(images.SERIES["6.1"], names) == "linux-image-6.1.0-57-amd64"
    names = ["linux-image-6.12.99+deb12-amd64", "linux-image-6.12.117+deb12-amd64",
             "linux-image-6.12.117+deb12-rt-amd64", "linux-image-6.12-amd64"]
    assert images.newest_package(images.SERIES["6.12"], names) == \
        "linux-image-6.12.117+deb12-amd64"
    assert images.newest_package(images.SERIES["6.12"], []) is None


def test_selection_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "selection.txt"
    path.write_text("# heading\n\ntests/kernels/a.py  # why\n  tests/b.py::test_x\n")
    assert selected_tests(path) == ["tests/kernels/a.py", "tests/b.py::test_x"]


def test_report_names_the_kernel_on_every_failure():
    output = "\n".join([
        "..F",
        "FAILED tests/kernels/test_x.py::test_y[tw1] - AssertionError: boom",
        "1 failed, 2 passed in 12.34s",
    ])
    lines = report("6.1.0-57-amd64", 1, output, 60.2)
    assert lines[0] == "kernel 6.1.0-57-amd64: FAILED (pytest exit 1), 1 failed, 2 passed, 60 s"
    assert lines[1] == ("[6.1.0-57-amd64] FAILED tests/kernels/test_x.py::test_y[tw1]"
                        " - AssertionError: boom")


def test_report_says_when_the_guest_never_ran():
    lines = report("6.12.118+deb12-amd64", vm.VM_FAILED, "guest timed out after 420s\n...", 420)
    assert lines == ["kernel 6.12.118+deb12-amd64: could not run (guest timed out after 420s),"
                     " no summary, 420 s"]


def test_console_markers_carry_the_exit_status():
    console = "noise\r\nMATRIX-BEGIN\r\nkernel x\r\n3 passed in 1s\r\nMATRIX-END rc=0\r\n"
    found = vm.MARKERS.search(console)
    assert found.group(2) == "0"
    assert "3 passed" in found.group(1)
