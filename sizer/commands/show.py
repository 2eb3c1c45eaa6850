"""`sizer show REPORT`: render a saved TOML report."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sizer.core.report import read_report


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
    name = t["model"].split("/")[-1] + (" (remote)" if t.get("where", "local") != "local" else "")
    return (f"  {name:<28} {t['strategy']:<10} {t['status']:<13} {figure:<22} "
            f"{(f'{speed:.1f}' if speed else '-'):>8} {_gib(peak):>10} {_gib(t.get('predicted_bytes')):>10}")


def _left_out(data: dict[str, Any]) -> list[str]:
    """Candidates the run could not download (budget, disk, offline, refused), with the command."""
    left = [c for c in data.get("candidates", []) if c.get("reason", "").startswith("left out: ")]
    if not left:
        return []
    return (["left out (not downloaded)"]
            + [f"  - {c['model']}: {c['reason'].removeprefix('left out: ')}" for c in left] + [""])


def render(data: dict[str, Any]) -> str:
    task = data["task"]
    rec = data.get("recommendation", {})
    lines = [f"task      {task['name']} ({task['kind']}, {task['examples']} examples, metric {task['metric']})",
             f"hardware  {data['hardware'].get('name', '')}", "",
             f"  {'model':<28} {'strategy':<10} {'status':<13} {'metric (95% CI)':<22} {'ex/s':>8} {'peak':>10} {'predicted':>10}"]
    lines += [_trial_row(t) for t in data.get("trials", [])]
    lines.append("")
    lines += _left_out(data)
    if not rec:
        lines.append("no recommendation yet: the run did not finish (continue it with sizer run --resume)")
    elif rec.get("met"):
        m = rec["metric"]
        lines.append(f"recommendation  {rec['model']} ({rec['precision']}) with {rec['strategy']}: "
                     f"{m['name']} {m['value']:.3f} (95% CI {m['low']:.3f}-{m['high']:.3f}), {rec['target']}")
        peak = rec.get("memory", {}).get("peak_bytes")
        lines.append(f"  here: peak memory {_gib(peak)}, {rec.get('speed', {}).get('examples_per_s', 0):.1f} examples/s")
        prof = rec.get("on_profile")
        if prof:
            speed = f", ~{prof['decode_tokens_per_s']:.0f} tokens/s decode" if prof.get("decode_tokens_per_s") else ""
            lines.append(f"  on {prof['profile']}: {prof['fit']}, needs {_gib(prof['predicted_bytes'])}{speed} (estimated)")
    else:
        lines.append(f"no model meets the {rec['target']}")
    if rec:
        lines += ["", "why"] + [f"  - {r}" for r in rec.get("reasons", [])]
        lines += ["", "next steps"] + [f"  - {s}" for s in rec.get("next_steps", [])]
    return "\n".join(lines) + "\n"
