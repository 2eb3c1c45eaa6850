"""gguf_parsed_once: one parse per file inside the block, gguf-py untouched outside it."""

from __future__ import annotations

import gguf
import numpy as np

from sizer.core.engines.gguf_parse import gguf_parsed_once


def write_gguf(path) -> str:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_token_list(["<s>", "a", "b"])
    writer.add_tensor("token_embd.weight", np.ones((3, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def test_each_file_is_parsed_once_inside_the_block_and_afresh_outside(tmp_path):
    first, second = write_gguf(tmp_path / "a.gguf"), write_gguf(tmp_path / "b.gguf")
    original = gguf.GGUFReader
    with gguf_parsed_once():
        reader = gguf.GGUFReader(first)
        assert gguf.GGUFReader(first) is reader and gguf.GGUFReader(tmp_path / "a.gguf") is reader
        assert gguf.GGUFReader(second) is not reader
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
        assert reader.fields["tokenizer.ggml.tokens"].contents() == ["<s>", "a", "b"]
    assert gguf.GGUFReader is original
    assert gguf.GGUFReader(first) is not gguf.GGUFReader(first)
