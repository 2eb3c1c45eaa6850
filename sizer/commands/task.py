"""`sizer task new|check|examples`: write a commented task template; validate and summarise a task;
list the example tasks that come with sizer (the demo among them)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from sizer.core.errors import SizerError
from sizer.core.events import stream_sink
from sizer.core.paths import demo_task, shipped_examples
from sizer.core.task.model import KINDS
from sizer.core.task.spec import load_task, summarize

_HEAD = """\
# A sizer task: what the model must do, with examples of it done right.
# Check it with:  sizer task check {path}
# Top-level keys come first; tables ([target], [budget], [split], [[examples]]) after them.

name = "{name}"
kind = "{kind}"                  # classify | extract | generate
"""

_TAIL = """
# Success: an absolute score (e.g. target = 0.9, written above the tables) or, as here, a margin
# below the best model that fits this machine.
[target]
within = 0.03

[budget]
minutes = 30                        # stop searching after this long
download_gb = 5                     # download at most this much

[split]
test = 0.5                          # share held out for testing (or test_size = N)
seed = 0                            # same seed, same split

# Documents for retrieval (RAG), relative to this file:  documents = ["handbook/"]  (top level)
#
# Examples: inline as below, or from a CSV/TSV/JSONL file next to this one, e.g.
#   [examples]
#   file = "data.csv"
#   text = "message"                # the column with the input
#   {mapping}
#   test_file = "test.csv"          # optional: your own test set, same columns (or a split column
#                                   # with train/test in data.csv); then [split] takes only seed
"""

_BODY = {
    "classify": '''
instruction = "Classify the customer's message as a billing question or a technical problem."
# metric = "accuracy"              # accuracy | macro_f1

# Each label with a one-line description (or a plain list: labels = ["billing", "technical"]).
[labels]
billing = "invoices, charges, refunds and payment methods"
technical = "something in the product does not work"
''',
    "extract": '''
instruction = "Extract the customer's name and the order number from the email, as JSON."
fields = ["name", "order_number"]   # the JSON keys expected
# metric = "field_accuracy"         # per-field exact match
''',
    "generate": '''
instruction = "Write a short subject line for the customer's message."
# metric = "token_f1"               # token_f1 | exact_match
''',
}

_MAPPING = {
    "classify": 'label = "category"               # the column with the label',
    "extract": 'reference = "answer"             # a column with a JSON object of the fields',
    "generate": 'reference = "subject"           # the column with the reference output',
}

_ROWS = {
    "classify": [
        ("I was charged twice for my subscription this month.", 'label = "billing"'),
        ("Can I pay the invoice by bank transfer instead of card?", 'label = "billing"'),
        ("Please refund the order I cancelled last week.", 'label = "billing"'),
        ("Why did my monthly price go up?", 'label = "billing"'),
        ("The app crashes every time I open the settings page.", 'label = "technical"'),
        ("I can't log in, the password reset email never arrives.", 'label = "technical"'),
        ("Exports to PDF come out blank.", 'label = "technical"'),
        ("Sync has been stuck at 50% since yesterday.", 'label = "technical"'),
    ],
    "extract": [
        ("Hi, this is Maria Lopez. Where is order 48213?", '{ name = "Maria Lopez", order_number = "48213" }'),
        ("Order #99120 arrived broken. - Tom Becker", '{ name = "Tom Becker", order_number = "99120" }'),
        ("Jane Smith here, I want to return order 30077.", '{ name = "Jane Smith", order_number = "30077" }'),
        ("Could you resend the invoice for 55410? Thanks, Ali Khan",
         '{ name = "Ali Khan", order_number = "55410" }'),
    ],
    "generate": [
        ("My parcel was due on Monday and still has not arrived.", '"Late parcel"'),
        ("I would like to change the email address on my account.", '"Change account email"'),
        ("The discount code SPRING10 is rejected at checkout.", '"Discount code rejected"'),
        ("Can I upgrade my plan in the middle of the month?", '"Mid-month plan upgrade"'),
    ],
}


def template(kind: str, path: str, name: str) -> str:
    """The commented TOML template for `kind`; it passes `sizer task check` as written."""
    rows = []
    for text, answer in _ROWS[kind]:
        answer = answer if kind == "classify" else f"reference = {answer}"
        rows.append(f"[[examples]]\ntext = {json.dumps(text)}\n{answer}\n")
    return (_HEAD.format(path=path, name=name, kind=kind) + _BODY[kind]
            + _TAIL.format(mapping=_MAPPING[kind]) + "\n" + "\n".join(rows))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("task", help="write or check a task file")
    sub = parser.add_subparsers(dest="task_command", metavar="ACTION", required=True,
                                parser_class=type(parser))
    new = sub.add_parser("new", help="write a commented task template")
    new.add_argument("--kind", choices=KINDS, default="classify")
    new.add_argument("path", metavar="PATH")
    new.set_defaults(func=run_new)
    check = sub.add_parser("check", help="validate a task file and summarise it")
    check.add_argument("path", metavar="PATH", nargs="?")
    check.add_argument("--demo", action="store_true", help="check the built-in demo task instead of PATH")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.add_argument("--tokenizer", metavar="NAME_OR_DIR",
                       help="count tokens with this tokenizer (a local folder or a cached Hub id)")
    check.set_defaults(func=run_check)
    examples = sub.add_parser("examples", help="list the example tasks that come with sizer, with their paths")
    examples.add_argument("--json", action="store_true", help="print them as JSON")
    examples.set_defaults(func=run_examples)


def run_new(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.suffix != ".toml":
        raise SizerError(f"{path}: a task file name ends in .toml")
    text = template(args.kind, str(path), path.stem)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise SizerError(f"{path}: already exists; choose another name or delete it first") from None
    except OSError as exc:
        raise SizerError(f"{path}: cannot write ({exc.strerror})") from None
    print(path)
    print(f"wrote the {args.kind} template; edit it, then run: sizer task check {path}", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace) -> int:
    if bool(args.path) == bool(args.demo):
        raise SizerError("name one task file PATH, or pass --demo (not both)")
    task = load_task(str(demo_task()) if args.demo else args.path, sink=stream_sink())
    summary = summarize(task, _token_counter(args.tokenizer) if args.tokenizer else None)
    if args.tokenizer:
        summary["tokenizer"] = args.tokenizer
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def run_examples(args: argparse.Namespace) -> int:
    """The shipped example tasks (read only: copy one before editing it)."""
    rows = []
    for path in sorted(shipped_examples().glob("*.toml")):
        task = load_task(str(path))
        rows.append({"name": task.name, "kind": task.kind, "demo": path == demo_task(), "path": str(path)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['kind']:<8}  {r['path']}" + ("  (demo)" if r["demo"] else ""))
        print("copy one beside your data before editing it: the installed files are read only", file=sys.stderr)
    return 0


def _token_counter(name: str) -> Callable[[str], int]:
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise SizerError(f"--tokenizer {name}: cannot load it offline ({str(exc).splitlines()[0]})") from None
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _split_from(split: dict[str, Any]) -> str:
    if split["from"] == "test_file":
        return f"test set given by test_file {split['test_file']}"
    if split["from"] == "split column":
        return "given by the examples' split column"
    share = f"test_size {split['test_size']}" if split["test_size"] is not None else f"test {split['test_fraction']:g}"
    return f"drawn ({share}, seed {split['seed']})"


def format_summary(summary: dict[str, Any]) -> str:
    """The plain-text summary `sizer task check` prints."""
    target = summary["target"]
    goal = f"target {target['absolute']}" if target["absolute"] is not None else f"within {target['within']} of the best"
    split = summary["split"]
    lines = [
        f"task {summary['name']} ({summary['kind']}): {summary['examples']} examples, "
        f"metric {summary['metric']}, {goal}",
        f"split: {split['train']} train / {split['test']} test, {_split_from(split)}",
    ]
    if "labels" in summary:
        width = max(len("label"), *(len(k) for k in summary["labels"]))
        lines.append(f"  {'label':<{width}}  total  train   test")
        for label, c in summary["labels"].items():
            lines.append(f"  {label:<{width}}  {c['total']:>5}  {c['train']:>5}  {c['test']:>5}")
    if "fields" in summary:
        lines.append(f"fields: {', '.join(summary['fields'])}")
    for unit, s in summary["lengths"].items():
        lines.append(f"length ({unit}): min {s['min']}, median {s['median']}, mean {s['mean']}, max {s['max']}")
    if summary["documents"]:
        lines.append(f"documents: {', '.join(summary['documents'])}")
    return "\n".join(lines)
