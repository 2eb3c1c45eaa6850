"""LoRA fine-tuning of a causal LM on (prompt, answer) pairs, through peft.

Every training example is the zero-shot prompt followed by its answer; the loss covers the answer
tokens only. The shared prefix (instruction + label list) is the same for every example, so it runs
once per step without gradients and its KV cache is reused by the whole batch: gradients flow
through each example's own tokens, not back into the prefix, which makes a step several times
cheaper on long instructions. Training stops when the wall-clock budget runs out, when the
validation criterion stops improving, or after `max_epochs`; the best adapter seen is kept.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from sizer.core.fileio import atomic_write_text
from sizer.core.paths import cache_dir

IGNORE = -100
REPORT_FILE = "training.json"


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    lr: float = 1e-3
    batch_size: int = 8
    max_epochs: int = 3
    evals_per_epoch: int = 2
    patience: int = 2              # evaluations without improvement before stopping
    budget_s: float = 120.0


@dataclass(frozen=True)
class Sample:
    """One training example: its tokens after the shared prefix, and the answer tokens."""

    prompt: tuple[int, ...]
    answer: tuple[int, ...]


@dataclass
class TrainReport:
    steps: int = 0
    epochs: float = 0.0
    stopped_because: str = "done"   # budget | early-stop | done
    best_step: int = 0
    best_val_loss: float = math.inf
    best_val_score: float | None = None
    train_size: int = 0
    val_size: int = 0
    train_seconds: float = 0.0
    peak_train_bytes: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_budget_s(device: str) -> float:
    """Two minutes on a CPU, ten on a GPU."""
    return 120.0 if device == "cpu" else 600.0


# ---- batches ----------------------------------------------------------------------------------


def batch_tensors(samples: Sequence[Sample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids (prompt + answer) and next-token targets: `targets[b, t]` is the token
    position t must predict when t + 1 is an answer token, IGNORE everywhere else."""
    width = max(len(s.prompt) + len(s.answer) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    targets = torch.full((len(samples), width), IGNORE, dtype=torch.long)
    for row, sample in enumerate(samples):
        if not sample.prompt:
            raise ValueError("a training sample needs at least one prompt token before its answer")
        tokens = list(sample.prompt) + list(sample.answer)
        ids[row, : len(tokens)] = torch.tensor(tokens)
        start = len(sample.prompt)
        targets[row, start - 1 : start - 1 + len(sample.answer)] = torch.tensor(sample.answer)
    return ids, targets


def _cache_kwarg(module: Any, cache: Any) -> dict[str, Any]:
    # transformers is renaming `past_key_values` to `cache`; pass whichever forward() takes.
    name = "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
    return {name: cache}


def prefix_cache(model: Any, prefix: Sequence[int], device: torch.device) -> Any:
    """The shared prefix's KV cache under the current adapter (no gradients); None without a prefix."""
    if not prefix:
        return None
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        decoder = model.get_decoder()
        decoder(input_ids=torch.tensor([list(prefix)], device=device), use_cache=True, **_cache_kwarg(decoder, cache))
    return cache


def answer_loss(model: Any, cache: Any, ids: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the answer tokens of a batch (and their count). The LM head runs
    only at the positions that predict answer tokens."""
    decoder = model.get_decoder()
    kwargs: dict[str, Any] = {}
    if cache is not None:
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(ids.shape[0])
        kwargs = {"use_cache": True, **_cache_kwarg(decoder, cache)}
    hidden = decoder(input_ids=ids, **kwargs).last_hidden_state
    keep = targets != IGNORE
    logits = model.get_output_embeddings()(hidden[keep]).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    return loss, int(keep.sum())


def validation_loss(model: Any, prefix: Sequence[int], samples: Sequence[Sample], pad_id: int,
                    batch_size: int, device: torch.device) -> float:
    """Mean loss per answer token over `samples` (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        cache = prefix_cache(model, prefix, device)
        for start in range(0, len(samples), batch_size):
            ids, targets = batch_tensors(samples[start : start + batch_size], pad_id)
            loss, n = answer_loss(model, cache, ids.to(device), targets.to(device))
            total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


# ---- LoRA -------------------------------------------------------------------------------------


def lora_config(model: Any, settings: LoraSettings) -> Any:
    """peft's LoRA config: its default target modules for the architecture, else every linear layer."""
    from peft import LoraConfig, TaskType
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    targets = DEFAULTS.get(model.config.model_type, "all-linear")
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=settings.rank, lora_alpha=settings.alpha,
                      lora_dropout=settings.dropout, target_modules=targets)


def attach_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap `model` in a fresh LoRA adapter (the base weights are frozen; LoRA layers are injected
    into `model` itself, so the bare model runs with the adapter from now on)."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, settings))


def adapter_state(peft_model: Any) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    # LoRA never touches the embeddings: saying so keeps peft from looking for the base config
    state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    return {k: v.detach().clone() for k, v in state.items()}


def load_adapter_state(peft_model: Any, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(peft_model, state)


def _peak_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


def train_lora(
    peft_model: Any,
    prefix: Sequence[int],
    fit: Sequence[Sample],
    val: Sequence[Sample],
    settings: LoraSettings,
    seed: int,
    pad_id: int,
    val_eval: Callable[[], tuple[float, float | None]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_eval: Callable[[dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train the adapter of `peft_model` on `fit`; evaluate on `val` a few times per epoch (and
    before the first step); keep the best adapter. `val_eval()` -> (loss per answer token, score or
    None) replaces the plain loss pass when the caller can do better (classify: label accuracy and
    the gold label's loss from one scoring pass). The criterion is the score (higher is better)
    with the loss breaking ties, or the loss alone."""
    device = next(peft_model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = clock()
    steps_per_epoch = math.ceil(len(fit) / settings.batch_size)
    eval_every = max(1, steps_per_epoch // max(1, settings.evals_per_epoch))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    report = TrainReport(train_size=len(fit), val_size=len(val))
    rng = random.Random(seed)
    torch.manual_seed(seed)
    best = {"key": None, "state": adapter_state(peft_model)}
    stale = 0

    def evaluate() -> bool:
        """Record one evaluation; True when it is the best so far."""
        peft_model.eval()
        if val_eval is not None:
            loss, score = val_eval()
        else:
            loss, score = validation_loss(peft_model, prefix, val, pad_id, settings.batch_size, device), None
        peft_model.train()
        point = {"step": report.steps, "val_loss": round(loss, 5), "seconds": round(clock() - began, 2)}
        if score is not None:
            point["val_score"] = round(score, 5)
        report.history.append(point)
        if on_eval:
            on_eval(point)
        key = (-(score if score is not None else 0.0), loss)
        if best["key"] is None or key < best["key"]:
            best.update(key=key, state=adapter_state(peft_model))
            report.best_step, report.best_val_loss, report.best_val_score = report.steps, loss, score
            return True
        return False

    def out_of_time() -> bool:
        return clock() - began >= settings.budget_s

    peft_model.train()
    if val:
        evaluate()
    stop = None
    for epoch in range(settings.max_epochs):
        order = list(fit)
        rng.shuffle(order)
        for start in range(0, len(order), settings.batch_size):
            if out_of_time():
                stop = "budget"
                break
            ids, targets = batch_tensors(order[start : start + settings.batch_size], pad_id)
            cache = prefix_cache(peft_model, prefix, device)
            loss, count = answer_loss(peft_model, cache, ids.to(device), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            (loss / max(count, 1)).backward()
            optimizer.step()
            report.steps += 1
            report.epochs = round(epoch + (start + len(ids)) / len(order), 3)
            if val and (report.steps % eval_every == 0 or start + settings.batch_size >= len(order)):
                stale = 0 if evaluate() else stale + 1
                if stale >= settings.patience:
                    stop = "early-stop"
                    break
        if stop:
            break
    report.stopped_because = stop or "done"
    if val:  # without a validation slice the last adapter is the only candidate
        load_adapter_state(peft_model, best["state"])
    peft_model.eval()
    report.train_seconds = round(clock() - began, 2)
    report.peak_train_bytes = _peak_bytes(device)
    return report


# ---- saved adapters ---------------------------------------------------------------------------


def adapter_dir(key: str) -> Path:
    """Where the adapter with this key lives: `cache_dir()/adapters/<key>/`."""
    return cache_dir() / "adapters" / key


def save_adapter(peft_model: Any, folder: Path, report: dict[str, Any]) -> Path:
    """peft's `save_pretrained` plus the training report; the report is written last, so a folder
    with a report holds a whole adapter."""
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    atomic_write_text(folder / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True))
    return folder


def saved_report(folder: Path) -> dict[str, Any] | None:
    """The training report of a complete saved adapter, or None."""
    path = folder / REPORT_FILE
    if not (path.exists() and (folder / "adapter_config.json").exists()):
        return None
    return json.loads(path.read_text())


def load_saved_adapter(model: Any, folder: Path) -> Any:
    """`model` with the adapter saved in `folder` injected (for scoring, not training)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(folder), is_trainable=False)
