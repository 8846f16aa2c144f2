"""Learning-rate schedules: LoFTR's (linear warm-up by step, step decay by epoch) and the cosine option."""

import pytest

from lightning_modules.config import TrainingConfig
from lightning_modules.loftr_module import LoFTRModule
from lightning_modules.schedule import OptimizerConfig


def test_warmup_then_decay_at_the_milestones():
    schedule = OptimizerConfig(warmup_steps=100, warmup_ratio=0.1, milestones=(2, 4), gamma=0.5)
    assert schedule.factor(0, 0, 10_000) == pytest.approx(0.1)
    assert schedule.factor(50, 0, 10_000) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule.factor(100, 0, 10_000) == 1.0 and schedule.factor(10_000, 1, 10_000) == 1.0
    assert schedule.factor(10_000, 2, 10_000) == 0.5 and schedule.factor(10_000, 3, 10_000) == 0.5
    assert schedule.factor(10_000, 4, 10_000) == 0.25
    assert schedule.factor(50, 2, 10_000) == pytest.approx(0.55 * 0.5)  # both at once


def test_cosine_after_warmup_ends_at_the_final_ratio_whatever_the_epoch():
    schedule = OptimizerConfig(warmup_steps=100, warmup_ratio=0.1, schedule="cosine", final_ratio=0.02)
    assert schedule.factor(0, 0, 1100) == pytest.approx(0.1)
    assert schedule.factor(100, 0, 1100) == pytest.approx(1.0)
    assert schedule.factor(600, 3, 1100) == pytest.approx(0.02 + 0.98 * 0.5)  # half way: the mean
    assert schedule.factor(1100, 9, 1100) == pytest.approx(0.02)
    assert schedule.factor(2000, 9, 1100) == pytest.approx(0.02)  # past the end (a longer resumed run)
    with pytest.raises(ValueError, match=r"optimizer.schedule='linear' is not one of \['multistep', 'cosine'\]"):
        OptimizerConfig(schedule="linear")


@pytest.mark.parametrize("decay_biases_and_norms", [True, False])
def test_weight_decay_spares_biases_and_norms_only_when_asked(decay_biases_and_norms):
    module = LoFTRModule(TrainingConfig(optimizer=OptimizerConfig(decay_biases_and_norms=decay_biases_and_norms)))
    groups = module.configure_optimizers()["optimizer"].param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    one_dimensional = [p for p in module.parameters() if p.ndim == 1]
    assert one_dimensional and all((id(p) in decayed) == decay_biases_and_norms for p in one_dimensional)
    assert all(id(p) in decayed for p in module.parameters() if p.ndim > 1)
    assert sum(len(g["params"]) for g in groups) == len(list(module.parameters()))
