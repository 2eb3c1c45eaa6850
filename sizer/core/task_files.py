"""Reading the files a task names: the TOML spec itself and CSV/TSV/JSONL example files.

Every error is a one-line `SizerError` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sizer.core.errors import SizerError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATA_SUFFIXES = (".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class Row:
    """One record of an example file: where it starts and its values by column (or JSON key)."""

    line: int
    values: dict[str, Any]


def read_utf8(path: Path, shown: str) -> str:
    """The file's text; a missing file or bytes that are not UTF-8 give a one-line error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SizerError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise SizerError(f"{shown}: is a folder, expected a file") from None
    except OSError as exc:
        raise SizerError(f"{shown}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SizerError(
            f"{shown}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save the file as UTF-8"
        ) from None


def load_toml(path: Path, shown: str) -> tuple[dict[str, Any], str]:
    """The parsed TOML document and its text (kept to find the line of a field)."""
    text = read_utf8(path, shown)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if found:
            message = message[: found.start()].strip()
            raise SizerError(f"{shown}:{found.group(1)}: invalid TOML: {message}; fix the TOML syntax on that line") from None
        raise SizerError(f"{shown}: invalid TOML: {message}; fix the TOML syntax") from None


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")


def field_line(text: str, *keys: str) -> int | None:
    """Best-effort line of a field in TOML text: `("kind",)` or `("target", "within")`.

    tomllib keeps no positions, so this scans for the key (or its table header). None if unsure.
    """
    table, current = ".".join(keys[:-1]), ""
    key = keys[-1]
    dotted = re.compile(rf"^\s*{re.escape('.'.join(keys))}\s*=")
    plain = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = header.group(1)
            if current == ".".join(keys):
                return number
            continue
        if current == "" and dotted.match(line):
            return number
        if current == table and plain.match(line):
            return number
    return None


def table_lines(text: str, name: str) -> list[int]:
    """Lines of every `[[name]]` header, in order (inline `[[examples]]` rows)."""
    pattern = re.compile(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]")
    return [n for n, line in enumerate(text.splitlines(), start=1) if pattern.match(line)]


def read_rows(path: Path, shown: str, columns: dict[str, str]) -> list[Row]:
    """Rows of a CSV, TSV or JSONL file; `columns` maps a role (text, label...) to a column name."""
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise SizerError(
            f"{shown}: unsupported example file type {suffix or '(none)'!r}; use .csv, .tsv or .jsonl"
        )
    text = read_utf8(path, shown)
    if suffix == ".jsonl":
        return _jsonl_rows(text, shown, columns)
    return _csv_rows(text, shown, columns, "\t" if suffix == ".tsv" else ",")


def _csv_rows(text: str, shown: str, columns: dict[str, str], delimiter: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[Row] = []
    header: list[str] | None = None
    try:
        start = 1
        for record in reader:
            if not any(cell.strip() for cell in record):
                start = reader.line_num + 1
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                _check_columns(header, shown, columns, start)
            else:
                rows.append(Row(start, _mapped(header, record, shown, start, columns)))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise SizerError(f"{shown}:{reader.line_num}: malformed CSV: {exc}") from None
    if header is None:
        raise SizerError(f"{shown}: empty file; expected a header row naming the columns")
    return rows


def _check_columns(header: list[str], shown: str, columns: dict[str, str], line: int) -> None:
    for role, column in columns.items():
        if column not in header:
            raise SizerError(
                f"{shown}:{line}: no column {column!r} (examples.{role} = {column!r}); "
                f"the header has {', '.join(repr(c) for c in header)}"
            )


def _mapped(header: list[str], record: list[str], shown: str, line: int, columns: dict[str, str]) -> dict[str, Any]:
    if len(record) != len(header):
        raise SizerError(f"{shown}:{line}: {len(record)} fields, the header has {len(header)}")
    cells = dict(zip(header, record))
    return {role: cells[column] for role, column in columns.items()}


def _jsonl_rows(text: str, shown: str, columns: dict[str, str]) -> list[Row]:
    rows: list[Row] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SizerError(f"{shown}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise SizerError(f"{shown}:{number}: expected a JSON object per line, got {type(record).__name__}")
        seen.update(record)
        rows.append(Row(number, {role: record.get(key) for role, key in columns.items()}))
    for role, key in columns.items():
        if rows and key not in seen:
            raise SizerError(
                f"{shown}: no line has the key {key!r} (examples.{role} = {key!r}); "
                f"keys seen: {', '.join(repr(k) for k in sorted(seen))}"
            )
    return rows
