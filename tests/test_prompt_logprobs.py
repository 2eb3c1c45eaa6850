"""vLLM's `prompt_logprobs`: the request body, the parsing of its answer, and a whole classify
trial through it. vLLM needs CUDA GPUs, so a stand-in on 127.0.0.1 answers as vLLM's
completions endpoint does (vllm/entrypoints/openai/protocol.py: each choice carries
`prompt_logprobs`, a list with one entry per prompt token, the first null, each entry a map
token id -> {logprob, rank, decoded_token}) from a real transformers model, the small
random-initialised SmolLM2 of the test catalog; the trial on it must score every label as the
local transformers trial on the same weights does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import TINY
from sizer.core.errors import SizerError
from sizer.core.paths import shipped_examples
from sizer.core.engines.openai_lm import by_index, prompt_logprobs_body, prompt_token_logprobs
from sizer.core.results.store import TrialStore
from sizer.core.task.spec import load_task
from sizer.core.trials.trial import run_trial
from sizer.core.trials.types import TrialSpec

BANKING = str(shipped_examples() / "banking.toml")

# An answer in vLLM's shape for the token-id prompt [1, 31, 2770] (first entry null; the prompt's
# own token always listed, with its rank, beside the top-1 token when that is another one).
VLLM_ANSWER = {
    "id": "cmpl-0", "object": "text_completion", "model": "m",
    "choices": [
        {"index": 1, "text": "!", "logprobs": None, "finish_reason": "length", "stop_reason": None,
         "prompt_logprobs": [None, {"31": {"logprob": -1.25, "rank": 1, "decoded_token": "The"}},
                             {"2770": {"logprob": -7.5, "rank": 12, "decoded_token": " cat"},
                              "1": {"logprob": -0.5, "rank": 1, "decoded_token": "<s>"}}]},
        {"index": 0, "text": "!", "logprobs": None, "finish_reason": "length", "stop_reason": None,
         "prompt_logprobs": [None, {"31": {"logprob": -1.25, "rank": 1, "decoded_token": "The"}},
                             {"17": {"logprob": -0.75, "rank": 1, "decoded_token": " a"}}]},
    ],
    "usage": {"prompt_tokens": 6, "total_tokens": 8, "completion_tokens": 2},
}


def test_request_body_sends_token_ids_and_asks_for_prompt_logprobs():
    body = prompt_logprobs_body("m", [(1, 31, 2770), [1, 31, 17]])
    assert body == {"model": "m", "prompt": [[1, 31, 2770], [1, 31, 17]], "max_tokens": 1, "temperature": 0,
                    "prompt_logprobs": 1}


def test_parsing_reads_the_prompt_tokens_own_logprob_in_prompt_order():
    first, second = by_index(VLLM_ANSWER)
    assert first["index"] == 0 and second["index"] == 1
    # prompt 1 = [1, 31, 2770]: the continuation from position 1 is "The" (-1.25) + " cat" (-7.5),
    # not the top-1 "<s>" (-0.5) listed beside it
    assert prompt_token_logprobs(second, [1, 31, 2770], 1) == [-1.25, -7.5]
    assert sum(prompt_token_logprobs(second, [1, 31, 2770], 2)) == -7.5
    # prompt 0 = [1, 31, 17]; a prompt whose token the entry lacks, or a length mismatch, is no answer
    assert prompt_token_logprobs(first, [1, 31, 17], 2) == [-0.75]
    assert prompt_token_logprobs(first, [1, 31, 99], 2) is None
    assert prompt_token_logprobs(first, [1, 31], 1) is None
    assert prompt_token_logprobs({"index": 0, "text": "x"}, [1, 2], 1) is None  # a server without the extension
    with pytest.raises(SizerError, match="no choices"):
        by_index({"choices": []})


class VLLMStandIn:
    """/v1/models and /v1/completions as vLLM answers them, computed by a transformers model."""

    def __init__(self, model, tokenizer, name: str = "tiny") -> None:
        import torch

        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        stand_in = self

        def logprobs_of(ids: list[int]):
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            return torch.log_softmax(logits, dim=-1)

        def one(prompt, body) -> dict:
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if isinstance(prompt, str) else list(prompt)
            with stand_in.lock:  # one forward at a time, as a single engine step would
                lp = logprobs_of(ids)
            greedy = int(lp[-1].argmax())
            out = {"index": 0, "text": tokenizer.decode([greedy]), "finish_reason": "length", "stop_reason": None,
                   "logprobs": None, "prompt_logprobs": None}
            if body.get("logprobs") is not None:
                n = max(int(body["logprobs"]), 1)
                top = lp[-1].topk(n)
                out["logprobs"] = {"tokens": [tokenizer.decode([greedy])], "token_logprobs": [float(lp[-1, greedy])],
                                   "top_logprobs": [{tokenizer.decode([int(t)]): float(v) for v, t in zip(top.values, top.indices)}],
                                   "text_offset": [0]}
            if body.get("prompt_logprobs") is not None:
                entries = [None]
                for p in range(1, len(ids)):
                    row = lp[p - 1]
                    token = ids[p]
                    entry = {str(token): {"logprob": float(row[token]), "rank": int((row > row[token]).sum()) + 1,
                                          "decoded_token": tokenizer.decode([token])}}
                    for v, t in zip(*row.topk(int(body["prompt_logprobs"]))):
                        entry.setdefault(str(int(t)), {"logprob": float(v), "rank": 1, "decoded_token": tokenizer.decode([int(t)])})
                    entries.append(entry)
                out["prompt_logprobs"] = entries
            return out, len(ids)

        class Handler(BaseHTTPRequestHandler):
            def _send(self, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": name, "object": "model", "max_model_len": 2048}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.bodies.append(body)
                prompt = body["prompt"]
                batch = prompt if isinstance(prompt, list) and prompt and isinstance(prompt[0], list) else [prompt]
                choices, tokens = [], 0
                for i, p in enumerate(batch):
                    choice, n = one(p, body)
                    choices.append({**choice, "index": i})
                    tokens += n
                self._send({"id": "cmpl-x", "object": "text_completion", "model": name, "choices": choices,
                            "usage": {"prompt_tokens": tokens, "completion_tokens": len(batch), "total_tokens": tokens + len(batch)}})

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_trial_on_prompt_logprobs_scores_as_local_transformers(trial_env):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sizer.core.catalog.model_catalog import load_catalog
    from sizer.core.catalog.resolve import locate

    local = locate(load_catalog().find(TINY))
    model = AutoModelForCausalLM.from_pretrained(local.path, dtype=torch.float32).eval()
    stand_in = VLLMStandIn(model, AutoTokenizer.from_pretrained(local.path))
    try:
        task = load_task(BANKING)
        here = run_trial(task, TrialSpec(model=TINY, strategy="few-shot", shots=1, limit=16))
        there = run_trial(task, TrialSpec(model=TINY, strategy="few-shot", shots=1, limit=16,
                                          endpoint=stand_in.url, served_model="tiny"))
    finally:
        stand_in.close()
    assert there.settings["scoring"] == "prompt-logprobs" and there.settings["prompt"] == "token ids"
    batched = [b for b in stand_in.bodies if isinstance(b["prompt"][0], list) and len(b["prompt"]) == len(task.labels)]
    assert len(batched) == 16  # one request per example, every label's tokens in it
    assert all(b["prompt_logprobs"] == 1 and b["max_tokens"] == 1 for b in batched)
    with TrialStore.open() as store:
        a, b = store.done_examples(here.key), store.done_examples(there.key)
    assert set(a) == set(b) and len(a) == 16
    gap = max(abs(x - y) for i in a for x, y in zip(a[i]["scores"], b[i]["scores"]))
    same = sum(a[i]["prediction"] == b[i]["prediction"] for i in a) / len(a)
    assert gap < 1e-3  # fp32 both sides; the local side packs and reuses a KV cache, so not bit-equal
    assert same >= 0.95
