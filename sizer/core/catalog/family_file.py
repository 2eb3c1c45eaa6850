"""Family files (`catalogs/<family>.toml`, one `[[models]]` table per entry) <-> `ModelEntry`.

Reading validates every field against `ModelEntry`'s type hints, so a hand edit that breaks a
file is a one-line SizerError naming the file, the model and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Iterable

from sizer.core.catalog.entry import KINDS, MOE_FIELDS, GGUFRepo, ModelEntry
from sizer.core.errors import SizerError
from sizer.core.fileio import atomic_write_text

CONFIGS_DIR = "configs"


def entry_to_dict(entry: ModelEntry) -> dict[str, Any]:
    """A TOML/JSON-ready dict: tuples as lists, GGUF repos as tables, None and empty text left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(entry):
        value = getattr(entry, f.name)
        if value is None or (value in ("", ()) and f.default == value) or (f.name in MOE_FIELDS and not value):
            continue
        if f.name.startswith("quant_") and not value:
            continue  # not a pre-quantized checkpoint
        if f.name == "gguf":
            value = [_gguf_table(g) for g in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _gguf_table(g: GGUFRepo) -> dict[str, Any]:
    table: dict[str, Any] = {"repo": g.repo, "files": dict(g.files)}
    if g.sizes_gb:
        table["sizes_gb"] = dict(g.sizes_gb)
    return table


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(ModelEntry)


def type_ok(value: Any, hint: Any) -> bool:
    """Whether a value read from TOML fits the `ModelEntry` type hint `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in args if a is not type(None))
    if origin is tuple:
        return isinstance(value, list) and all(type_ok(v, args[0]) for v in value)
    if hint is GGUFRepo:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def type_name(hint: Any) -> str:
    """`hint` in words for an error message ("an integer", "a string"...)."""
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, str(hint).replace("typing.", "")
    )


def entry_from_dict(data: dict[str, Any], where: str) -> ModelEntry:
    """Validate one `[[models]]` table; `where` names the file for error messages."""
    entry_id = data.get("id")
    label = f"{where}: model {entry_id!r}" if isinstance(entry_id, str) else f"{where}: a [[models]] table"
    hints = _hints()
    for key in data:
        if key not in hints:
            close = difflib.get_close_matches(key, hints, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SizerError(f"{label}: unknown field {key!r}{hint}; remove it or fix its name")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ModelEntry):
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise SizerError(f"{label}: missing field {f.name!r}; add it or run `sizer catalog refresh`")
            continue
        value = data[f.name]
        if not type_ok(value, hints[f.name]):
            raise SizerError(f"{label}: field {f.name!r} must be {type_name(hints[f.name])}, got {value!r}")
        values[f.name] = _convert(f.name, value, label)
    entry = ModelEntry(**values)
    _check_values(entry, label)
    return entry


def _convert(name: str, value: Any, label: str) -> Any:
    if name == "gguf":
        return tuple(_gguf_repo(item, label) for item in value)
    return tuple(value) if isinstance(value, list) else value


def _gguf_repo(item: dict[str, Any], label: str) -> GGUFRepo:
    """One `gguf` table: repo, files {QUANT = "file"} and optional sizes_gb {QUANT = GB}."""
    repo, files, sizes = item.get("repo"), item.get("files", {}), item.get("sizes_gb", {})
    if not isinstance(repo, str) or not isinstance(files, dict) or set(item) - {"repo", "files", "sizes_gb"} or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise SizerError(f"{label}: field 'gguf' entries need repo = \"...\" and files = {{QUANT = \"file\"}}")
    if not isinstance(sizes, dict) or not all(k in files and type_ok(v, float) and v > 0 for k, v in sizes.items()):
        raise SizerError(
            f"{label}: field 'gguf' sizes_gb must give a size in GB for quants named in files, e.g. {{Q4_K_M = 4.68}}"
        )
    return GGUFRepo(repo, dict(files), {k: float(v) for k, v in sizes.items()})


def _check_values(entry: ModelEntry, label: str) -> None:
    if entry.kind not in KINDS:
        raise SizerError(f"{label}: field 'kind' must be one of {', '.join(KINDS)}, got {entry.kind!r}")
    for name in ("params", "layers", "hidden_size", "heads", "kv_heads", "head_dim", "vocab_size", "max_context"):
        if getattr(entry, name) <= 0:
            raise SizerError(f"{label}: field {name!r} must be positive, got {getattr(entry, name)}")
    if entry.sliding_window < 0 or not 0 <= entry.sliding_layers <= entry.layers:
        raise SizerError(f"{label}: field 'sliding_layers' must be between 0 and layers ({entry.layers})")
    _check_experts(entry, label)
    if entry.source not in ("hub", "local") and not entry.source.startswith("package:"):
        raise SizerError(f"{label}: field 'source' must be \"hub\", \"local\" or \"package:<module>\", "
                         f"got {entry.source!r}")


def _check_experts(entry: ModelEntry, label: str) -> None:
    counts = {n: getattr(entry, n) for n in MOE_FIELDS}
    negative = [n for n, v in counts.items() if v < 0]
    if negative:
        raise SizerError(f"{label}: field {negative[0]!r} must be 0 or more, got {counts[negative[0]]}")
    if not entry.experts and not entry.moe_layers:
        return
    if not (entry.experts and entry.moe_layers and entry.expert_intermediate_size):
        raise SizerError(f"{label}: a mixture-of-experts entry needs experts, expert_intermediate_size and moe_layers")
    if not 1 <= entry.experts_per_token <= entry.experts:
        raise SizerError(f"{label}: field 'experts_per_token' must be between 1 and experts ({entry.experts})")
    if entry.moe_layers > entry.layers:
        raise SizerError(f"{label}: field 'moe_layers' must be at most layers ({entry.layers})")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a SizerError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SizerError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SizerError(f"{path}:{_error_line(str(exc), text)}: malformed TOML: {exc}; fix the TOML syntax there") from None


def _error_line(message: str, text: str) -> int:
    """tomllib puts "(at line N, column M)" in its message, or "(at end of document)"."""
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else max(1, len(text.splitlines()))


def read_family_file(path: Path) -> list[ModelEntry]:
    """The validated entries of one family file; each must name the file's family."""
    data = read_toml(path)
    models = data.get("models", [])
    if set(data) - {"models"} or not isinstance(models, list):
        raise SizerError(f"{path}: expected only [[models]] tables, one per model (compare a shipped family file)")
    entries = [entry_from_dict(m, str(path)) for m in models]
    for entry in entries:
        if entry.family != path.stem:
            raise SizerError(
                f"{path}: model {entry.id!r}: field 'family' is {entry.family!r} but the file is {path.name}; "
                f"move the entry to {entry.family}.toml or fix the field"
            )
    return entries


_HEADER = (
    "# Generated by sizer from catalogs/cards.toml and catalogs/configs/ "
    "(`python -m sizer.core.catalog.build`)\n"
    "# or from the Hub (`sizer catalog refresh`). `params` is the exact count of the model built\n"
    "# from its config.json on the meta device.\n\n"
)


def write_family_file(path: Path, entries: Iterable[ModelEntry]) -> None:
    """Write one family's entries atomically, in a stable order (by parameter count)."""
    import tomli_w

    ordered = sorted(entries, key=lambda e: (e.kind != "causal", e.params, e.id))
    text = tomli_w.dumps({"models": [entry_to_dict(e) for e in ordered]})
    atomic_write_text(path, _HEADER + text)


def config_path(directory: Path, repo_id: str) -> Path:
    """Where the verbatim config.json copy of `repo_id` lives: configs/<org>__<name>.json."""
    return directory / CONFIGS_DIR / (repo_id.replace("/", "__") + ".json")
