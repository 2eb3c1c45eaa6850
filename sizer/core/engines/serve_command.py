"""The command that serves a recommendation, as the engine's own tools spell it.

- GGUF (llama.cpp): a `llama-server -m FILE` line (llama.cpp's HTTP server, OpenAI-compatible) and
  an `ollama create` line with the Modelfile it reads (FROM the file, the task's instruction as
  SYSTEM, greedy decoding, and a TEMPLATE when the model's chat template is ChatML, which Ollama
  does not always detect from the GGUF);
- safetensors causal LMs: a `vllm serve REPO` line (a LoRA adapter through `--lora-modules`);
- sentence encoders: the Python that loads the encoder with sentence-transformers and applies the
  saved classification head (`head.json`, as sizer.core.trials.runners.encoder_head writes it).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = ('{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
                   '<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n')
LLAMA_SERVER_PORT = 8080   # llama-server's default port
VLLM_PORT = 8000           # vllm serve's default port


@dataclass
class ServePlan:
    """How to serve the pick: its engine, the command lines, and a Modelfile's text where one is needed."""

    engine: str
    commands: list[str] = field(default_factory=list)
    modelfile: str = ""
    python: str = ""


def chat_template(path: Path) -> str:
    """The GGUF file's `tokenizer.chat_template` ("" when it has none or cannot be read)."""
    try:
        from gguf import GGUFReader

        f = GGUFReader(str(path)).fields.get("tokenizer.chat_template")
        return bytes(f.parts[f.data[0]]).decode("utf-8") if f is not None else ""
    except Exception:  # noqa: BLE001 - a template we cannot read is one we do not copy
        return ""


def context_tokens(entry: Any, settings: dict[str, Any]) -> int:
    """A serving context that holds the trial's prompt prefix and an example (tokens), rounded up to 512."""
    need = int(settings.get("prefix_tokens", 0)) + 512
    return min(entry.max_context, -(-need // 512) * 512)


def for_gguf(entry: Any, path: Path, quant: str, task: Any, settings: dict[str, Any]) -> ServePlan:
    ctx = context_tokens(entry, settings)
    name = f"{entry.short_name.lower()}-{quant.lower()}"
    lines = [shlex.join(["llama-server", "-m", str(path), "--host", "127.0.0.1", "--port", str(LLAMA_SERVER_PORT),
                         "-c", str(ctx)]),
             shlex.join(["ollama", "create", name, "-f", "Modelfile"]), shlex.join(["ollama", "run", name])]
    if settings.get("adapter_path") and entry.kind == "causal":
        lines.append(f"# the LoRA adapter in {settings['adapter_path']}: convert it with llama.cpp's "
                     "convert_lora_to_gguf.py and add `--lora ADAPTER.gguf` (Modelfile: ADAPTER ADAPTER.gguf)")
    text = [f"FROM {path}", "PARAMETER temperature 0", f"PARAMETER num_ctx {ctx}"]
    if "<|im_start|>" in chat_template(path):
        text.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
    if getattr(task, "instruction", ""):
        text.append(f'SYSTEM """{task.instruction}"""')
    return ServePlan("llama.cpp", lines, "\n".join(text) + "\n")


def for_safetensors(entry: Any, dtype: str, settings: dict[str, Any]) -> ServePlan:
    words = ["vllm", "serve", entry.id, "--host", "127.0.0.1", "--port", str(VLLM_PORT),
             "--max-model-len", str(context_tokens(entry, settings))]
    if dtype in ("bf16", "fp16"):
        words += ["--dtype", {"bf16": "bfloat16", "fp16": "float16"}[dtype]]
    if settings.get("adapter_path"):
        words += ["--enable-lora", "--lora-modules", f"task={settings['adapter_path']}"]
    return ServePlan("vllm", [shlex.join(words)])


def for_encoder(entry: Any, settings: dict[str, Any]) -> ServePlan:
    head = settings.get("adapter_path")
    if not head:
        code = (f"from sentence_transformers import SentenceTransformer\n"
                f"encoder = SentenceTransformer({entry.id!r})\n"
                "embeddings = encoder.encode(texts, normalize_embeddings=True)  # compare with each label's centroid\n")
        return ServePlan("sentence-transformers", python=code)
    code = (
        "import json\nfrom pathlib import Path\n\nimport numpy as np\nfrom sentence_transformers import SentenceTransformer\n\n"
        f"folder = Path({head!r})\n"
        'head = json.loads((folder / "head.json").read_text())\n'
        f'encoder = SentenceTransformer(str(folder / head["encoder_path"]) if "encoder_path" in head else {entry.id!r})\n\n'
        "def classify(texts):\n"
        '    x = encoder.encode(texts, normalize_embeddings=head["normalize_embeddings"])\n'
        '    scores = x @ np.array(head["coef"]).T + np.array(head["intercept"])\n'
        '    if scores.shape[1] == 1:  # two classes: one logistic score\n'
        '        return [head["classes"][int(s > 0)] for s in scores[:, 0]]\n'
        '    return [head["classes"][i] for i in scores.argmax(axis=1)]\n'
    )
    return ServePlan("sentence-transformers", python=code)


def serve_plan(entry: Any, task: Any, settings: dict[str, Any], quant: str = "", gguf_path: Path | None = None) -> ServePlan:
    """The plan for `entry` at `quant` (a GGUF file at `gguf_path`) or its own safetensors."""
    if entry.kind == "encoder":
        return for_encoder(entry, settings)
    if gguf_path is not None:
        return for_gguf(entry, gguf_path, quant, task, settings)
    return for_safetensors(entry, str(settings.get("dtype", "")), settings)
