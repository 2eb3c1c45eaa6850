"""Downloads inside a run: candidates that fit this machine but are not in the Hugging Face cache
are fetched before the walk, in the order the walk reaches them (the reference first), within the
run's download budget and the free disk. A candidate left out (the budget, the disk,
`HF_HUB_OFFLINE`, a Hub refusal) keeps a reason that names the `sizer download` command that
would fetch it, and the walk goes on with what it has.

Sizes are decimal, as the Hub shows them: a budget of 5 GB is 5 * 10**9 bytes.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Sequence

from sizer.core.catalog.model_catalog import ModelEntry
from sizer.core.download.fetch import fetch
from sizer.core.download.plan import DownloadPlan, check_disk, plan_download
from sizer.core.download.progress import human_bytes
from sizer.core.download.hub_requests import HubUnreachable, fetch_file
from sizer.core.errors import SizerError
from sizer.core.events import DownloadFinished, DownloadStarted, Message, Sink, null_sink
from sizer.core.catalog.hub import hub_offline

GB = 10**9


def fetch_command(model: str) -> str:
    """The command that downloads `model` by hand."""
    return f"sizer download {model}"


def budget_bytes(gigabytes: float) -> int:
    """A budget in decimal GB (the task's `[budget] download_gb`, `--download-budget`) in bytes."""
    return int(round(gigabytes * GB))


def fetch_models(entries: Sequence[ModelEntry], budget: int | None = None, sink: Sink = null_sink,
                 cancel: threading.Event | None = None) -> dict[str, str]:
    """Download each entry's missing files in the order given, while the sum stays within `budget`
    bytes (None: no limit) and fits on the disk. Returns model id -> why it was left out, for those
    not fetched; every other entry is in the cache afterwards. A stopped download raises
    DownloadCancelled (nothing partial is left)."""
    if not entries:
        return {}
    if hub_offline():
        names = ", ".join(e.id for e in entries)
        sink(Message(f"HF_HUB_OFFLINE is set: {len(entries)} model(s) not in the Hugging Face cache left out "
                     f"({names}); unset it to let sizer download them", "warning"))
        return {e.id: "HF_HUB_OFFLINE is set" for e in entries}
    left_out: dict[str, str] = {}
    spent = 0
    for i, entry in enumerate(entries):
        try:
            why = _fetch_one(entry, None if budget is None else budget - spent, budget, sink, cancel)
        except HubUnreachable as exc:
            rest = entries[i:]
            sink(Message(f"{exc}; left out: {', '.join(e.id for e in rest)}", "warning"))
            left_out.update({e.id: str(exc) for e in rest})
            break
        if isinstance(why, int):
            spent += why
        else:
            left_out[entry.id] = why
    return left_out


def _fetch_one(entry: ModelEntry, left: int | None, budget: int | None, sink: Sink,
               cancel: threading.Event | None) -> int | str:
    """Bytes fetched for `entry`, or the reason it was not (already reported to the sink)."""
    command = fetch_command(entry.id)
    try:
        plan = plan_download(entry, sink=sink)
        need = plan.missing
        if left is not None and need > left:
            why = (f"{human_bytes(need)} to download, more than the {human_bytes(left)} left of the run's "
                   f"download budget of {human_bytes(budget or 0)}")
            sink(DownloadFinished(entry.id, "left-out", why, command))
            return why
        check_disk(plan)
        plan = _config_first(plan)
        sink(DownloadStarted(entry.id, need))
        fetch(plan, sink, cancel)
    except HubUnreachable:
        raise
    except SizerError as exc:
        status = "left-out" if "disk space" in str(exc) else "failed"
        sink(DownloadFinished(entry.id, status, str(exc), command))
        return str(exc)
    sink(DownloadFinished(entry.id, "done"))
    return need


def _config_first(plan: DownloadPlan) -> DownloadPlan:
    """Fetch config.json (a few KB) before anything else: a gated, private or refused repo fails
    there with its one-line reason before a download is announced. The plan left has it cached."""
    target = plan.target
    if plan.gguf or target.cached:  # a GGUF plan's target is the weights file itself
        return plan
    fetch_file(target.repo, target.filename, target.revision)
    done = replace(target, cached=True)
    return replace(plan, target=done, files=tuple(done if f == target else f for f in plan.files))


def walk_order(cands: Sequence[Any]) -> list[Any]:
    """Candidates in the order the ladder walk reaches them: the reference (the largest) first,
    then the top of each ladder (causal, encoder), then each ladder's sizes in the order a
    bisection may probe them, level by level (sizer.core.decide.walk walks each ladder that way)."""
    if not cands:
        return []
    ladders = [sorted((c for c in cands if c.entry.kind == kind), key=lambda c: -c.entry.params)
               for kind in ("causal", "encoder")]
    ladders = [ladder for ladder in ladders if ladder]
    order = [max(cands, key=lambda c: c.entry.params)]
    order += [ladder[0] for ladder in ladders]
    for ladder in ladders:
        order += [ladder[i] for i in _bisection_order(len(ladder))]
    others = [c for c in cands if c.entry.kind not in ("causal", "encoder")]
    seen: set[int] = set()
    return [c for c in order + others if not (id(c) in seen or seen.add(id(c)))]


def _bisection_order(size: int) -> list[int]:
    """Indices 1..size-1 (index 0, the top, is tried first) in the order a bisection may probe
    them: the middle, then the middles of both halves (the smaller sizes' half first), and so on."""
    order, spans = [], [(1, size - 1)]
    while spans:
        following = []
        for lo, hi in spans:
            if lo <= hi:
                mid = (lo + hi) // 2
                order.append(mid)
                following += [(mid + 1, hi), (lo, mid - 1)]
        spans = following
    return order


def fetch_missing(cands: Sequence[Any], budget: int | None, sink: Sink = null_sink,
                  cancel: threading.Event | None = None) -> list[Any]:
    """Run candidates (sizer.core.decide.walk.Candidate) with the missing ones that fit this machine
    fetched in walk order within `budget` bytes; those left out keep the reason and the command.
    A stopped download raises DownloadCancelled."""
    local = [c for c in cands if c.where == "local" and c.fit != "no"]
    missing = [c for c in walk_order(local) if not c.cached]
    left_out = fetch_models([c.entry for c in missing], budget, sink, cancel)
    wanted = {c.entry.id for c in missing}
    out = []
    for c in cands:
        if c.entry.id not in wanted or c.where != "local":
            out.append(c)
        elif c.entry.id in left_out:
            reason = f"left out: {left_out[c.entry.id]}; fetch it with `{fetch_command(c.entry.id)}`"
            out.append(replace(c, reason=reason))
        else:
            out.append(replace(c, cached=True, usable=True, reason="downloaded for this run"))
    return out
