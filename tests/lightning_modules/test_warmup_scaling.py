"""The warm-up scales with the true batch as LoFTR's train.py scales TRAINER.WARMUP_STEP:
floor(warmup_steps / (true batch / reference batch)), alongside the learning rate; neither scales without
`scale_lr`."""

from types import SimpleNamespace

import pytest

from lightning_modules.config import TrainingConfig
from lightning_modules.loftr_module import LoFTRModule
from lightning_modules.schedule import OptimizerConfig

# (per-device batch, devices, accumulated batches) -> true batch
SETUPS = {64: (8, 4, 2), 8: (8, 1, 1), 128: (16, 2, 4)}


def attached(module: LoFTRModule, per_device: int, devices: int, accumulate: int, step: int = 0) -> LoFTRModule:
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(config=SimpleNamespace(batch_size=per_device)),
                                      world_size=devices, accumulate_grad_batches=accumulate,
                                      estimated_stepping_batches=100_000, global_step=step, current_epoch=0)
    return module


@pytest.mark.parametrize(("true_batch", "expected"), [(64, 1875), (8, 15000), (128, 937)])
def test_warmup_steps_scale_inversely_with_the_true_batch(true_batch, expected):
    settings = OptimizerConfig(warmup_steps=1875, reference_batch_size=64)
    assert settings.scaled_warmup_steps(true_batch) == expected
    assert OptimizerConfig(warmup_steps=1875, scale_lr=False).scaled_warmup_steps(true_batch) == 1875


def test_warmup_is_at_least_one_step_and_zero_stays_off():
    assert OptimizerConfig(warmup_steps=3).scaled_warmup_steps(1024) == 1
    assert OptimizerConfig(warmup_steps=0).scaled_warmup_steps(8) == 0
    assert OptimizerConfig(warmup_steps=0).factor(0, 0, 100, warmup_steps=0) == 1.0


@pytest.mark.parametrize(("true_batch", "warmup"), [(64, 1875), (8, 15000), (128, 937)])
def test_the_module_schedule_warms_up_over_the_scaled_steps(true_batch, warmup):
    """Through configure_optimizers with devices and accumulation: the ratio at step 0, half-way at
    warmup / 2, the full rate from step `warmup` on (and not one step before), lr scaled alongside."""
    config = TrainingConfig(optimizer=OptimizerConfig(lr=6e-3, warmup_steps=1875, warmup_ratio=0.1, milestones=()))
    module = attached(LoFTRModule(config), *SETUPS[true_batch])
    assert module.true_batch_size() == true_batch
    assert module.learning_rate() == pytest.approx(6e-3 * true_batch / 64)
    schedule = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    factor = schedule.lr_lambdas[0]
    for step, expected in [(0, 0.1), (warmup / 2, 0.1 + 0.9 * 0.5), (warmup - 1, 0.1 + 0.9 * (warmup - 1) / warmup),
                           (warmup, 1.0), (warmup + 10, 1.0)]:
        module._trainer.global_step = step
        assert factor(0) == pytest.approx(expected), step
