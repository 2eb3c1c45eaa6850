"""Prompts for a task: the shared prefix (instruction + demonstrations), each example's own part,
and, for classify tasks, the label continuations to score.

Chat models get their chat template; base models a plain prompt. The prefix is the same token ids
for every example, which is what lets the backend compute its KV cache once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

_SENTINEL = "\x00SIZER_EXAMPLE\x00"


@dataclass(frozen=True)
class PromptPlan:
    """Token ids of the shared prefix, each example's part, and the label continuations."""

    prefix: tuple[int, ...]
    parts: tuple[tuple[int, ...], ...]          # one per example, after the prefix
    continuations: tuple[tuple[int, ...], ...]  # one per label (classify), after an example's part
    prefix_text: str
    part_template: str                          # the example's part with {text} in place
    delimiter: str                              # text between an example's part and its answer

    def digest(self) -> str:
        """A short hash of everything that shapes the prompt (for the trial cache key)."""
        blob = json.dumps([self.prefix_text, self.part_template, self.delimiter, self.continuations])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe_labels(labels: Sequence[str], descriptions: dict[str, str]) -> str:
    lines = [f"- {label}: {descriptions[label]}" if descriptions.get(label) else f"- {label}" for label in labels]
    return "\n".join(lines)


def system_text(task: Any) -> str:
    """The instruction block every prompt of the task starts with."""
    text = task.instruction.strip()
    if task.kind == "classify":
        text += "\n\nLabels:\n" + describe_labels(task.labels, task.label_descriptions)
        text += "\n\nAnswer with the label only."
    elif task.kind == "extract":
        text += "\n\nAnswer with one JSON object with the keys: " + ", ".join(task.fields) + "."
    return text


def answer_text(task: Any, example: Any) -> str:
    """What a demonstration's answer looks like."""
    if task.kind == "classify":
        return example.label
    if task.kind == "extract":
        return json.dumps(example.reference, ensure_ascii=False)
    return str(example.reference)


def chat_messages(task: Any, demos: Sequence[Any]) -> list[dict[str, str]]:
    """The chat up to the example's turn: the instruction as the system message, then each
    demonstration as a user turn and its answer as the assistant's."""
    messages = [{"role": "system", "content": system_text(task)}]
    for demo in demos:
        messages.append({"role": "user", "content": demo.text})
        messages.append({"role": "assistant", "content": answer_text(task, demo)})
    return messages


def render(task: Any, demos: Sequence[Any], apply_chat: Callable[[list[dict]], str] | None) -> tuple[str, str, str]:
    """(prefix text, example part template with {text}, delimiter before the answer)."""
    if apply_chat is not None:
        rendered = apply_chat(chat_messages(task, demos) + [{"role": "user", "content": _SENTINEL}])
        before, after = rendered.split(_SENTINEL)
        return before, "{text}" + after, ""
    shots = "".join(f"Input: {d.text}\nAnswer: {answer_text(task, d)}\n\n" for d in demos)
    return system_text(task) + "\n\n" + shots, "Input: {text}\nAnswer:", " "


def plan(
    task: Any,
    demos: Sequence[Any],
    examples: Sequence[Any],
    encode: Callable[[str], list[int]],
    encode_prefix: Callable[[str], list[int]],
    apply_chat: Callable[[list[dict]], str] | None,
) -> PromptPlan:
    """Render and tokenize the prompts of `examples` after `demos`."""
    prefix_text, template, delimiter = render(task, demos, apply_chat)
    parts = tuple(tuple(encode(template.replace("{text}", e.text, 1))) for e in examples)
    continuations: tuple[tuple[int, ...], ...] = ()
    if task.kind == "classify":
        continuations = tuple(tuple(encode(delimiter + label)) for label in task.labels)
    return PromptPlan(
        prefix=tuple(encode_prefix(prefix_text)),
        parts=parts,
        continuations=continuations,
        prefix_text=prefix_text,
        part_template=template,
        delimiter=delimiter,
    )
