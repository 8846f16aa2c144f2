"""Training runs that are split across processes or across interruptions see the same data as one straight
run: 2 DDP processes share an epoch's draw (each pair once, half the steps each), and a run stopped at any
step and resumed from last.ckpt ends bitwise equal to the uninterrupted run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train as train_script
from lightning_modules.loftr_module import LoFTRModule
from tests.helpers import run_here
from tests.train_helpers import ROOT, config_of, small

# train.py with the training draws recorded: every dataset index the training loader reads, and the final
# step, one file per rank. Lightning starts the second DDP process by running this same script again.
RECORDING_TRAIN = """
import json, os
from pathlib import Path

import torch.utils.data

from lightning_modules.loftr_module import LoFTRModule

drawn = []
read = torch.utils.data.ConcatDataset.__getitem__  # the training loader's dataset (evaluation reads its own)


def recording(self, index):
    drawn.append(int(index))
    return read(self, index)


def on_train_end(self):
    record = {"drawn": drawn, "global_step": self.global_step, "world_size": self.trainer.world_size}
    (Path(os.environ["DRAWN_DIR"]) / f"rank{self.global_rank}.json").write_text(json.dumps(record))


torch.utils.data.ConcatDataset.__getitem__ = recording
LoFTRModule.on_train_end = on_train_end
# train.py as `python train.py` runs it (Hydra finds configs/ beside it), with sys.argv[0] still this script
train_py = str(Path(os.environ["PYTHONPATH"]) / "train.py")
exec(compile(Path(train_py).read_text(), train_py, "exec"), {"__name__": "__main__", "__file__": train_py})
"""


def recorded_run(world: Path, folder: Path, monkeypatch, *extra: str, processes: int = 1) -> list[dict]:
    """The recording train.py run from the repository: in this process for one process, else in one of its
    own that starts the others."""
    script = folder / "recording_train.py"
    folder.mkdir(parents=True)
    script.write_text(RECORDING_TRAIN)
    args = [str(script), *small(world, folder / "run", *extra), f"hydra.run.dir={folder / 'run'}"]  # Hydra's
    # record there too, not in the repository's outputs/
    env = dict(DRAWN_DIR=str(folder), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    if processes == 1:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            # the script replaces both; undone after the run
            patch.setattr(torch.utils.data.ConcatDataset, "__getitem__", torch.utils.data.ConcatDataset.__getitem__)
            patch.setattr(LoFTRModule, "on_train_end", LoFTRModule.on_train_end)
            run = run_here(args, ROOT)
    else:
        run = subprocess.run([sys.executable, *args, "trainer=ddp", "trainer.accelerator=cpu",
                              f"trainer.devices={processes}"], cwd=ROOT, env={**os.environ, **env},
                             capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    return [json.loads(path.read_text()) for path in sorted(folder.glob("rank*.json"))]


def test_two_ddp_processes_share_one_epoch_draw(world, tmp_path, monkeypatch):
    """One epoch of 8 pairs: one process takes 8 steps; 2 DDP processes take 4 steps each and read between
    them each pair of the single-process draw once (interleaved: rank r takes every 2nd from r)."""
    overrides = ("trainer.max_epochs=1", "data.samples_per_scene=8", "data.val.synthetic=null")
    (single,) = recorded_run(world, tmp_path / "single", monkeypatch, *overrides)
    ranks = recorded_run(world, tmp_path / "ddp", monkeypatch, *overrides, processes=2)
    assert single["global_step"] == len(single["drawn"]) == 8
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["global_step"] for r in ranks] == [4, 4]  # half the single-process steps
    assert [len(r["drawn"]) for r in ranks] == [4, 4]
    assert sorted(ranks[0]["drawn"] + ranks[1]["drawn"]) == sorted(single["drawn"])
    assert ranks[0]["drawn"] == single["drawn"][0::2] and ranks[1]["drawn"] == single["drawn"][1::2]


def checkpoint_of(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def assert_bitwise_equal(a, b, where: str = "checkpoint") -> None:
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        assert same, f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for position, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}[{position}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_a_mid_epoch_step_equals_the_straight_run(world, tmp_path, one_thread, monkeypatch, workers):
    """2 epochs of 4 steps, last.ckpt every 3 steps. The split run crashes before its 6th step, so its last
    checkpoint is step 3, inside epoch 0; resumed, it finishes epoch 0 (its 4th pair, then validation) and
    epoch 1. Weights, optimizer state and learning rate equal the straight run's bit for bit."""
    def run(folder: str, *extra: str) -> dict:
        overrides = small(world, tmp_path / folder, "trainer.max_epochs=2", f"data.num_workers={workers}",
                          "callbacks.checkpoint.every_n_train_steps=3", *extra)
        return train_script.train(config_of(overrides))

    straight = run("straight")

    def crash(module, batch, batch_index):
        if module.global_step == 5:
            raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(LoFTRModule, "on_train_batch_start", crash, raising=False)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run("split")
    interrupted = checkpoint_of(tmp_path / "split")
    assert (interrupted["global_step"], interrupted["epoch"]) == (3, 0)  # mid-epoch: 3 of its 4 steps
    resumed = run("split", f"ckpt_path={tmp_path / 'split' / 'checkpoints' / 'last.ckpt'}")

    a, b = checkpoint_of(tmp_path / "straight"), checkpoint_of(tmp_path / "split")
    assert_bitwise_equal(a["state_dict"], b["state_dict"], "state_dict")
    assert_bitwise_equal(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    assert a["lr_schedulers"][0]["_last_lr"] == b["lr_schedulers"][0]["_last_lr"]
    assert straight["global_step"] == resumed["global_step"] == a["global_step"] == b["global_step"] == 8


def test_last_checkpoint_holds_the_final_step(world, tmp_path):
    """7 steps (2 epochs of 4 pairs, max_steps=7), last.ckpt every 3: it ends at step 7, not 6."""
    summary = train_script.train(config_of(small(world, tmp_path, "trainer.max_epochs=2", "trainer.max_steps=7",
                                                 "callbacks.checkpoint.every_n_train_steps=3",
                                                 "data.val.synthetic=null")))
    assert summary["global_step"] == checkpoint_of(tmp_path)["global_step"] == 7
