"""Estimator arithmetic on a hand-built entry, fit levels, speed, and `sizer fit` on the command line.

Expected values are worked out by hand in the comments, not by calling the code under test.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from sizer.cli import main
from sizer.core.catalog.model_catalog import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.estimate.fit import LEVELS, fit_report, report_to_dict
from sizer.core.estimate.memory import (
    gguf_file_bytes,
    inference_memory,
    kv_cache_term,
    lora_params,
    param_groups,
    training_memory,
    weights_term,
)
from sizer.core.estimate.speed import decode_speed, prefill_speed
from sizer.core.hardware.devices import Device
from sizer.core.quant.precision import gguf_type_bits, parse_precision

GIB = 1024**3

# 4 layers, hidden 64, MLP 128 (gated), 8 heads of 8 dims, 2 KV heads (GQA), vocab 1000, tied.
# embed 1000*64 = 64,000; q+o 4*2*64*64 = 32,768; k 4*64*16 = 4,096; v 4,096;
# gate+up 4*2*64*128 = 65,536; down 4*64*128 = 32,768; norms 4*2*64 + 64 = 576.
PARAMS = 64_000 + 32_768 + 4_096 + 4_096 + 65_536 + 32_768 + 576  # 203,840
TINY = ModelEntry(
    id="test/tiny", family="test", kind="causal", params=PARAMS, published_params=0.0,
    model_type="llama", layers=4, hidden_size=64, intermediate_size=128, heads=8, kv_heads=2,
    head_dim=8, vocab_size=1000, tied_embeddings=True, max_context=4096, torch_dtype="bfloat16",
)


def bf16():
    return parse_precision("bf16")


def test_param_groups_split_the_exact_count():
    g = param_groups(TINY)
    assert (g.embed, g.head, g.attn_qo, g.attn_k, g.attn_v) == (64_000, 0, 32_768, 4_096, 4_096)
    assert (g.ffn_up, g.ffn_down, g.other) == (65_536, 32_768, 576)


def test_kv_cache_uses_kv_heads_not_attention_heads():
    # 2 (K,V) x 2 kv heads x 8 dims x 4 layers x 100 tokens x batch 3 x 2 bytes
    assert kv_cache_term(TINY, 100, 3, 2).bytes == 76_800


def test_sliding_window_layers_are_capped_at_the_window():
    entry = dataclasses.replace(TINY, sliding_window=32, sliding_layers=3)
    # 1 full layer x 100 tokens + 3 sliding layers x 32 tokens = 196 token-layers
    assert kv_cache_term(entry, 100, 1, 2).bytes == 2 * 2 * 8 * 196 * 2
    # below the window every layer holds the whole context
    assert kv_cache_term(entry, 20, 1, 2).bytes == 2 * 2 * 8 * 4 * 20 * 2


def test_encoders_have_no_kv_cache():
    encoder = dataclasses.replace(TINY, kind="encoder")
    assert kv_cache_term(encoder, 512, 8, 4).bytes == 0


@pytest.mark.parametrize(
    "name,bits", [("Q4_0", 4.5), ("Q4_1", 5.0), ("Q8_0", 8.5), ("Q4_K", 4.5), ("Q5_K", 5.5), ("Q6_K", 6.5625)]
)
def test_gguf_bits_per_weight_follow_the_block_layout(name, bits):
    assert gguf_type_bits(name) == bits


def test_q4_k_m_file_size_mixes_types_per_tensor():
    # hidden 64 and MLP 128 are no multiples of K-quant blocks (256): llama-quantize falls back to
    # Q5_0 for Q4_K and to Q8_0 for Q6_K (worked out in tests/test_engines.py) -> 172,960 bytes
    size, how = gguf_file_bytes(TINY, "Q4_K_M")
    assert size == 172_960
    assert "Q8_0" in how and "Q5_0" in how


def test_weights_per_precision():
    assert weights_term(TINY, bf16()).bytes == PARAMS * 2
    assert weights_term(TINY, parse_precision("fp32")).bytes == PARAMS * 4
    # bitsandbytes NF4 quantizes the 139,264 linear params (4 + 8/64 + 32/16384 bits); the rest stays bf16
    nf4_bits = 4 + 8 / 64 + 32 / 16384
    assert weights_term(TINY, parse_precision("int4")).bytes == int(139_264 * nf4_bits / 8 + 64_576 * 2)


def test_gguf_through_transformers_is_resident_as_float():
    q = parse_precision("Q4_K_M")
    assert (q.kind, q.compute) == ("gguf", "fp32")
    term = weights_term(TINY, q)
    assert term.bytes == PARAMS * 4
    assert "de-quantizes" in term.formula


def test_load_transient_depends_on_the_loading_path():
    # bf16 checkpoint loaded as bf16: memory-mapped in place
    assert inference_memory(TINY, bf16(), 16).load_transient.bytes == 0
    # loaded as fp32 on CPU: the mapped bf16 file stays resident while the fp32 copy is built
    m = inference_memory(TINY, parse_precision("fp32"), 16)
    assert m.load_transient.bytes == PARAMS * 2
    assert m.peak_bytes >= PARAMS * 4 + PARAMS * 2


def test_causal_activations_include_logits_for_every_position():
    m = inference_memory(TINY, bf16(), 256, 2)
    logits = 2 * 256 * 1000 * 2
    assert m.activations.bytes > logits
    cuda = inference_memory(TINY, bf16(), 256, 2, "cuda")
    assert cuda.activations.bytes >= logits
    assert cuda.overhead.bytes > 0
    # CPU: loading bookkeeping 11.5 MiB + 4 layers x 0.5 MiB, inside the resident-set increment
    assert m.overhead.bytes == int(11.5 * 2**20) + 4 * 2**19
    assert m.measured_bytes == m.total_bytes and cuda.measured_bytes == cuda.peak_bytes


def test_cpu_counts_two_layer_working_sets_and_cuda_one():
    # context 256 x batch 2 = 512 tokens, bf16 (2 bytes); qkv (8 + 2x2) x 8 = 96, rope (8 + 2) x 8 = 80
    # attention 512 x (3x64 + 96 + 80) x 2 + causal mask 2 x 256^2 x 1 = 376,832 + 131,072 = 507,904
    # mlp 512 x (3x64 + 3x128) x 2 = 589,824 -> the layer's working set; logits 512 x 1000 x 2 = 1,024,000
    cpu = inference_memory(TINY, bf16(), 256, 2, "cpu")
    assert cpu.activations.bytes == 589_824 * 3 // 2 + 1_024_000  # glibc keeps freed blocks in its heap
    cuda = inference_memory(TINY, bf16(), 256, 2, "cuda")
    assert cuda.activations.bytes == 1_024_000 + 32 * 2**20  # the caching allocator reuses them


def test_encoder_mlp_holds_two_hidden_and_two_intermediate_tensors():
    enc = dataclasses.replace(TINY, kind="encoder", intermediate_size=512, kv_heads=8)
    # 512 tokens, fp32: mlp max(2x64 + 2x512, 5x64 + 512) = 1152 wide -> 512 x 1152 x 4 = 2,359,296;
    # attention 512 x (3x64 + 192 qkv) x 4 + padding mask 2 x 256^2 x 4 = 1,310,720 is smaller;
    # mean pooling 3 x 512 x 64 x 4 = 393,216
    m = inference_memory(enc, parse_precision("fp32"), 256, 2, "cpu")
    assert m.activations.bytes == 2_359_296 * 3 // 2 + 393_216
    assert m.kv_cache.bytes == 0


def test_gguf_load_transient_counts_the_mapped_file_and_one_metadata_parse():
    # 5 parts x 1000 vocab entries x 680 bytes = 3,400,000 (the tokenizer, config and tensor
    # passes share one parse)
    m = inference_memory(TINY, parse_precision("Q4_K_M"), 16)
    assert m.load_transient.bytes == gguf_file_bytes(TINY, "Q4_K_M")[0] + 3_400_000
    assert inference_memory(TINY, parse_precision("Q4_K_M"), 16, device_kind="cuda").load_transient.bytes == 0


def test_training_full_lora_qlora():
    full = training_memory(TINY, bf16(), 64, 1, "full")
    names = {t.name: t.bytes for t in full.terms}
    # bf16 weights + bf16 grads + fp32 master + two fp32 moments = 16 bytes per param
    assert names["weights"] + names["gradients"] + names["fp32 master weights"] + names["AdamW moments"] == PARAMS * 16
    # rank 16 on q(64,64) k(64,16) v(64,16) o(64,64) gate(64,128) up(64,128) down(128,64), 4 layers
    assert lora_params(TINY, 16) == 4 * 16 * (128 + 80 + 80 + 128 + 192 + 192 + 192)
    lora = training_memory(TINY, bf16(), 64, 1, "lora")
    qlora = training_memory(TINY, bf16(), 64, 1, "qlora")
    assert dict((t.name, t.bytes) for t in lora.terms)["adapters + grads + AdamW"] == lora_params(TINY, 16) * 16
    assert qlora.terms[0].bytes < lora.terms[0].bytes < full.total_bytes
    with pytest.raises(SizerError, match="full fine-tuning"):
        training_memory(TINY, parse_precision("int4"), 64, 1, "full")


def _gpu(free_gib: float) -> Device:
    return Device("GPU", "cuda", int(free_gib * GIB), int(free_gib * GIB), 1000.0, {"bf16": 100e12})


def _cpu(free_gib: float) -> Device:
    return Device("CPU", "cpu", int(free_gib * GIB), int(free_gib * GIB), 50.0, {"fp32": 1e12, "bf16": 1e12})


BIG = dataclasses.replace(TINY, params=7_000_000_000)  # 7B params: 13.04 GiB of bf16 weights


def test_fit_levels_against_free_memory():
    assert fit_report(BIG, bf16(), 512, 1, [_gpu(24), _cpu(64)]).level == "fits"
    split = fit_report(BIG, bf16(), 512, 1, [_gpu(8), _cpu(64)])
    assert split.level == "split" and split.offloaded_bytes > 0
    assert fit_report(BIG, bf16(), 512, 1, [_cpu(64)]).level == "fits-cpu"
    assert fit_report(BIG, bf16(), 512, 1, [_cpu(8)]).level == "no"


def test_fit_uses_free_memory_with_headroom():
    need = inference_memory(BIG, bf16(), 512, 1, "cpu").total_bytes
    total = 4 * need
    just_above_need = Device("CPU", "cpu", total, int(need * 1.05), 50.0, {})
    roomy = Device("CPU", "cpu", total, int(need / 0.9) + 1, 50.0, {})
    assert fit_report(BIG, bf16(), 512, 1, [just_above_need]).level == "no"  # 1.05 x need free < need / 0.9
    assert fit_report(BIG, bf16(), 512, 1, [roomy]).level == "fits-cpu"


def test_two_gpus_hold_what_one_cannot():
    assert fit_report(BIG, bf16(), 512, 1, [_gpu(10), _gpu(10), _cpu(4)]).level == "fits"


def test_speed_formulas():
    tps, how = prefill_speed(1_000_000_000, 100e12)
    assert tps == pytest.approx(100e12 * 0.5 / 2e9)
    assert "0.5" in how
    tps, _ = decode_speed(14 * 10**9, 1000.0)
    assert tps == pytest.approx(1000e9 * 0.7 / 14e9)
    assert decode_speed(14 * 10**9, 1000.0, batch=4)[0] == pytest.approx(4 * tps)
    slower, how = decode_speed(10 * 10**9, 1000.0, offloaded_bytes=4 * 10**9)
    assert slower == pytest.approx(1 / (10e9 / 700e9 + 4e9 / 25e9))
    assert decode_speed(10, None)[0] is None


def test_report_speed_comes_from_the_device_it_fits():
    r = fit_report(BIG, bf16(), 512, 1, [_gpu(24), _cpu(64)])
    weights = BIG.params * 2
    kv = 2 * 2 * 8 * 4 * 512 * 2
    assert r.speed.decode_tps == pytest.approx(1000e9 * 0.7 / (weights + kv))


def test_unknown_dtype_lists_the_valid_ones():
    with pytest.raises(SizerError, match="fp32, bf16, fp16, int8, int4") as info:
        parse_precision("fp8")
    assert "Q4_K_M" in str(info.value)


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "argv,message",
    [
        (["fit", "Qwen/Qwen2.5-0.5B-Instruct", "--context", "0"], "--context 0"),
        (["fit", "Qwen/Qwen2.5-0.5B-Instruct", "--batch", "-1"], "--batch -1"),
        (["fit", "Qwen/Qwen2.5-0.5B-Instruct", "--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["fit", "Qwen/Qwen9-1B"], "unknown model 'Qwen/Qwen9-1B'"),
        (["fit"], "name one MODEL"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an id outside the catalog is looked up on the Hub otherwise
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sizer: error:") and message in lines[0]


def test_cli_json_shape(capsys):
    assert main(["fit", "Qwen/Qwen2.5-0.5B-Instruct", "--profile", "1x RTX 4090", "--context", "2048", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "Qwen/Qwen2.5-0.5B-Instruct" and data["context"] == 2048
    assert data["fit"]["level"] in LEVELS
    cuda = data["memory"]["cuda"]
    assert cuda["weights"]["bytes"] == data["params"] * 2
    assert set(cuda) >= {"weights", "kv_cache", "activations", "load_transient", "runtime_overhead", "peak_bytes"}
    assert {d["kind"] for d in data["devices"]} == {"cuda", "cpu"}
    assert data["speed"]["decode_tokens_per_s"] > 0
    assert set(data["training"]) == {"full", "lora", "qlora"}


def test_cli_all_ranks_fitting_models_first(capsys):
    assert main(["fit", "--all", "--profile", "1x RTX 4090", "--context", "1024", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    ranks = [LEVELS.index(r["level"]) for r in rows]
    assert ranks == sorted(ranks) and len(rows) > 10
    assert any(r["level"] == "fits" for r in rows) and any(r["level"] != "fits" for r in rows)


def test_report_dict_is_json_serialisable():
    json.dumps(report_to_dict(fit_report(TINY, parse_precision("Q4_K_M"), 128, 1, [_cpu(8)])))


@pytest.mark.parametrize("profile, dtype", [("1x RTX 4090", "bf16"), ("1x T4", "fp16"), ("M2 Max 64GB", "fp16"),
                                            ("8 vCPU 32GB", "fp32")])
def test_fit_defaults_to_the_precision_a_trial_would_use_there(profile, dtype, capsys):
    # a trial runs bf16 on GPUs that have it, fp16 on older ones and MPS, fp32 on the CPU
    assert main(["fit", "Qwen/Qwen2.5-0.5B-Instruct", "--profile", profile, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dtype"] == dtype
    assert data["memory"]["cpu"]["weights"]["bytes"] == data["params"] * {"bf16": 2, "fp16": 2, "fp32": 4}[dtype]
    # encoders run in fp32 everywhere
    assert main(["fit", "sentence-transformers/all-MiniLM-L6-v2", "--profile", profile, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "fp32"
