"""One rendering as the portpool_report action does it (module_utils/portpool_report_run.py)."""

import pytest
from ansible.module_utils import portpool_report_run as report_run
from report_helpers import SLICE_A, TEMPLATES


def params(dest, **overrides):
    values = {name: option.get("default")
              for name, option in report_run.report_argument_spec().items()}
    values.update(dest=str(dest), result_dirs=[str(SLICE_A)], templates=str(TEMPLATES),
                  latest_link=False)
    values.update(overrides)
    return values


def test_render_writes_the_formats_and_reports_a_change(tmp_path):
    result, warnings = report_run.render(params(tmp_path / "run"), check_mode=False)
    assert result["changed"] is True
    assert "stats" not in result and "warnings" not in result
    assert (tmp_path / "run" / "report.html").is_file()
    assert isinstance(warnings, list)


def test_render_in_check_mode_writes_nothing(tmp_path):
    result, _ = report_run.render(params(tmp_path / "run"), check_mode=True)
    assert result["changed"] is False
    assert not (tmp_path / "run").exists()


def test_bad_parameters_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="chart_hosts must be 0 or more"):
        report_run.render(params(tmp_path / "run", chart_hosts=-1), check_mode=False)
    assert not (tmp_path / "run").exists()


def test_a_file_that_cannot_be_written_names_the_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="could not write the report into"):
        report_run.render(params(blocker / "run"), check_mode=False)


def test_console_warnings_are_capped(tmp_path, monkeypatch):
    many = ["warning %d" % index for index in range(report_run.MAX_WARNINGS + 7)]

    def fake_build(*_args, **_kwargs):
        return {"stats": {}, "warnings": list(many), "files": {}}

    monkeypatch.setattr(report_run, "build_report", fake_build)
    _, warnings = report_run.render(params(tmp_path / "run"), check_mode=False)
    assert warnings[:report_run.MAX_WARNINGS] == many[:report_run.MAX_WARNINGS]
    assert warnings[-1] == "7 more warning(s) in the report"
