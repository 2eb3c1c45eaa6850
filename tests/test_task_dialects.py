"""Example files as tools write them: each dialect is a small file written by the writer that makes
it in the wild (the csv module's Excel dialects, json.dumps, pandas where installed), loaded by
`load_task` and compared row by row, line numbers included."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from sizer.core.errors import SizerError
from sizer.core.task.spec import load_task

ROWS = [
    ("I was charged twice this month, why?", "billing"),   # a comma: quoted in CSV
    ("The app crashes; every time", "technical"),          # a semicolon: quoted in ;-CSV
    ('She said "refund me"', "billing"),                   # quotes: doubled
    ("Ünïcödé — naïve café ✓", "technical"),
]
LABELS = sorted({label for _, label in ROWS})


def task_for(folder: Path, data: str, **mapping: str) -> Path:
    lines = [f'name = "t"', 'kind = "classify"', f"labels = {json.dumps(LABELS)}", "[examples]",
             f'file = "{data}"'] + [f'{k} = "{v}"' for k, v in mapping.items()]
    path = folder / "task.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def loaded(path: Path) -> list[tuple[str, str, int]]:
    """(text, label, line) of each example, the line taken from its source "file:line"."""
    return [(e.text, e.label, int(e.source.rsplit(":", 1)[1])) for e in load_task(path).examples]


def write_csv(path: Path, rows: list[tuple[str, str]], encoding: str = "utf-8", **fmt) -> None:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, **fmt)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


# ---- CSV / TSV from the csv module's Excel dialects -----------------------------------------------


def test_excel_csv_utf8_with_bom_and_crlf(tmp_path):
    # Excel's "CSV UTF-8": a byte-order mark, CRLF line ends (the excel dialect's lineterminator)
    write_csv(tmp_path / "d.csv", ROWS, encoding="utf-8-sig", dialect="excel")
    raw = (tmp_path / "d.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    assert loaded(task_for(tmp_path, "d.csv")) == [(t, l, n) for n, (t, l) in enumerate(ROWS, start=2)]


def test_semicolon_delimited_csv_is_sniffed(tmp_path):
    # Excel in locales with a decimal comma writes ";" between cells
    write_csv(tmp_path / "d.csv", ROWS, dialect="excel", delimiter=";")
    assert (tmp_path / "d.csv").read_text(encoding="utf-8").splitlines()[0] == "text;label"
    assert [r[:2] for r in loaded(task_for(tmp_path, "d.csv"))] == ROWS


def test_excel_sep_hint_line_sets_the_delimiter(tmp_path):
    # Excel reads (and some exporters write) a first line "sep=;"
    write_csv(tmp_path / "body.csv", ROWS, dialect="excel", delimiter=";")
    (tmp_path / "d.csv").write_text("sep=;\r\n" + (tmp_path / "body.csv").read_text(encoding="utf-8"),
                                    encoding="utf-8", newline="")
    # lines: 1 sep=;, 2 header, rows from 3
    assert loaded(task_for(tmp_path, "d.csv")) == [(t, l, n) for n, (t, l) in enumerate(ROWS, start=3)]


def test_quoted_newlines_keep_the_text_and_the_line_numbers(tmp_path):
    rows = [("first line\nsecond line", "billing"), ("one\r\nwindows break", "technical"), ("plain", "billing")]
    write_csv(tmp_path / "d.csv", rows, dialect="excel")
    # header on line 1; row 1 spans lines 2-3, row 2 spans 4-5, row 3 is line 6
    got = loaded(task_for(tmp_path, "d.csv"))
    assert [(t, n) for t, _, n in got] == [("first line\nsecond line", 2), ("one\r\nwindows break", 4), ("plain", 6)]


def test_utf16_with_bom_tab_separated_as_excel_unicode_text(tmp_path):
    # Excel's "Unicode Text": UTF-16 little-endian with a byte-order mark, tab-separated
    write_csv(tmp_path / "d.tsv", ROWS, encoding="utf-16", dialect="excel-tab")
    assert (tmp_path / "d.tsv").read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    assert [r[:2] for r in loaded(task_for(tmp_path, "d.tsv"))] == ROWS


def test_utf16_big_endian_csv_with_bom(tmp_path):
    path = tmp_path / "d.csv"
    write_csv(tmp_path / "plain.csv", ROWS, dialect="excel")
    path.write_bytes(b"\xfe\xff" + (tmp_path / "plain.csv").read_text(encoding="utf-8").encode("utf-16-be"))
    assert [r[:2] for r in loaded(task_for(tmp_path, "d.csv"))] == ROWS


def test_tab_separated_utf16_saved_as_csv_is_sniffed(tmp_path):
    write_csv(tmp_path / "d.csv", ROWS, encoding="utf-16", dialect="excel-tab")
    assert [r[:2] for r in loaded(task_for(tmp_path, "d.csv"))] == ROWS


def test_trailing_blank_lines_and_empty_rows_are_ignored(tmp_path):
    write_csv(tmp_path / "d.csv", ROWS, dialect="excel")
    with (tmp_path / "d.csv").open("a", encoding="utf-8", newline="") as handle:
        handle.write("\r\n,\r\n\r\n   \r\n")  # what a spreadsheet leaves after the last row
    task = load_task(task_for(tmp_path, "d.csv"))
    assert [(e.text, e.label) for e in task.examples] == ROWS
    assert not task.warnings  # a row of empty cells is no example at all, so nothing to warn about


def test_old_mac_cr_line_ends(tmp_path):
    write_csv(tmp_path / "d.csv", ROWS, dialect="excel", lineterminator="\r")
    assert [r[:2] for r in loaded(task_for(tmp_path, "d.csv"))] == ROWS


def test_tsv_with_mapped_columns_and_an_unmapped_one(tmp_path):
    with (tmp_path / "d.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, dialect="excel-tab")
        writer.writerow(["id", "message", "intent"])
        writer.writerows((i, t, l) for i, (t, l) in enumerate(ROWS))
    got = loaded(task_for(tmp_path, "d.tsv", text="message", label="intent"))
    assert [r[:2] for r in got] == ROWS


# ---- JSON Lines -------------------------------------------------------------------------------------


def write_jsonl(path: Path, records: list[dict], newline: str = "\n") -> None:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + newline for r in records).encode("utf-8"))


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_jsonl_with_a_raw_unicode_line_separator_inside_a_string(tmp_path, separator):
    records = [{"text": f"line one{separator}line two", "label": "billing"}, {"text": "plain", "label": "technical"}]
    write_jsonl(tmp_path / "d.jsonl", records)
    assert separator in (tmp_path / "d.jsonl").read_text(encoding="utf-8")  # written raw, not escaped
    assert loaded(task_for(tmp_path, "d.jsonl")) == [(f"line one{separator}line two", "billing", 1),
                                                      ("plain", "technical", 2)]


def test_jsonl_with_crlf_a_bom_and_trailing_blank_lines(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"text": t, "label": l} for t, l in ROWS], newline="\r\n")
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes() + b"\r\n\r\n")
    assert loaded(task_for(tmp_path, "d.jsonl")) == [(t, l, n) for n, (t, l) in enumerate(ROWS, start=1)]


# ---- pandas, where installed ------------------------------------------------------------------------

pandas_missing = importlib.util.find_spec("pandas") is None


@pytest.mark.skipif(pandas_missing, reason="pandas is not installed")
@pytest.mark.parametrize("suffix, options", [
    (".csv", {}),                                             # index column, "\n" line ends
    (".csv", {"sep": ";", "encoding": "utf-8-sig", "index": False}),
    (".csv", {"encoding": "utf-16", "index": False}),
    (".tsv", {"sep": "\t", "index": False, "lineterminator": "\r\n"}),
])
def test_pandas_to_csv(tmp_path, suffix, options):
    import pandas

    frame = pandas.DataFrame({"text": [t for t, _ in ROWS], "label": [l for _, l in ROWS]})
    frame.to_csv(tmp_path / f"d{suffix}", **options)
    assert [r[:2] for r in loaded(task_for(tmp_path, f"d{suffix}"))] == ROWS


@pytest.mark.skipif(pandas_missing, reason="pandas is not installed")
def test_pandas_to_json_lines(tmp_path):
    import pandas

    frame = pandas.DataFrame({"text": ["a\u2028b", "plain"], "label": ["billing", "technical"]})
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True, force_ascii=False)
    assert [r[:2] for r in loaded(task_for(tmp_path, "d.jsonl"))] == [("a\u2028b", "billing"), ("plain", "technical")]


# ---- what cannot be read: file:line and what was expected -------------------------------------------


def error_of(path: Path) -> str:
    with pytest.raises(SizerError) as info:
        load_task(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_row_with_too_many_cells_names_its_line_and_the_header(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\nfine,billing\nnot, quoted,technical\n", encoding="utf-8")
    message = error_of(task_for(tmp_path, "d.csv"))
    assert message.startswith(f"{tmp_path / 'd.csv'}:3: 3 cells, expected 2 as in the header (text, label)")
    assert "quote a cell" in message


def test_a_stray_quote_names_its_line(tmp_path):
    (tmp_path / "d.csv").write_text('text,label\nfine,billing\n"bad"x,technical\n', encoding="utf-8")
    message = error_of(task_for(tmp_path, "d.csv"))
    assert message.startswith(f"{tmp_path / 'd.csv'}:3: malformed CSV") and "separated by commas" in message


def test_utf16_without_a_bom_is_named(tmp_path):
    (tmp_path / "d.csv").write_bytes("text,label\nhi,billing\nho,technical\n".encode("utf-16-le"))
    message = error_of(task_for(tmp_path, "d.csv"))
    assert message.startswith(f"{tmp_path / 'd.csv'}:1: looks like UTF-16 without a byte-order mark")


def test_latin1_csv_names_line_and_byte(tmp_path):
    (tmp_path / "d.csv").write_bytes("text,label\nfine,billing\ncaf\u00e9,technical\n".encode("latin-1"))
    message = error_of(task_for(tmp_path, "d.csv"))
    assert message.startswith(f"{tmp_path / 'd.csv'}:3: not valid UTF-8 (byte 0xe9") and "CSV UTF-8" in message


def test_jsonl_error_names_the_line_and_what_was_expected(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "billing"}\n{"text": "b", "label": \n',
                                      encoding="utf-8")
    message = error_of(task_for(tmp_path, "d.jsonl"))
    assert message.startswith(f"{tmp_path / 'd.jsonl'}:2: invalid JSON") and "one JSON object per line" in message
