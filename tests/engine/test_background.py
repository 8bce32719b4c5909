"""The render kernels get ready in a background thread beside the model's load; what that thread warns must
not disturb the process's warnings (catch_warnings there, overlapping one in another thread, once left a
recorder installed for good, and re-emitting recorded warnings then grew without end)."""

from __future__ import annotations

import threading
import warnings

import pytest

from densevid import DensevidWarning
from densevid.pipeline.engine._estimator import _Background


def test_background_warnings_leave_the_process_warning_machinery_alone(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kwargs: shown.append(str(message)))
    entered, release = threading.Event(), threading.Event()

    def prepare():
        entered.set()
        release.wait(10)
        warnings.warn("from the background", DensevidWarning)

    background = _Background(prepare)
    assert entered.wait(10)
    # entered after the background thread started and left after it ended: the model's load overlaps so
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        release.set()
        background.result()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("afterwards", DensevidWarning)
    assert shown[-1] == "afterwards"  # the process's display is still the one it had


def test_background_errors_reach_every_caller():
    def prepare():
        raise RuntimeError("kernels broke")

    background = _Background(prepare)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="^kernels broke$"):
            background.result()
