"""Who watches the training loops: a context-scoped observer, importable without torch (cli sets it before any stage runs).

    with observe(my_observer):        # e.g. export.tensorboard_log.LiveLog
        pipeline.run(...)             # models/training.py's loops call current() and report to it

An observer has begin(kind, label, n_groups), step(loss, learning_rates), epoch(row) and end() (TrainingObserver;
models/training.py says when each is called). Only the calling context sees it (contextvars), so threads and
other runs in the same process are unaffected.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Protocol


class TrainingObserver(Protocol):
    """What the training loops tell an observer; every method must return quickly and must not raise."""

    def begin(self, kind: str, label: str, n_groups: int) -> None: ...
    def step(self, loss: float, learning_rates: list[float]) -> None: ...
    def epoch(self, row: dict[str, Any]) -> None: ...
    def end(self) -> None: ...


_observer: contextvars.ContextVar[TrainingObserver | None] = contextvars.ContextVar("nlp_pipeline_training_observer",
                                                                                   default=None)


@contextlib.contextmanager
def observe(observer: TrainingObserver | None) -> Iterator[None]:
    """Within this block the training loops (of process 0) report to `observer` (None: to nobody)."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def current() -> TrainingObserver | None:
    """The observer of this context, or None."""
    return _observer.get()
