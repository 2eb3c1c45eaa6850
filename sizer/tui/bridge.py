"""Core progress events -> Textual messages, posted from worker threads.

`post_message` is thread-safe, so a worker hands `sink_to(app)` to a core function and the App
receives `CoreEvent` messages on its own thread. Progress messages for the same stage or trial
replace each other while queued, so a fast producer cannot flood the UI.
"""

from __future__ import annotations

from textual.message import Message
from textual.message_pump import MessagePump

from sizer.core import events


class CoreEvent(Message):
    """One event from the core, delivered to the App."""

    def __init__(self, event: events.Event) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return (
            isinstance(message, CoreEvent)
            and _progress_key(self.event) is not None
            and _progress_key(self.event) == _progress_key(message.event)
        )


def _progress_key(event: events.Event) -> tuple | None:
    if isinstance(event, events.TrialProgress):
        return ("trial", event.model, event.strategy)
    if isinstance(event, events.Progress):
        return ("progress", event.stage)
    if isinstance(event, events.ModelLoading) and event.total:
        return ("loading", event.model)
    return None


def sink_to(target: MessagePump) -> events.Sink:
    """A core sink that posts every event to `target` as a `CoreEvent`."""

    def sink(event: events.Event) -> None:
        target.post_message(CoreEvent(event))

    return sink
