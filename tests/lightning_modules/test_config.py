"""The training schema: the module's part (TrainingConfig) declared once, inside the whole (TrainConfig), and
handed to the module whole, field by field."""

from dataclasses import asdict, fields

from lightning_modules.config import TrainConfig, TrainingConfig, training_config
from lightning_modules.schedule import OptimizerConfig

# what checkpoints store under hyper_parameters.training (models/checkpoint.py reads its "model")
TRAINING_KEYS = ["model", "loss", "optimizer", "validation", "init_checkpoint", "trust_init_checkpoint",
                 "freeze_backbone", "max_nonfinite_steps"]


def test_the_module_gets_every_training_field_of_the_whole_configuration():
    config = TrainConfig(optimizer=OptimizerConfig(lr=1e-3), init_checkpoint="a.ckpt", trust_init_checkpoint=True,
                         freeze_backbone=True, max_nonfinite_steps=3, seed=1)
    training = training_config(config)
    assert type(training) is TrainingConfig and list(asdict(training)) == TRAINING_KEYS
    assert asdict(training) == {key: value for key, value in asdict(config).items() if key in TRAINING_KEYS}
    assert training.optimizer.lr == 1e-3 and training.freeze_backbone and training.max_nonfinite_steps == 3


def test_each_field_is_declared_once():
    """TrainConfig inherits the module's fields and declares only its own: no copy to keep in step."""
    assert issubclass(TrainConfig, TrainingConfig)
    assert not set(TrainConfig.__annotations__) & {part.name for part in fields(TrainingConfig)}
