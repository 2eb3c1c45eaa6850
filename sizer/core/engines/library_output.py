"""What third-party libraries print: kept off stderr (and so off the JSON progress stream), and their
progress bars turned into sizer's own events while a model loads.

sizer reports its work through `events`; the libraries' progress bars (tqdm: transformers'
"Converting and de-quantizing GGUF tensors", huggingface_hub's downloads), their logging advice and
Python warnings would only interleave with those lines, carriage returns and all. `--debug` keeps
them. A tqdm bar started on a thread inside `report_bars(...)` is not printed: its counts go to
the caller instead (that is the "own progress" of a model load, where the library offers one).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import warnings
from typing import Callable, Iterator

LIBRARY_LOGGERS = ("transformers", "huggingface_hub", "sentence_transformers", "accelerate", "peft",
                   "torch", "gguf", "urllib3", "httpx", "filelock")

BarReport = Callable[[int, int, str], None]  # (done, total, what) of one library progress bar

_local = threading.local()
_show_bars = False  # --debug: bars inside `report_bars` still print
_transformers_hooked = False


def silence_libraries(debug: bool = False) -> None:
    """Keep libraries' progress bars, logging below errors and Python warnings off stderr, unless
    `debug`. Call it before the libraries are imported: tqdm and huggingface_hub read their
    switches (TQDM_DISABLE, HF_HUB_DISABLE_PROGRESS_BARS) from the environment at import; the ones
    already imported are switched off through their own functions."""
    global _show_bars
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _show_bars = debug
    if debug:
        return
    for name, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TQDM_DISABLE", "1"),
                        ("TRANSFORMERS_VERBOSITY", "error"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")):
        os.environ.setdefault(name, value)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


@contextlib.contextmanager
def report_bars(report: BarReport) -> Iterator[None]:
    """While inside, tqdm bars started on this thread print nothing (unless `--debug`) and call
    `report(done, total, what)` as they advance (tqdm itself throttles its updates to one per
    0.1 s). Other threads' bars are untouched."""
    _hook_tqdm()
    if "transformers" in sys.modules:  # else its loaders hook it once they import it
        hook_transformers_bars()
    previous = getattr(_local, "report", None)
    _local.report = report
    try:
        yield
    finally:
        _local.report = previous


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _hook_tqdm() -> None:
    """Wrap tqdm's constructor, `update` and `close` once per process; the wrappers only act on a
    thread inside `report_bars`, so every other bar behaves exactly as before."""
    try:
        from tqdm import std
    except ImportError:
        return
    bar = std.tqdm
    if getattr(bar, "_sizer_hooked", False):
        return
    init, update, close = bar.__init__, bar.update, bar.close

    def hooked_init(self, *args, **kwargs) -> None:
        report = getattr(_local, "report", None)
        if report is not None and not _show_bars and len(args) < 5:  # `file` is the fifth positional parameter
            kwargs.update(disable=False, file=_Discard())
        init(self, *args, **kwargs)
        self._sizer_report = report

    def hooked_update(self, n: float | None = 1) -> bool | None:
        shown = update(self, n)
        _tell(self)
        return shown

    def hooked_close(self) -> None:
        _tell(self)
        close(self)

    bar.__init__, bar.update, bar.close = hooked_init, hooked_update, hooked_close
    bar._sizer_hooked = True


def hook_transformers_bars() -> None:
    """transformers hands out a do-nothing bar while its progress bars are off ("Loading weights");
    on a reporting thread, have it make a real (hooked, silent) one instead. Once per process;
    the transformers loaders call it, so an engine that never uses transformers (llama.cpp, a
    server) never imports it (1.6 s and ~100 MB here)."""
    global _transformers_hooked
    if _transformers_hooked:
        return
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    _transformers_hooked = True
    set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # transformers >= 5
    if set_hook is None:
        return
    from tqdm.auto import tqdm

    previous = set_hook(None)

    def hook(factory, args, kwargs):
        if getattr(_local, "report", None) is not None:
            return tqdm(*args, **kwargs)
        return previous(factory, args, kwargs) if previous else factory(*args, **kwargs)

    set_hook(hook)


def _tell(bar) -> None:
    report = getattr(bar, "_sizer_report", None)
    if report is not None and not getattr(bar, "disable", True) and bar.total:
        report(int(bar.n), int(bar.total), str(bar.desc or "").rstrip(".: "))
