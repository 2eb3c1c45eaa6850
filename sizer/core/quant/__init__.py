"""Precisions and quantizations: float and integer precisions (`precision`), llama.cpp's file
types (`gguf_types`) and the GGUF bytes they give (`gguf_size`), pre-quantized checkpoints
(`prequant`) and a model's GGUF rungs (`rungs`)."""
