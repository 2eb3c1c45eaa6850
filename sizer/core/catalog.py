"""Model catalog: entries from `catalogs/*.toml`, one file per family.

INTERFACE (used by the estimator, the trial engine and the front ends; keep these names stable):

    catalog = load_catalog()            # every entry; malformed TOML -> SizerError with file:line
    entry = catalog.get("Qwen/Qwen2.5-7B-Instruct")   # unknown id -> SizerError naming close matches
    catalog.entries -> list[ModelEntry]

The family files are generated: `python -m sizer.core.catalog build` turns the hand-kept
`catalogs/cards.toml` (licence, published size, GGUF repos...) and the verbatim `config.json`
copies in `catalogs/configs/` into entries; `sizer catalog refresh` rebuilds them from the Hub.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import re
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sizer.core.errors import SizerError
from sizer.core.events import Message, Sink, null_sink, stream_sink
from sizer.core.fileio import atomic_write_text
from sizer.core.paths import repo_root_catalogs

KINDS = ("causal", "encoder")
CARDS_FILE = "cards.toml"
CONFIGS_DIR = "configs"


@dataclass(frozen=True)
class GGUFRepo:
    """A Hub repo (or installed package) with GGUF files of one model: quant name -> file name."""

    repo: str
    files: dict[str, str] = field(default_factory=dict)  # e.g. {"Q4_K_M": "qwen2.5-7b-instruct-q4_k_m.gguf"}


@dataclass(frozen=True)
class ModelEntry:
    id: str                      # Hub repo id, e.g. "Qwen/Qwen2.5-7B-Instruct"
    family: str                  # file stem of the catalog TOML, e.g. "qwen2.5"
    kind: str                    # "causal" or "encoder"
    params: int                  # exact parameter count (meta-device build of config.json)
    published_params: float      # the model card's figure, for the cross-check
    model_type: str              # config.json model_type (text config for multimodal models)
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool
    max_context: int
    sliding_window: int = 0      # tokens; 0 = full attention everywhere
    sliding_layers: int = 0      # how many of `layers` use the sliding window
    torch_dtype: str = "bfloat16"  # dtype the weights are published in
    license: str = ""
    gated: bool = False
    instruct: bool = False
    formats: tuple[str, ...] = ("safetensors",)
    gguf: tuple[GGUFRepo, ...] = ()
    source: str = "hub"          # "hub", or "package:<module>" for the offline models
    revision: str | None = None
    embedding_dim: int | None = None  # encoders: sentence-embedding size
    architecture: str = ""       # config.json architectures[0], the class that loads the checkpoint
    offline_file: str = ""       # offline models: file or folder inside the package
    config_source: str = ""      # where the config.json the entry was built from came from
    published_params_note: str = ""  # where `published_params` was read

    @property
    def short_name(self) -> str:
        return self.id.split("/", 1)[-1]


# ---------------------------------------------------------------- config.json -> entry


def _config_object(config: dict[str, Any]) -> Any:
    """The transformers config for `config`, so that class defaults fill absent keys."""
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise SizerError(
            f"transformers {_transformers_version()} does not know model_type {model_type!r}; "
            "upgrade transformers or leave the model out"
        )
    return CONFIG_MAPPING[model_type].from_dict(dict(config))


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def transformers_knows(config: dict[str, Any]) -> bool:
    """Whether the installed transformers can build the model that `config` describes."""
    import transformers
    from transformers import CONFIG_MAPPING

    architecture = (config.get("architectures") or [""])[0]
    return config.get("model_type") in CONFIG_MAPPING and (
        not architecture or hasattr(transformers, architecture)
    )


def _model_class(config: dict[str, Any], kind: str) -> Any:
    import transformers

    architecture = (config.get("architectures") or [""])[0]
    if architecture and hasattr(transformers, architecture):
        return getattr(transformers, architecture)
    return transformers.AutoModelForCausalLM if kind == "causal" else transformers.AutoModel


def count_parameters(config: dict[str, Any], kind: str) -> int:
    """Exact parameter count: the model built from `config` on the meta device (no weights).

    The class is the checkpoint's own (`architectures[0]`), so multimodal models count their
    vision tower too; tied embeddings count once.
    """
    import torch

    cfg = _config_object(config)
    cls = _model_class(config, kind)
    with torch.device("meta"):
        model = cls.from_config(cfg) if cls.__name__.startswith("Auto") else cls(cfg)
    return int(model.num_parameters())


def _dtype_name(config: dict[str, Any]) -> str:
    text = config.get("text_config") or {}
    for source in (config, text):
        for key in ("dtype", "torch_dtype"):
            if isinstance(source.get(key), str):
                return source[key]
    return "float32"  # transformers' default when a config names none


def _sliding(text_cfg: Any, layers: int, max_context: int) -> tuple[int, int]:
    """(window, layers using it). `layer_types` covers Gemma 3's local/global pattern and Qwen's
    `use_sliding_window`; a null window, or one no shorter than the context, is full attention."""
    window = getattr(text_cfg, "sliding_window", None) or 0
    if getattr(text_cfg, "use_sliding_window", True) is False:
        window = 0
    if not window or window >= max_context:
        return 0, 0
    layer_types = getattr(text_cfg, "layer_types", None)
    if layer_types:
        count = sum(1 for t in layer_types if t == "sliding_attention")
        return (window, count) if count else (0, 0)
    return window, layers


def entry_from_config(repo_id: str, config: dict[str, Any], card: dict[str, Any]) -> ModelEntry:
    """Build an entry from a verbatim config.json and the model's card fields (see cards.toml).

    Absent config keys take the transformers config class's defaults (the Hub's Gemma 3 files
    list only non-default keys). A card `params` value, when present, is used instead of
    building the model again.
    """
    kind = card.get("kind", "causal")
    cfg = _config_object(config)
    text = cfg.get_text_config()
    layers = int(text.num_hidden_layers)
    heads = int(text.num_attention_heads)
    hidden = int(text.hidden_size)
    max_context = int(getattr(text, "max_position_embeddings", 0) or 0)
    window, sliding_layers = _sliding(text, layers, max_context)
    return ModelEntry(
        id=repo_id,
        family=card["family"],
        kind=kind,
        params=int(card["params"]) if "params" in card else count_parameters(config, kind),
        published_params=float(card.get("published_params", 0.0)),
        model_type=str(text.model_type or config.get("model_type", "")),
        layers=layers,
        hidden_size=hidden,
        intermediate_size=int(getattr(text, "intermediate_size", 0) or 0),
        heads=heads,
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(text, "head_dim", None) or hidden // heads),
        vocab_size=int(text.vocab_size),
        tied_embeddings=bool(_tied(cfg, text)),
        max_context=max_context,
        sliding_window=int(window),
        sliding_layers=int(sliding_layers),
        torch_dtype=_dtype_name(config),
        license=card.get("license", ""),
        gated=bool(card.get("gated", False)),
        instruct=bool(card.get("instruct", False)),
        formats=_formats(card),
        gguf=_gguf_repos(card),
        source=card.get("offline_source", "hub"),
        revision=card.get("revision"),
        embedding_dim=hidden if kind == "encoder" else None,
        architecture=(config.get("architectures") or [""])[0],
        offline_file=card.get("offline_file", ""),
        config_source=card.get("config_source", ""),
        published_params_note=card.get("published_params_note", ""),
    )


def _tied(cfg: Any, text: Any) -> bool:
    top = getattr(cfg, "tie_word_embeddings", None)
    return bool(top if top is not None else getattr(text, "tie_word_embeddings", False))


_QUANT_RE = re.compile(r"[.\-_]((?:I?Q\d\w*?)|BF16|FP?16|FP?32)(?:-\d{5}-of-\d{5})?\.gguf$", re.IGNORECASE)


def quant_of(filename: str) -> str | None:
    """The GGML type named in a GGUF file name ("...-q4_k_m.gguf" -> "Q4_K_M", "-fp16" -> "F16")."""
    match = _QUANT_RE.search(filename)
    return match.group(1).upper().replace("FP", "F") if match else None


def _gguf_repos(card: dict[str, Any]) -> tuple[GGUFRepo, ...]:
    repos = [GGUFRepo(g["repo"], dict(g.get("files", {}))) for g in card.get("gguf", [])]
    offline, source = card.get("offline_file", ""), card.get("offline_source")
    if offline.endswith(".gguf") and source and all(r.repo != source for r in repos):
        repos.insert(0, GGUFRepo(source, {quant_of(offline) or "GGUF": offline}))
    return tuple(repos)


def _formats(card: dict[str, Any]) -> tuple[str, ...]:
    return ("safetensors", "gguf") if _gguf_repos(card) else ("safetensors",)


# ---------------------------------------------------------------- TOML <-> entries


def entry_to_dict(entry: ModelEntry) -> dict[str, Any]:
    """A TOML/JSON-ready dict: tuples as lists, GGUF repos as tables, None and empty text left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(entry):
        value = getattr(entry, f.name)
        if value is None or (value in ("", ()) and f.default == value):
            continue
        if f.name == "gguf":
            value = [{"repo": g.repo, "files": dict(g.files)} for g in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(ModelEntry)


def _type_ok(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args if a is not type(None))
    if origin is tuple:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if hint is GGUFRepo:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
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
        if not _type_ok(value, hints[f.name]):
            raise SizerError(f"{label}: field {f.name!r} must be {_type_name(hints[f.name])}, got {value!r}")
        values[f.name] = _convert(f.name, value, label)
    entry = ModelEntry(**values)
    _check_values(entry, label)
    return entry


def _convert(name: str, value: Any, label: str) -> Any:
    if name == "gguf":
        repos = []
        for item in value:
            repo, files = item.get("repo"), item.get("files", {})
            if not isinstance(repo, str) or not isinstance(files, dict) or set(item) - {"repo", "files"} or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()
            ):
                raise SizerError(f"{label}: field 'gguf' entries need repo = \"...\" and files = {{QUANT = \"file\"}}")
            repos.append(GGUFRepo(repo, dict(files)))
        return tuple(repos)
    return tuple(value) if isinstance(value, list) else value


def _check_values(entry: ModelEntry, label: str) -> None:
    if entry.kind not in KINDS:
        raise SizerError(f"{label}: field 'kind' must be one of {', '.join(KINDS)}, got {entry.kind!r}")
    for name in ("params", "layers", "hidden_size", "heads", "kv_heads", "head_dim", "vocab_size", "max_context"):
        if getattr(entry, name) <= 0:
            raise SizerError(f"{label}: field {name!r} must be positive, got {getattr(entry, name)}")
    if entry.sliding_window < 0 or not 0 <= entry.sliding_layers <= entry.layers:
        raise SizerError(f"{label}: field 'sliding_layers' must be between 0 and layers ({entry.layers})")
    if entry.source != "hub" and not entry.source.startswith("package:"):
        raise SizerError(f"{label}: field 'source' must be \"hub\" or \"package:<module>\", got {entry.source!r}")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a SizerError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SizerError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SizerError(f"{path}:{_error_line(str(exc), text)}: malformed TOML: {exc}") from None


def _error_line(message: str, text: str) -> int:
    """tomllib puts "(at line N, column M)" in its message, or "(at end of document)"."""
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else max(1, len(text.splitlines()))


def read_family_file(path: Path) -> list[ModelEntry]:
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
    "(`python -m sizer.core.catalog build`)\n"
    "# or from the Hub (`sizer catalog refresh`). `params` is the exact count of the model built\n"
    "# from its config.json on the meta device.\n\n"
)


def write_family_file(path: Path, entries: Iterable[ModelEntry]) -> None:
    """Write one family's entries atomically, in a stable order (by parameter count)."""
    import tomli_w

    ordered = sorted(entries, key=lambda e: (e.kind != "causal", e.params, e.id))
    text = tomli_w.dumps({"models": [entry_to_dict(e) for e in ordered]})
    atomic_write_text(path, _HEADER + text)


# ---------------------------------------------------------------- the catalog


def catalog_dir() -> Path:
    """`SIZER_CATALOG_DIR`, else the catalogs shipped with sizer."""
    override = os.environ.get("SIZER_CATALOG_DIR")
    return Path(override) if override else repo_root_catalogs()


def family_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.toml") if p.name != CARDS_FILE)


@dataclass(frozen=True)
class Catalog:
    entries: list[ModelEntry]

    @property
    def families(self) -> list[str]:
        return sorted({e.family for e in self.entries})

    def family(self, name: str) -> list[ModelEntry]:
        """Entries of one family; an unknown family is a SizerError naming the known ones."""
        found = [e for e in self.entries if e.family.lower() == name.lower()]
        if not found:
            raise SizerError(f"unknown model family {name!r}; known families: {', '.join(self.families)}")
        return found

    def find(self, query: str) -> ModelEntry | None:
        """The entry with this repo id or unique short name (case-insensitive), else None."""
        q = query.strip().lower()
        for entry in self.entries:
            if entry.id.lower() == q:
                return entry
        matches = [e for e in self.entries if e.short_name.lower() == q]
        return matches[0] if len(matches) == 1 else None

    def get(self, query: str) -> ModelEntry:
        """Look up by repo id or unique short name; unknown -> SizerError with the closest ids."""
        entry = self.find(query)
        if entry is not None:
            return entry
        q = query.strip().lower()
        names = {e.id.lower(): e.id for e in self.entries}
        names.update({e.short_name.lower(): e.id for e in self.entries})
        containing = [e.id for e in self.entries if q in e.id.lower()]  # "qwen2.5-7b" -> the -Instruct
        close = difflib.get_close_matches(q, names, n=5, cutoff=0.5)
        ids = list(dict.fromkeys(containing + [names[c] for c in close]))[:5]
        hint = f"closest: {', '.join(ids)}" if ids else "see `sizer catalog list`"
        raise SizerError(f"unknown model {query!r}; {hint}")

    def is_cached(self, entry: ModelEntry, cache_dir: str | os.PathLike[str] | None = None) -> bool:
        """Whether the model's weights are on this machine: in its offline package or the HF cache."""
        if entry.source.startswith("package:"):
            return _package_has(entry.source.removeprefix("package:"), entry.offline_file)
        return _hf_cached(entry, cache_dir)


def _package_has(module: str, relative: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)  # finds the package without importing it
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(loc) / relative).exists() for loc in spec.submodule_search_locations)


def _hf_cached(entry: ModelEntry, cache_dir: str | os.PathLike[str] | None) -> bool:
    """Safetensors weights (every shard of an index) or any listed GGUF file in the HF cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(repo: str, filename: str, revision: str | None = entry.revision) -> str | None:
        hit = try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision)
        return hit if isinstance(hit, str) else None

    index = cached(entry.id, "model.safetensors.index.json")
    if index:
        try:
            shards = set(json.loads(Path(index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError):
            shards = set()
        if shards and all(cached(entry.id, s) for s in shards):
            return True
    if cached(entry.id, "model.safetensors"):
        return True
    # `revision` is the base repo's commit; a GGUF repo has its own history, so look at its main branch.
    return any(cached(g.repo, f, None) for g in entry.gguf if not g.repo.startswith("package:") for f in g.files.values())


def load_catalog(paths: Iterable[str | os.PathLike[str]] | None = None) -> Catalog:
    """Read and validate family files (default: every `*.toml` in `catalog_dir()` but cards.toml)."""
    if paths is None:
        directory = catalog_dir()
        if not directory.is_dir():
            raise SizerError(f"catalog folder {directory} does not exist; set SIZER_CATALOG_DIR to a folder of family TOML files")
        files = family_files(directory)
    else:
        files = [Path(p) for p in paths]
    seen: dict[str, Path] = {}
    entries: list[ModelEntry] = []
    for path in files:
        for entry in read_family_file(path):
            if entry.id in seen:
                raise SizerError(f"{path}: model {entry.id!r} is also in {seen[entry.id]}; keep one")
            seen[entry.id] = path
            entries.append(entry)
    return Catalog(entries)


# ---------------------------------------------------------------- building from cards + configs


CARD_REQUIRED = {"family": str, "kind": str, "instruct": bool, "license": str, "gated": bool}


def config_path(directory: Path, repo_id: str) -> Path:
    """Where the verbatim config.json copy of `repo_id` lives: configs/<org>__<name>.json."""
    return directory / CONFIGS_DIR / (repo_id.replace("/", "__") + ".json")


def read_cards(path: Path) -> dict[str, dict[str, Any]]:
    cards = read_toml(path)
    for repo_id, card in cards.items():
        if not isinstance(card, dict):
            raise SizerError(f"{path}: [{repo_id!r}] must be a table of card fields")
        for name, typ in CARD_REQUIRED.items():
            if not isinstance(card.get(name), typ):
                raise SizerError(f"{path}: [{repo_id!r}]: field {name!r} must be {_type_name(typ)}")
        if not _type_ok(card.get("published_params"), float):
            raise SizerError(f"{path}: [{repo_id!r}]: field 'published_params' must be a number (the model card's figure)")
        if card["kind"] not in KINDS:
            raise SizerError(f"{path}: [{repo_id!r}]: kind must be one of {', '.join(KINDS)}")
    return cards


def read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SizerError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None


def build(directory: Path | None = None, sink: Sink = null_sink) -> dict[str, list[ModelEntry]]:
    """Rebuild every family file from cards.toml + configs/; returns the entries per family.

    Cards whose config copy is missing are skipped with a warning event.
    """
    directory = directory or catalog_dir()
    cards = read_cards(directory / CARDS_FILE)
    families: dict[str, list[ModelEntry]] = {}
    for repo_id, card in cards.items():
        path = config_path(directory, repo_id)
        if not path.exists():
            sink(Message(f"skipped {repo_id}: no {path.relative_to(directory)}", "warning"))
            continue
        families.setdefault(card["family"], []).append(entry_from_config(repo_id, read_config(path), card))
    for family, entries in families.items():
        write_family_file(directory / f"{family}.toml", entries)
        sink(Message(f"wrote {directory / f'{family}.toml'}: {len(entries)} models"))
    for path in family_files(directory):
        read_family_file(path)  # everything written must load back
    return families


def _main(argv: list[str]) -> int:
    if argv != ["build"]:
        print("usage: python -m sizer.core.catalog build", file=sys.stderr)
        return 2
    import transformers

    transformers.logging.set_verbosity_error()
    try:
        build(sink=stream_sink())
    except SizerError as exc:
        print(f"sizer: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
