"""What a trial is asked (`TrialSpec`) and what it gives back (`TrialResult`): plain data that the
CLI, the app, the walk and reports share without importing the trial machinery (engines, torch).

`TrialResult.per_example` holds each test example's share of the metric, computed once by
`sizer.core.trials.scoring.example_scores` when the trial scores; the walk's paired comparisons and
reports read it from here rather than scoring again."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sizer.core.trials.scoring import Metric


@dataclass(frozen=True)
class TrialSpec:
    model: str
    strategy: str = "few-shot"
    shots: int | None = None          # per label (classify) or in all (extract, generate); None = auto
    limit: int | None = None          # score at most this many test examples (stratified)
    device: str | None = None
    dtype: str | None = None
    seed: int | None = None
    encoder_scoring: str = "centroid"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    stop_below: float | None = None   # stop early once the metric's upper bound is below this
    budget_s: float | None = None     # fine-tune: training wall-clock budget; None = 2 min CPU, 10 min GPU
    learning_curve: bool | None = None  # fine-tune: also train on 25%/50%; None = encoders only
    contrastive: bool | None = None   # encoder fine-tune: SetFit-style tuning first; None = if the budget allows
    endpoint: str | None = None       # an OpenAI-compatible server (".../v1") instead of local files
    served_model: str | None = None   # the model's name on that server (default: the catalog id)
    endpoint_api: str | None = None   # "completions" (default) or "chat", for extract/generate
    endpoint_concurrency: int | None = None
    endpoint_api_key_env: str | None = None
    serve: str | None = None          # start a managed server of this engine ("vllm", "llama.cpp") for the trial
    managed: str | None = None        # set by the managed server: its stable description (the URL's port is not)
    engine: str = ""                  # the engine it runs on (sizer.core.engines); "": openai with an endpoint, else transformers
    quant: str = ""                   # llama.cpp file type, e.g. "Q4_1": that GGUF rung of the model; "" = its own file

    def __post_init__(self) -> None:
        if not self.engine:
            object.__setattr__(self, "engine", "openai" if self.endpoint else "transformers")


@dataclass
class TrialResult:
    model: str
    revision: str | None
    strategy: str
    status: str
    metric: Metric
    settings: dict[str, Any]
    split: dict[str, int]
    speed: dict[str, float]
    memory: dict[str, Any]
    other_metrics: dict[str, Metric] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    key: str = ""
    per_example: dict[str, float] = field(default_factory=dict, repr=False)  # example id -> its share of the metric

    def to_dict(self) -> dict[str, Any]:
        """The result as `sizer trial --json` prints it (per-example scores stay in the trial cache)."""
        data = asdict(self)
        data.pop("per_example")
        return data
