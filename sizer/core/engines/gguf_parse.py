"""Loading a GGUF through transformers without parsing it five times over."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator

_GGUF_PATCH = threading.Lock()


@contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Within the block, gguf-py parses each GGUF file once and builds each tensor-name map once.

    transformers parses a GGUF's metadata again for the tokenizer, for the config and for each
    state-dict pass, and builds gguf-py's tensor-name map again for every submodule of the model
    (it imports both from `gguf` at each call). gguf-py reads every vocabulary string as its own
    numpy view: 5.8 s per parse of the SmolLM2-135M file (49,152 tokens, 48,900 merges), and the
    name maps cost another ~8 s per load there. Everything is dropped when the block ends, so the
    parsed metadata (~160 MiB there) is not held after the load."""
    import gguf

    with _GGUF_PATCH:
        originals = gguf.GGUFReader, gguf.get_tensor_name_map
        readers: dict[tuple[str, str], Any] = {}
        name_maps: dict[tuple[Any, int], Any] = {}

        def reader(path: Any, mode: str = "r") -> Any:
            key = (os.fspath(path), mode)
            if key not in readers:
                readers[key] = originals[0](path, mode)
            return readers[key]

        def name_map(arch: Any, n_blocks: int) -> Any:
            if (arch, n_blocks) not in name_maps:
                name_maps[arch, n_blocks] = originals[1](arch, n_blocks)
            return name_maps[arch, n_blocks]

        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = originals
            readers.clear()
            name_maps.clear()
