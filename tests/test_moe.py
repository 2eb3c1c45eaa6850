"""Mixture-of-experts: catalog fields from config.json, memory with every expert, decode with the
active ones only. The three shipped MoE entries are checked against a meta-device build.

Expected values are worked out by hand in the comments, not by calling the code under test.
"""

from __future__ import annotations

import dataclasses

import pytest

from sizer.core.catalog.model_catalog import CARDS_FILE, load_catalog
from sizer.core.catalog.family_file import config_path
from sizer.core.catalog.build import read_cards, read_config
from sizer.core.catalog.family_file import entry_from_dict, entry_to_dict, read_family_file, write_family_file
from sizer.core.errors import SizerError
from sizer.core.estimate.fit import fit_report
from sizer.core.estimate.experts import (
    active_params,
    decode_read_bytes,
    expert_params,
    expert_weight_bytes,
    shipped_weight_bytes,
)
from sizer.core.estimate.memory import gguf_file_bytes, weights_term
from sizer.core.estimate.params import param_groups
from sizer.core.estimate.speed import DECODE_EFFICIENCY, speed_estimate
from sizer.core.hardware.profile import simulated
from sizer.core.paths import shipped_catalogs
from sizer.core.quant.precision import parse_precision

SHIPPED = shipped_catalogs()
QWEN = "Qwen/Qwen3-30B-A3B"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
GPT_OSS = "openai/gpt-oss-20b"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


# Qwen3-30B-A3B (config.json): hidden 2048, 48 layers, 32 heads x 128, 4 KV heads, vocab 151,936
# untied, 128 experts of width 768, 8 per token, every layer MoE.
#   embed = head = 151,936 x 2048 = 311,164,928
#   attention 48 x (2 x 2048 x 4096 + 2 x 2048 x 512) = 905,969,664
#   norms 48 x (2 x 2048 + 2 x 128) + 2048 = 208,896 + 2048; routers 48 x 2048 x 128 = 12,582,912
#   experts 48 x 128 x 3 x 2048 x 768 = 28,991,029,248
#   total = 30,532,122,624; active = total - experts + 48 x 8 x 3 x 2048 x 768 = 3,353,032,704
QWEN_PARAMS, QWEN_EXPERTS, QWEN_ACTIVE = 30_532_122_624, 28_991_029_248, 3_353_032_704
# Mixtral-8x7B: hidden 4096, 32 layers, 8 KV heads, vocab 32,000 untied, 8 experts of 14,336, 2 per token.
#   embed = head = 131,072,000; attention 32 x (2 x 4096^2 + 2 x 4096 x 1024) = 1,342,177,280
#   norms 32 x 2 x 4096 + 4096 = 266,240; routers 32 x 4096 x 8 = 1,048,576
#   experts 32 x 8 x 3 x 4096 x 14,336 = 45,097,156,608 -> total 46,702,792,704
#   active = total - experts + 32 x 2 x 3 x 4096 x 14,336 = 12,879,925,248
MIXTRAL_PARAMS, MIXTRAL_EXPERTS, MIXTRAL_ACTIVE = 46_702_792_704, 45_097_156_608, 12_879_925_248
# gpt-oss-20b: hidden 2880, 24 layers, 64 heads x 64, 8 KV heads, vocab 201,088 untied, 32 experts of
# 2880, 4 per token, biases on attention, router and experts, one sink per head.
#   embed = head = 201,088 x 2880 = 579,133,440
#   attention 24 x (2880 x 4096 + 4096 + 2 x (2880 x 512 + 512) + 4096 x 2880 + 2880 + 64) = 637,108,224
#   norms 24 x 2 x 2880 + 2880 = 141,120; routers 24 x (2880 x 32 + 32) = 2,212,608
#   experts 24 x 32 x 3 x 2880 x 2880 = 19,110,297,600; expert biases 24 x 32 x (2 x 2880 + 2880) = 6,635,520
#   total 20,914,757,184; active = total - experts + 24 x 4 x 3 x 2880^2 = 4,193,246,784
GPT_OSS_PARAMS, GPT_OSS_EXPERTS, GPT_OSS_ACTIVE = 20_914_757_184, 19_110_297_600, 4_193_246_784


def test_catalog_records_the_experts(catalog):
    qwen, mixtral, gpt = catalog.get(QWEN), catalog.get(MIXTRAL), catalog.get(GPT_OSS)
    fields = ("experts", "experts_per_token", "expert_intermediate_size", "shared_experts", "moe_layers")
    assert [getattr(qwen, f) for f in fields] == [128, 8, 768, 0, 48]
    assert [getattr(mixtral, f) for f in fields] == [8, 2, 14336, 0, 32]
    assert [getattr(gpt, f) for f in fields] == [32, 4, 2880, 0, 24]
    assert (qwen.params, mixtral.params, gpt.params) == (QWEN_PARAMS, MIXTRAL_PARAMS, GPT_OSS_PARAMS)
    assert gpt.quant_method == "mxfp4" and gpt.torch_dtype == "bfloat16"  # the card's dtype: the config names none
    assert gpt.sliding_window == 128 and gpt.sliding_layers == 12  # alternating layer_types
    assert not catalog.get("Qwen/Qwen3-8B").is_moe


@pytest.mark.parametrize(
    ("repo_id", "experts", "active"),
    [(QWEN, QWEN_EXPERTS, QWEN_ACTIVE), (MIXTRAL, MIXTRAL_EXPERTS, MIXTRAL_ACTIVE), (GPT_OSS, GPT_OSS_EXPERTS, GPT_OSS_ACTIVE)],
)
def test_expert_split_matches_the_hand_count(catalog, repo_id, experts, active):
    entry = catalog.get(repo_id)
    assert expert_params(entry)[0] == experts
    assert active_params(entry) == active


@pytest.mark.parametrize("repo_id", [QWEN, MIXTRAL, GPT_OSS])
def test_expert_weights_match_the_meta_device_build(catalog, repo_id):
    """The routed experts' weight tensors of the model built from the stored config.json on the meta
    device (no weights read) hold exactly the params the split counts."""
    import torch
    import transformers

    from sizer.core.catalog.from_config import config_object

    entry = catalog.get(repo_id)
    config = read_config(config_path(SHIPPED, repo_id))
    with torch.device("meta"):
        model = getattr(transformers, entry.architecture)(config_object(config))
    named = dict(model.named_parameters())
    expert_weights = sum(p.numel() for n, p in named.items() if ".experts." in n and not n.endswith("bias"))
    assert expert_weights == expert_params(entry)[0]
    assert sum(p.numel() for p in named.values()) == entry.params


def test_active_params_match_the_published_figures(catalog):
    cards = read_cards(SHIPPED / CARDS_FILE)
    for repo_id in (QWEN, MIXTRAL):
        # 3,353,032,704 vs 3.3B (1.6%); 12,879,925,248 vs 12.9B (0.2%)
        published = cards[repo_id]["published_active_params"]
        assert abs(active_params(catalog.get(repo_id)) - published) <= 0.02 * published
    # gpt-oss's model card counts the unembedding but not the embedding table (a token reads one
    # row of it): 4,193,246,784 - 579,133,440 = 3,614,113,344 vs 3.61B
    gpt = catalog.get(GPT_OSS)
    published = cards[GPT_OSS]["published_active_params"]
    assert abs(active_params(gpt) - gpt.vocab_size * gpt.hidden_size - published) <= 0.005 * published


def test_every_expert_counts_in_the_gguf_file(catalog):
    qwen = catalog.get(QWEN)
    # Q8_0 is 34 bytes per 32 weights = 8.5 bits for every tensor but the F32 norms and routers:
    # 30.5e9 x 8.5 / 8 = 32,406,250,000 bytes (the published Qwen3-30B-A3B-Q8_0.gguf is 32.5 GB);
    # before experts were counted, 27.5e9 of them were taken for F32 norms (~105 GiB)
    file_bytes, _ = gguf_file_bytes(qwen, "Q8_0")
    assert abs(file_bytes - 30.5e9 * 8.5 / 8) <= 0.05 * 30.5e9 * 8.5 / 8
    g = param_groups(qwen)
    # the experts are linear weights: gate+up 2 x 28,991,029,248 / 3, down 1/3
    assert (g.ffn_up, g.ffn_down) == (QWEN_EXPERTS * 2 // 3, QWEN_EXPERTS // 3)
    # what is left for F32: norms 210,944 + routers 12,582,912 = 12,793,856
    assert g.other == 12_793_856

    mixtral = catalog.get(MIXTRAL)
    # 46,702,792,704 x 8.5 / 8 = 49,621,717,248 bytes (the published Q8_0 file is about 49.6 GB)
    file_bytes, _ = gguf_file_bytes(mixtral, "Q8_0")
    assert abs(file_bytes - 49_621_717_248) <= 0.01 * 49_621_717_248


def test_mixtral_bf16_weights_hold_every_expert(catalog):
    # 46,702,792,704 params x 2 bytes = 93,405,585,408 bytes (~87 GiB)
    assert weights_term(catalog.get(MIXTRAL), parse_precision("bf16")).bytes == 93_405_585_408


def test_gpt_oss_as_shipped(catalog):
    gpt = catalog.get(GPT_OSS)
    # MXFP4 experts: 19,110,297,600 x 4.25 / 8 = 10,152,345,600 (4.25 bits: 17 bytes per 32 weights);
    # the rest in bf16: (20,914,757,184 - 19,110,297,600) x 2 = 3,608,919,168
    # total 13,761,264,768 bytes (~12.8 GiB; the published safetensors total about 13.8 GB)
    total, how = shipped_weight_bytes(gpt)
    assert total == 10_152_345_600 + 3_608_919_168
    assert "MXFP4" in how
    assert shipped_weight_bytes(catalog.get(MIXTRAL)) is None  # not pre-quantized


def test_decode_reads_the_active_experts_only(catalog):
    qwen = catalog.get(QWEN)
    q8 = parse_precision("Q8_0")
    file_bytes, _ = gguf_file_bytes(qwen, "Q8_0")
    experts = expert_weight_bytes(qwen, q8, packed_gguf=True)
    # the experts are Q8_0 throughout: 28,991,029,248 x 8.5 / 8 = 30,802,968,576 bytes
    assert experts == 30_802_968_576
    # a token reads 8 of 128 of them: file - experts x 120/128
    assert decode_read_bytes(qwen, file_bytes, experts) == file_bytes - experts + experts * 8 // 128
    # one H100 SXM (3,350 GB/s), llama.cpp holding the Q8_0 file, context 4096:
    # KV 2 x 4 x 128 x 48 layers x 4096 x 2 bytes = 402,653,184
    # bandwidth bound from the active params: 3.353e9 x 8.5/8 = 3.563e9 bytes + KV 0.403e9 = 3.965e9
    # -> 3350e9 x 0.7 / 3.965e9 = 591 tokens/s
    h100 = next(d for d in simulated("1x H100 80GB").devices() if d.kind == "cuda")
    read = decode_read_bytes(qwen, file_bytes, experts)
    speed = speed_estimate(h100, active_params(qwen), "bf16", read, 402_653_184)
    expected = 3350e9 * DECODE_EFFICIENCY / (QWEN_ACTIVE * 8.5 / 8 + 402_653_184)
    assert abs(speed.decode_tps - expected) <= 0.25 * expected


def test_fit_on_one_h100_decodes_at_the_active_experts_speed(catalog):
    qwen = catalog.get(QWEN)
    report = fit_report(qwen, parse_precision("bf16"), 4096, 1, simulated("1x H100 80GB").devices(), True)
    assert report.level == "fits"  # 61 GB of bf16 weights on an 80 GB GPU
    # bf16 weights a token reads: 3,353,032,704 x 2 = 6,706,065,408 bytes; KV at 4096 tokens
    # 402,653,184 -> 3350e9 x 0.7 / 7.109e9 = 330 tokens/s (reading all 61 GB: 38 tokens/s)
    expected = 3350e9 * DECODE_EFFICIENCY / (QWEN_ACTIVE * 2 + 402_653_184)
    assert abs(report.speed.decode_tps - expected) <= 0.25 * expected
    # prefill is 2 FLOPs per active param: 989.5e12 x 0.5 / (2 x 3,353,032,704)
    assert report.speed.prefill_tps == pytest.approx(989.5e12 * 0.5 / (2 * QWEN_ACTIVE))


def test_dense_models_are_unchanged(catalog):
    dense = catalog.get("Qwen/Qwen3-8B")
    assert expert_params(dense) == (0, 0) and active_params(dense) == dense.params
    bf16 = parse_precision("bf16")
    assert decode_read_bytes(dense, 123, expert_weight_bytes(dense, bf16)) == 123


def test_moe_fields_round_trip_and_dense_entries_leave_them_out(tmp_path, catalog):
    qwen, dense = catalog.get(QWEN), catalog.get("Qwen/Qwen3-8B")
    write_family_file(tmp_path / "qwen3.toml", [qwen, dense])
    assert read_family_file(tmp_path / "qwen3.toml") == sorted([qwen, dense], key=lambda e: e.params)
    assert "experts" not in entry_to_dict(dense) and entry_to_dict(qwen)["experts"] == 128
    assert "experts" not in (SHIPPED / "qwen3.toml").read_text().split('id = "Qwen/Qwen3-8B"')[1].split("[[models]]")[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"experts_per_token": 9, "experts": 8}, "'experts_per_token' must be between 1 and experts (8)"),
        ({"experts": -1}, "field 'experts' must be 0 or more"),
        ({"moe_layers": 0}, "needs experts, expert_intermediate_size and moe_layers"),
        ({"moe_layers": 49}, "'moe_layers' must be at most layers (48)"),
        ({"experts": "many"}, "field 'experts' must be an integer"),
    ],
)
def test_bad_moe_fields_name_the_field(catalog, change, message):
    data = {**entry_to_dict(catalog.get(QWEN)), **change}
    with pytest.raises(SizerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        entry_from_dict(data, "catalogs/qwen3.toml")


def test_shared_experts_and_dense_layers_from_a_deepseek_style_config():
    """DeepSeek-V2-Lite-style keys: 64 routed experts, 2 shared of the expert width, first layer dense."""
    from sizer.core.catalog.from_config import _moe_fields

    text = dataclasses.make_dataclass("Text", [])()
    for key, value in {"n_routed_experts": 64, "num_experts_per_tok": 6, "moe_intermediate_size": 1408,
                       "n_shared_experts": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1,
                       "intermediate_size": 10944}.items():
        setattr(text, key, value)
    fields = _moe_fields(text, 27)
    # 27 layers, layer 0 dense: 26 MoE layers; shared experts take the routed width
    assert fields == {"experts": 64, "experts_per_token": 6, "expert_intermediate_size": 1408,
                      "shared_experts": 2, "shared_expert_intermediate_size": 1408, "moe_layers": 26}


def test_catalog_list_and_show_give_the_active_count(capsys):
    from sizer.cli import main

    assert main(["catalog", "list", "--family", "qwen3"]) == 0
    # 30,532,122,624 total, 3,353,032,704 active
    assert "30.53B (3.35B active)" in capsys.readouterr().out
    assert main(["catalog", "show", "Mixtral-8x7B-Instruct-v0.1"]) == 0
    out = capsys.readouterr().out
    assert "12,879,925,248 (12.88B)" in out and "experts_per_token" in out


def test_the_models_screen_downloads_gpt_oss_packed(catalog):
    from sizer.tui.engine import candidate_rows

    rows = {r.entry.id: r for r in candidate_rows(catalog, simulated("1x RTX 4090"))}
    # as shipped: 13,761,264,768 bytes, not 20,914,757,184 x 2 in bf16
    assert rows[GPT_OSS].download_bytes == 13_761_264_768


def test_offloaded_moe_layers_cross_pcie_whole(catalog):
    from sizer.core.estimate.speed import PCIE_GBS

    qwen = catalog.get(QWEN)
    report = fit_report(qwen, parse_precision("bf16"), 4096, 1, simulated("1x RTX 4090").devices(), True)
    assert report.level == "split" and report.offloaded_bytes > 0
    weights = report.memory["cuda"].weights.bytes  # 30,532,122,624 x 2
    read = QWEN_ACTIVE * 2  # what a token reads of them
    (gpu,) = report.shares
    kv = gpu.kv_bytes  # the KV cache of the layers the GPU holds
    # the GPU reads its share of the active bytes at 1008 GB/s x 0.7; accelerate copies every
    # offloaded module (all its experts) over PCIe at 25 GB/s
    seconds = (read * (1 - report.offloaded_bytes / weights) + kv) / (1008e9 * DECODE_EFFICIENCY)
    seconds += report.offloaded_bytes / (PCIE_GBS * 1e9)
    assert report.speed.decode_tps == pytest.approx(1 / seconds, rel=1e-6)
