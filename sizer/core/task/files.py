"""Reading the files a task names: the TOML spec itself and CSV/TSV/JSONL example files.

Example files are read as the tools that write them do: spreadsheets and pandas write CSV with a
UTF-8 byte-order mark, CRLF line ends, `;` as the delimiter (locales with a decimal comma), quoted
newlines inside cells, trailing blank lines, or as UTF-16 with a byte-order mark ("Unicode text");
JSON Lines separates records by "\n" alone (RFC 8259 lets a string hold a raw U+2028, and
`json.dumps(..., ensure_ascii=False)` writes one). Every error is a one-line `SizerError` naming
the file and, where there is one, the line, and what was expected there.
"""

from __future__ import annotations

import codecs
import difflib
import csv
import io
import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

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
    return _decode_utf8(_read_bytes(path, shown), shown)


def _read_bytes(path: Path, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SizerError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise SizerError(f"{shown}: is a folder, expected a file") from None
    except OSError as exc:
        raise SizerError(f"{shown}: cannot read ({exc.strerror})") from None


def _decode_utf8(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SizerError(
            f"{shown}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save the file as UTF-8 (Excel: CSV UTF-8)"
        ) from None


_BOMS = (  # longest first: the UTF-32-LE mark starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_data_text(path: Path, shown: str) -> str:
    """An example file's text: UTF-8, or UTF-8/16/32 after a byte-order mark (the mark dropped)."""
    data = _read_bytes(path, shown)
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None:
        if len(data) >= 4 and (data[1::2][:2] == b"\0\0" or data[0::2][:2] == b"\0\0"):
            raise SizerError(f"{shown}:1: looks like UTF-16 without a byte-order mark; "
                             "re-save it as UTF-8 (Excel: CSV UTF-8) or as UTF-16 with a byte-order mark")
        return _decode_utf8(data, shown)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SizerError(f"{shown}: not valid {encoding.upper().replace('-SIG', '')} after its byte-order mark "
                         f"(offset {exc.start}); re-save the file as UTF-8") from None


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
    for number, line in enumerate(text.split("\n"), start=1):  # TOML lines end at LF (or CRLF) only
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
    return [n for n, line in enumerate(text.split("\n"), start=1) if pattern.match(line)]


def read_rows(path: Path, shown: str, columns: dict[str, str], optional: tuple[str, ...] = ()) -> list[Row]:
    """Rows of a CSV, TSV or JSONL file; `columns` maps a role (text, label...) to a column name.

    Roles in `optional` may be missing from the file: their values are then absent from `Row.values`.
    """
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise SizerError(
            f"{shown}: unsupported example file type {suffix or '(none)'!r}; use .csv, .tsv or .jsonl"
        )
    text = read_data_text(path, shown)
    if suffix == ".jsonl":
        return _jsonl_rows(text, shown, columns, optional)
    return _csv_rows(text, shown, columns, optional, "\t" if suffix == ".tsv" else None)


DELIMITERS = (",", ";", "\t", "|")  # what spreadsheets and pandas write, the usual first
_SNIFF_RECORDS = 20


def sniff_delimiter(text: str, wanted: list[str]) -> str:
    """The delimiter of a CSV text: the first of DELIMITERS whose header row holds every `wanted`
    column (else has two or more cells) and whose next records have as many cells as the header."""
    def fits(delimiter: str, need_columns: bool) -> bool:
        try:
            records = [r for r in itertools.islice(_reader(text, delimiter), _SNIFF_RECORDS) if _filled(r)]
        except csv.Error:
            return False
        if not records or len(records[0]) < 2:
            return False
        header = [cell.strip() for cell in records[0]]
        if need_columns and not all(column in header for column in wanted):
            return False
        return all(len(r) == len(header) for r in records[1:])

    for need_columns in (True, False):
        for delimiter in DELIMITERS:
            if fits(delimiter, need_columns):
                return delimiter
    return ","


def _reader(text: str, delimiter: str) -> Any:
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)


def _filled(record: list[str]) -> bool:
    return any(cell.strip() for cell in record)


_SEP_HINT = re.compile(r"^sep=(.)\r?\n")  # Excel's first-line delimiter hint, e.g. "sep=;"


def _csv_rows(text: str, shown: str, columns: dict[str, str], optional: tuple[str, ...],
              delimiter: str | None) -> list[Row]:
    hint = _SEP_HINT.match(text)
    skipped = 0
    if hint:
        delimiter, text, skipped = hint.group(1), text[hint.end():], 1
    if delimiter is None:
        delimiter = sniff_delimiter(text, [c for role, c in columns.items() if role not in optional])
    reader = _reader(text, delimiter)
    rows: list[Row] = []
    header: list[str] | None = None
    roles: dict[str, str] = {}
    start = 1
    try:
        for record in reader:
            if not _filled(record):
                start = reader.line_num + 1
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                roles = _check_columns(header, f"{shown}:{start + skipped}", columns, optional)
            else:
                rows.append(Row(start + skipped, _mapped(header, record, f"{shown}:{start + skipped}", roles,
                                                         delimiter)))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise SizerError(f"{shown}:{reader.line_num + skipped}: malformed CSV ({exc}); expected cells "
                         f"separated by {_name(delimiter)}, quoted with \" where they hold one") from None
    if header is None:
        raise SizerError(f"{shown}: empty file; expected a header row naming the columns")
    return rows


def _name(delimiter: str) -> str:
    return {"\t": "tabs", ",": "commas", ";": "semicolons", "|": "bars"}.get(delimiter, repr(delimiter))


def _check_columns(header: list[str], where: str, columns: dict[str, str],
                   optional: tuple[str, ...]) -> dict[str, str]:
    for role, column in columns.items():
        if column not in header and role not in optional:
            raise SizerError(
                f"{where}: no column {column!r} (examples.{role} = {column!r}); "
                f"the header has {', '.join(repr(c) for c in header)}"
            )
    return {role: column for role, column in columns.items() if column in header}


def _mapped(header: list[str], record: list[str], where: str, roles: dict[str, str],
            delimiter: str) -> dict[str, Any]:
    if len(record) != len(header):
        raise SizerError(f"{where}: {len(record)} cells, expected {len(header)} as in the header "
                         f"({', '.join(header)}); quote a cell that holds {_name(delimiter)} or a line break")
    cells = dict(zip(header, record))
    return {role: cells[column] for role, column in roles.items()}


def _jsonl_rows(text: str, shown: str, columns: dict[str, str], optional: tuple[str, ...]) -> list[Row]:
    rows: list[Row] = []
    seen: set[str] = set()
    for number, line in enumerate(text.split("\n"), start=1):  # JSON Lines: records end at "\n" only
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SizerError(f"{shown}:{number}: invalid JSON ({exc.msg}, column {exc.colno}); "
                             "expected one JSON object per line") from None
        if not isinstance(record, dict):
            raise SizerError(f"{shown}:{number}: expected a JSON object per line, got {type(record).__name__}")
        seen.update(record)
        rows.append(Row(number, {role: record.get(key) for role, key in columns.items() if key in record
                                 or role not in optional}))
    for role, key in columns.items():
        if rows and key not in seen and role not in optional:
            raise SizerError(
                f"{shown}: no line has the key {key!r} (examples.{role} = {key!r}); "
                f"keys seen: {', '.join(repr(k) for k in sorted(seen))}"
            )
    return rows


class SpecFile:
    """The parsed TOML with helpers that point errors at file:line and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shown = str(path)
        self.doc, self.text = load_toml(path, self.shown)
        self.warnings: list[str] = []

    def where(self, *keys: str) -> str:
        line = field_line(self.text, *keys) if keys else None
        return f"{self.shown}:{line}" if line else self.shown

    def fail(self, message: str, *keys: str) -> SizerError:
        name = ".".join(keys)
        return SizerError(f"{self.where(*keys)}: {name}: {message}" if name else f"{self.where()}: {message}")

    def check_keys(self, table: dict[str, Any], allowed: Sequence[str], *keys: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(f"unknown field{close_match(key, allowed)}; expected one of {', '.join(allowed)}",
                                *keys, key)


def close_match(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
