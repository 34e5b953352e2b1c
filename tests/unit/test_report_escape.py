import pytest
from ansible.module_utils.portpool_report import (
    console_text,
    markdown_text,
    prometheus_label,
    safe_file_name,
    xml_text,
)


@pytest.mark.parametrize("value, expected", [
    ("web01", "web01"),
    ('a"b', 'a\\"b'),
    ("a\\b", "a\\\\b"),
    ("line\nbreak", "line\\nbreak"),
    ('\\"\n', '\\\\\\"\\n'),
    (None, ""),
    (42, "42"),
])
def test_prometheus_label_escapes_backslash_quote_newline(value, expected):
    assert prometheus_label(value) == expected


def test_markdown_text_neutralises_html_and_table_syntax():
    text = markdown_text('<script>x</script> | a & b `c` *d* _e_ [f](g) #h\nnext\\')
    assert "<" not in text and ">" not in text
    assert "&lt;script&gt;" in text and "&amp;" in text
    assert "\\|" in text and "\\`c\\`" in text and "\\*d\\*" in text
    assert "\\[f\\](g)" in text and "\\#h" in text
    assert "\n" not in text and text.endswith("\\\\")


def test_markdown_text_leaves_plain_text_alone():
    assert markdown_text("198.18.0.1:443 holds 850 ports") == "198.18.0.1:443 holds 850 ports"


def test_xml_text_replaces_characters_xml_cannot_carry():
    assert xml_text("a\x00b\x01c\x1fd\te\nf\ufffeg") == "a\ufffdb\ufffdc\ufffdd\te\nf\ufffdg"
    assert xml_text("<&>") == "<&>"  # markup is the template's job


def test_console_text_strips_control_characters_and_cuts():
    assert console_text("evil\x1b[31mred\x07") == "evil?[31mred?"
    assert console_text("abcdefgh", 5) == "abcd~"
    assert console_text(None) == ""


@pytest.mark.parametrize("host", [
    "../../etc/passwd", "/abs", ".hidden", "", "a/b", "<script>", "web 01", "x" * 300,
])
def test_safe_file_name_never_leaves_its_folder(host):
    name = safe_file_name(host)
    assert "/" not in name and not name.startswith(".") and name
    assert len(name) <= 111


def test_safe_file_name_keeps_plain_names_and_separates_lookalikes():
    assert safe_file_name("web-01.example.net") == "web-01.example.net"
    assert safe_file_name("a_b") == "a_b"
    assert safe_file_name("a/b") != safe_file_name("a_b")
    assert safe_file_name("a/b") != safe_file_name("a?b")
