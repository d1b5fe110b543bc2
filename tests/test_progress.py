"""The CLI's progress display without a terminal: plain lines, and a stage run again starts afresh."""

from __future__ import annotations

import logging

from dleem import progress


def test_plain_lines_and_a_rerun_stage_starts_its_clock_again(monkeypatch, caplog):
    clock = iter([0.0, 10.0, 20.0, 100.0, 110.0, 120.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "interactive", lambda: False)
    caplog.set_level(logging.INFO, logger="dleem.progress")
    with progress.ProgressDisplay(interval_s=0.0) as show:
        for done in (0, 5, 10):   # first fold: 0 s, 10 s, 20 s
            show("train", done, 10)
        for done in (0, 5, 10):   # second fold starts at 100 s
            show("train", done, 10)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[1] == "train: 5/10 (50 %), 10s elapsed, about 10s left"
    assert lines[-2] == "train: 5/10 (50 %), 10s elapsed, about 10s left"  # not 110 s
    assert lines[-1] == "train: 10/10 (100 %), 20s elapsed"


def test_quiet_draws_nothing(monkeypatch, caplog):
    monkeypatch.setattr(progress, "interactive", lambda: False)
    caplog.set_level(logging.INFO, logger="dleem.progress")
    with progress.ProgressDisplay(quiet=True) as show:
        show("upscale x4", 3, 10)
    assert not caplog.records
