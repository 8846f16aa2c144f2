"""Every logger=OPTION of configs/logger/ works: a few training steps write their logs where the README says
(wandb offline, csv, tensorboard) or none at all, and the checkpoint is written in each case."""

import csv
from pathlib import Path

import pytest

import train as train_script
from tests.train_helpers import config_of, small

LOG_FOLDERS = ("wandb", "csv", "tensorboard", "lightning_logs")


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """wandb with nothing leaving the machine: offline, no login, its settings and cache in tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(home))
    for key in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(home / key.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")


def run(world: Path, run_dir: Path, logger: str) -> dict:
    return train_script.train(config_of(small(world, run_dir, f"logger={logger}", "trainer.max_epochs=1")))


def test_wandb_offline_writes_an_offline_run(world, tmp_path, offline_wandb):
    summary = run(world, tmp_path / "run", "wandb")
    assert summary["global_step"] == 4
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "run").rglob("*"))
    assert list(runs[0].glob("*.wandb")), sorted(p.name for p in runs[0].iterdir())  # the run's log itself
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_csv_writes_train_loss_rows(world, tmp_path):
    run(world, tmp_path, "csv")
    with open(tmp_path / "csv" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    losses = [row["train/loss"] for row in rows if row.get("train/loss")]
    assert len(losses) == 4 and all(float(loss) > 0 for loss in losses)  # log_every_n_steps=1, 4 steps
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_tensorboard_writes_the_train_loss_scalar(world, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(world, tmp_path, "tensorboard")
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    assert "train/loss" in accumulator.Tags()["scalars"]
    steps = [event.step for event in accumulator.Scalars("train/loss")]
    assert len(steps) == 4 and steps == sorted(steps)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_none_writes_no_log_folder(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Lightning's default folder would appear in the working directory
    summary = run(world, tmp_path / "run", "none")
    assert summary["global_step"] == 4
    assert not [name for name in LOG_FOLDERS if (tmp_path / "run" / name).exists() or (tmp_path / name).exists()]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
