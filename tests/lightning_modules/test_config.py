"""The training schema: the module's part (TrainingConfig) declared once, inside the whole (TrainConfig), and
handed to the module whole, field by field."""

from dataclasses import asdict, fields
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from data.megadepth import MegaDepthConfig
from lightning_modules.config import TrainConfig, TrainingConfig, register_configs, training_config
from lightning_modules.schedule import OptimizerConfig
from tests.train_helpers import TRAINING_KEYS

ROOT = Path(__file__).resolve().parents[2]


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


def data_entries(*overrides: str) -> dict[str, dict[str, MegaDepthConfig]]:
    """Each split's entries, {name: typed entry} (every field, defaults included), as train.py composes them."""
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        data = OmegaConf.to_object(compose("train", overrides=["world.root=/W", *overrides]).data)
    return {split: {name: MegaDepthConfig(**{key: tuple(value) if isinstance(value, list) else value
                                             for key, value in entry.items() if key != "type"})
                    for name, entry in data.entries(split).items()} for split in ("train", "val", "test")}


def test_the_main_job_trains_and_validates_on_the_world_as_before():
    """The default experiment's entries: the world's own 640 px in 256x192 windows, every overlap."""
    common = dict(root="/W", longer_side=640, divisible_by=32, pad_to_square=False, depth_pad_size=640)
    assert data_entries() == {
        "train": {"synthetic": MegaDepthConfig(scene_list="/W/train.txt", crop_size=(256, 192), **common)},
        "val": {"synthetic": MegaDepthConfig(scene_list="/W/val.txt", **common)},
        "test": {}}


def test_an_override_changes_one_field_of_an_entry_named_by_its_data_config():
    before = data_entries("experiment=loftr_megadepth", "data.root=/D")
    after = data_entries("experiment=loftr_megadepth", "data.root=/D", "data.train.megadepth.longer_side=160")
    assert list(after["train"]) == ["megadepth"] and after["train"]["megadepth"].longer_side == 160
    assert asdict(after["train"]["megadepth"]) == {**asdict(before["train"]["megadepth"]), "longer_side": 160}
    assert after["val"] == before["val"]


def test_an_entry_set_to_null_is_left_out_and_added_ones_follow_in_order():
    entries = data_entries("data.train.more={type:megadepth,root:/M}", "data.train={last:{type:megadepth,root:/L}}",
                           "data.val.synthetic=null")
    assert list(entries["train"]) == ["synthetic", "more", "last"] and entries["train"]["more"].root == "/M"
    assert entries["val"] == {}
