"""`sizer show REPORT`: render a saved TOML report."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sizer.core.results.report import read_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="render a saved report")
    p.add_argument("report", help="TOML report written by sizer run --out")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    data = read_report(args.report)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(data))
    return 0


def _gib(n: float | None) -> str:
    return f"{n / 2**30:.2f} GiB" if n else "-"


def _trial_row(t: dict[str, Any]) -> str:
    m = t.get("metric")
    figure = f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})" if m else "-"
    speed = t.get("speed", {}).get("examples_per_s")
    peak = t.get("memory", {}).get("peak_bytes")
    name = t["model"].split("/")[-1] + (f" {t['quant']}" if t.get("quant") else "")
    name += " (remote)" if t.get("where", "local") != "local" else ""
    return (f"  {name:<28} {t['strategy']:<10} {t['status']:<13} {figure:<22} "
            f"{(f'{speed:.1f}' if speed else '-'):>8} {_gib(peak):>10} {_gib(t.get('predicted_bytes')):>10}")


def _left_out(data: dict[str, Any]) -> list[str]:
    """Candidates the run could not download (budget, disk, offline, refused), with the command."""
    left = [c for c in data.get("candidates", []) if c.get("reason", "").startswith("left out: ")]
    if not left:
        return []
    return (["left out (not downloaded)"]
            + [f"  - {c['model']}: {c['reason'].removeprefix('left out: ')}" for c in left] + [""])


def _rungs(rungs: list[dict[str, Any]]) -> list[str]:
    """The quantization rungs walked: metric, loss against the best precision, memory."""
    if not rungs:
        return []
    lines = ["quantization rungs (same examples, same strategy; loss against the best precision, paired)",
             f"  {'model':<28} {'quant':<8} {'status':<13} {'metric (95% CI)':<22} {'loss':>7} {'bound':>7} "
             f"{'file':>9} {'llama.cpp':>10}  verdict"]
    for r in rungs:
        m = r.get("metric")
        figure = f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})" if m else "-"
        loss = f"{r['loss']:+.3f}" if r.get("loss") is not None else "-"
        bound = f"{r['loss_bound']:+.3f}" if r.get("loss_bound") is not None and not r.get("best") else "-"
        verdict = "best precision" if r.get("best") else ("kept" if r.get("kept") else (r.get("reason") or "not kept"))
        size = f"{r['file_bytes'] / 1e6:.0f} MB" if r.get("file_bytes") else "-"
        lines.append(f"  {r['model'].split('/')[-1]:<28} {r['quant']:<8} {r['status']:<13} {figure:<22} {loss:>7} "
                     f"{bound:>7} {size:>9} {_gib(r.get('llamacpp_bytes')):>10}  {verdict}")
    return lines + [""]


def _on_engine(rec: dict[str, Any]) -> list[str]:
    est = rec.get("on_engine") or {}
    if not est or "predicted_bytes" not in est:
        return []
    speed = f", ~{est['decode_tokens_per_s']:.0f} tokens/s decode" if est.get("decode_tokens_per_s") else ""
    return [f"  served by {rec.get('engine') or est['engine']} at {rec.get('quant') or est.get('dtype', '')}: "
            f"{est['fit']} here, needs {_gib(est['predicted_bytes'])}{speed} (estimated)"]


def _serve(rec: dict[str, Any]) -> list[str]:
    """The command that serves the pick, and the Modelfile or Python it needs."""
    lines = []
    if rec.get("serve"):
        lines += ["", "serve it"] + [f"  {c}" for c in rec["serve"]]
    if rec.get("modelfile"):
        lines += ["", "Modelfile (for ollama create)"] + [f"  {x}" for x in rec["modelfile"].splitlines()]
    if rec.get("python"):
        lines += ["", "load it in Python"] + [f"  {x}" if x else "" for x in rec["python"].splitlines()]
    return lines


def render(data: dict[str, Any]) -> str:
    task = data["task"]
    rec = data.get("recommendation", {})
    lines = [f"task      {task['name']} ({task['kind']}, {task['examples']} examples, metric {task['metric']})",
             f"hardware  {data['hardware'].get('name', '')}", "",
             f"  {'model':<28} {'strategy':<10} {'status':<13} {'metric (95% CI)':<22} {'ex/s':>8} {'peak':>10} {'predicted':>10}"]
    lines += [_trial_row(t) for t in data.get("trials", [])]
    lines.append("")
    lines += _left_out(data)
    lines += _rungs(data.get("rungs", []))
    if not rec:
        lines.append("no recommendation yet: the run did not finish (continue it with sizer run --resume)")
    elif rec.get("met"):
        m = rec["metric"]
        engine = f", {rec['engine']}" if rec.get("engine") else ""
        lines.append(f"recommendation  {rec['model']} ({rec['precision']}{engine}) with {rec['strategy']}: "
                     f"{m['name']} {m['value']:.3f} (95% CI {m['low']:.3f}-{m['high']:.3f}), {rec['target']}")
        peak = rec.get("memory", {}).get("peak_bytes")
        lines.append(f"  here: peak memory {_gib(peak)}, {rec.get('speed', {}).get('examples_per_s', 0):.1f} examples/s"
                     " (measured in the trial)")
        lines += _on_engine(rec)
        prof = rec.get("on_profile")
        if prof:
            speed = f", ~{prof['decode_tokens_per_s']:.0f} tokens/s decode" if prof.get("decode_tokens_per_s") else ""
            lines.append(f"  on {prof['profile']}: {prof['fit']}, needs {_gib(prof['predicted_bytes'])}{speed} (estimated)")
        lines += _serve(rec)
    else:
        lines.append(f"no model meets the {rec['target']}")
    if rec:
        lines += ["", "why"] + [f"  - {r}" for r in rec.get("reasons", [])]
        lines += ["", "next steps"] + [f"  - {s}" for s in rec.get("next_steps", [])]
    return "\n".join(lines) + "\n"
