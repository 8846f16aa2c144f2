"""LoFTR's learning-rate schedule: linear warm-up by step, step decay by epoch, linear scaling by batch size."""

import pytest

from lightning_modules.loftr_module import OptimizerConfig


def test_warmup_then_decay_at_the_milestones():
    schedule = OptimizerConfig(warmup_steps=100, warmup_ratio=0.1, milestones=(2, 4), gamma=0.5)
    assert schedule.factor(0, 0) == pytest.approx(0.1)
    assert schedule.factor(50, 0) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule.factor(100, 0) == 1.0 and schedule.factor(10_000, 1) == 1.0
    assert schedule.factor(10_000, 2) == 0.5 and schedule.factor(10_000, 3) == 0.5
    assert schedule.factor(10_000, 4) == 0.25
    assert schedule.factor(50, 2) == pytest.approx(0.55 * 0.5)  # both at once
