"""train.py: a short run writes checkpoints and a summary, resuming continues the same run exactly,
non-finite losses are skipped and counted, DDP validation equals single-process validation, a sweep runs each
value in its own folder and the collector tabulates them, and configuration errors say what is wrong."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import train as train_script
from data.synthetic.__main__ import main as generate_world
from data.synthetic.ensure import WorldSettings, ensure_world
from lightning_modules.loftr_module import LoFTRModule
from losses.loftr_loss import LoFTRLoss
from models.matcher import LoFTRMatcher
from tests.helpers import run_here
from tests.train_helpers import ROOT, TRAINING_KEYS, config_of, run_script, small


def weights(run_dir: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)["state_dict"]


def test_short_run_writes_checkpoints_and_summary(world, tmp_path):
    final = f"final_evaluation.benchmark={{name:synthetic,root:'{world}',resize:{{longer_side:160}}}}"
    overrides = [o for o in small(world, tmp_path, "trainer.max_epochs=2") if not o.startswith("final_evaluation")]
    summary = train_script.train(config_of([*overrides, final, "final_evaluation.max_pairs=2"]))
    assert summary["global_step"] == 8  # 1 training scene x 4 pairs, 2 epochs
    assert set(summary["final_evaluation"]) == {"loftr (trained)", "sift", "xfeat"}
    assert summary["final_evaluation"]["sift"]["pairs"] == summary["final_evaluation"]["xfeat"]["pairs"] == 2
    assert {"val/auc@20", "val/precision", "val/matches"} <= set(summary["validation"])
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["global_step"] == 8
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    # our checkpoints are plain: they load with weights_only=True, in evaluate.py and match.py too
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["training"]["model"]["coarse"]["d_model"] == 64
    assert list(checkpoint["hyper_parameters"]["training"]) == TRAINING_KEYS  # the module's part only
    matcher = LoFTRMatcher.from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # its tiny architecture
    own = matcher.model.state_dict()
    trained = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    assert trained.keys() <= own.keys() and all(torch.equal(own[k], v) for k, v in trained.items())
    assert matcher.model.config.coarse.d_model == 64 and matcher.model.config.temp_bug_fix


def test_resume_continues_the_same_run(world, tmp_path, one_thread, monkeypatch):
    """8 steps straight == a run of the same configuration that crashes after its first 4 steps (one epoch),
    resumed from its last checkpoint: same weights, same learning rate."""
    def run(folder: str, *extra: str) -> dict:
        return train_script.train(config_of(small(world, tmp_path / folder, "trainer.max_epochs=2", *extra)))

    straight = run("straight")

    def crash(module):
        if module.current_epoch == 1:
            raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(LoFTRModule, "on_train_epoch_start", crash, raising=False)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run("split")
    resumed = run("split", f"ckpt_path={tmp_path / 'split' / 'checkpoints' / 'last.ckpt'}")
    assert resumed["global_step"] == straight["global_step"] == 8
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    def lr(run):
        return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["lr_schedulers"][0]["_last_lr"]
    assert lr(tmp_path / "straight") == lr(tmp_path / "split")


@pytest.mark.parametrize("validation", ["every third epoch", "none"])
def test_last_checkpoint_is_written_every_epoch_whatever_the_validation(world, tmp_path, validation):
    """last.ckpt follows training, not validation: a run validating rarely, or never, still leaves one."""
    extra = ["trainer.check_val_every_n_epoch=3"] + (["data.val.synthetic=null"] if validation == "none" else [])
    summary = train_script.train(config_of(small(world, tmp_path, "trainer.max_epochs=2", *extra)))
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == summary["global_step"] == 8 and checkpoint["epoch"] == 1


def test_nonfinite_losses_are_skipped_then_stop_training(world, tmp_path, monkeypatch):
    original = LoFTRLoss.forward
    calls = []

    def sometimes_nan(self, result, supervision):
        parts = original(self, result, supervision)
        calls.append(1)
        if len(calls) in (2, 3):
            parts.total = parts.total * float("nan")
        return parts

    monkeypatch.setattr(LoFTRLoss, "forward", sometimes_nan)
    summary = train_script.train(config_of(small(world, tmp_path / "a", "trainer.max_epochs=1")))
    assert summary["skipped_steps"] == 2 and summary["global_step"] == 4  # skipped steps still count as steps

    monkeypatch.setattr(LoFTRLoss, "forward", lambda self, r, s: (p := original(self, r, s)).__class__(
        p.total * float("nan"), p.coarse, p.fine, p.num_ground_truth, p.num_fine_supervised))
    with pytest.raises(train_script.NonFiniteLossError, match=r"NaN or inf for 3 steps in a row"):
        train_script.train(config_of(small(world, tmp_path / "b", "trainer.max_epochs=1", "max_nonfinite_steps=2")))


def run_script_here(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run_here([str(ROOT / script), *args], cwd)


def test_ddp_validation_equals_single_process(world, tmp_path):
    """The same weights validated by 2 CPU processes under DDP and by one: the same metrics, every pair once."""
    train_script.train(config_of(small(world, tmp_path / "trained", "trainer.max_epochs=1")))
    checkpoint = tmp_path / "trained" / "checkpoints" / "last.ckpt"
    def validation(name, *extra):
        return small(
            world, tmp_path / name, "validate_only=true", f"init_checkpoint={checkpoint}",
            "model.match_coarse.threshold=0", "validation.epipolar_threshold=1e-2",  # a young model's matches,
            *extra)  # some within a loose threshold
    results = {"single": train_script.train(config_of(validation("single")))["validation"]}
    run = run_script("train.py", *validation("ddp", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                             f"hydra.run.dir={tmp_path / 'ddp'}"), threads=1)  # not in outputs/
    assert run.returncode == 0, run.stderr[-3000:]
    results["ddp"] = json.loads((tmp_path / "ddp" / "summary.json").read_text())["validation"]
    assert results["single"]["val/pairs"] > 2 and results["single"]["val/matches"] > 5  # enough to compare
    assert results["single"]["val/precision"] > 0
    assert results["ddp"] == pytest.approx(results["single"])
    assert "Starting with 2 processes" in run.stderr + run.stdout


def test_sweep_runs_each_value_and_collects_a_table(world, tmp_path):
    sweep = tmp_path / "sweep"
    run = run_script_here("train.py", "-m", *small(world, None, "trainer.max_epochs=1",
                                                  "model.coarse.attention=linear,full", f"hydra.sweep.dir={sweep}"))
    assert run.returncode == 0, run.stderr[-3000:]
    runs = sorted(path.parent for path in sweep.glob("*/summary.json"))
    assert [p.name for p in runs] == ["0", "1"]
    table = run_script_here("scripts/collect_runs.py", str(sweep))
    assert table.returncode == 0, table.stderr
    assert "model.coarse.attention=linear" in table.stdout and "model.coarse.attention=full" in table.stdout
    assert "val/auc@20" in table.stdout


def test_se2_experiments_train_the_steerable_backbone_and_reload(world, tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        megadepth = compose("train", overrides=["experiment=se2_loftr_megadepth"]).model.backbone  # data roots unset
    assert megadepth.type == "se2_resnet_fpn" and list(megadepth.block_dims) == [128, 196, 256]
    summary = train_script.train(config_of(small(world, tmp_path, "experiment=se2_synthetic", "trainer.max_epochs=1")))
    assert summary["global_step"] == 4
    matcher = LoFTRMatcher.from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert type(matcher.model.backbone).__name__ == "PlainSE2ResNetFPN"  # the steerable backbone, exported
    assert matcher.model.config.backbone.group_order == 8


def test_configuration_errors_name_the_key(world, tmp_path):
    typo = run_script_here("train.py", *small(world, tmp_path, "model.coarse.dmodel=64"), cwd=tmp_path)
    assert typo.returncode != 0 and "dmodel" in typo.stderr
    group = run_script_here("train.py", *small(world, tmp_path, "experiment=loftr_megadepht"), cwd=tmp_path)
    assert group.returncode != 0 and "loftr_megadepth" in group.stderr and "synthetic" in group.stderr
    backbone = run_script_here("train.py", *small(world, tmp_path, "model.backbone.type=se2"), cwd=tmp_path)
    assert backbone.returncode == 2 and "backbone.type must be one of resnet_fpn, se2_resnet_fpn" in backbone.stderr
    # 4 training pairs an epoch cannot fill a batch of 5: no step would run, which used to pass in silence
    empty = run_script_here("train.py", *small(world, tmp_path, "data.batch_size=5"), cwd=tmp_path)
    assert empty.returncode == 2 and "data.batch_size=5" in empty.stderr and "4 training pairs" in empty.stderr
    schedule = run_script_here("train.py", *small(world, tmp_path, "optimizer.schedule=linear"), cwd=tmp_path)
    assert schedule.returncode == 2 and "optimizer.schedule='linear' is not one of" in schedule.stderr
    with pytest.raises(train_script.ConfigError, match=r"trainer: unknown option\(s\) \['max_step'\]"):
        train_script.train(config_of(small(world, tmp_path, "+trainer.max_step=3")))
    with pytest.raises(train_script.ConfigError, match=r"ckpt_path=.*nowhere.ckpt: checkpoint not found"):
        train_script.train(config_of(small(world, tmp_path, f"ckpt_path={tmp_path / 'nowhere.ckpt'}")))
    with pytest.raises(train_script.ConfigError, match=r"init_checkpoint: checkpoint not found: .*missing.ckpt"):
        train_script.train(config_of(small(world, tmp_path, f"init_checkpoint={tmp_path / 'missing.ckpt'}")))
    with pytest.raises(train_script.ConfigError, match=r"set `root` of the megadepth dataset"):
        train_script.train(config_of(small(world, tmp_path, f"data.train.synthetic.root={tmp_path / 'nowhere'}")))


def test_tiny_model_learns(tmp_path):
    """200 steps of the synthetic recipe at 320 px, on 192x144 covisible crops as the recipe trains: the
    validation loss (whole images) falls and the share of correct matches on the held-out validation scene
    rises far above the untrained model's."""
    world = tmp_path / "world"
    assert generate_world(["--out", str(world), "--scenes", "4", "--cameras", "10", "--size", "320x240"]) == 0
    overrides = small(world, None, "data.samples_per_scene=50", "trainer.max_epochs=2", "optimizer.warmup_steps=20",
                      "optimizer.lr=2e-3",
                      "optimizer.milestones=[10]",
                      # LoFTR's loss alone: the validation loss scores the model's own matches, and the heatmap
                      # cross-entropy (~log 25 each) grows with their number as the model learns
                      "loss.fine_nll_weight=0")
    overrides = [o.replace("=160", "=320") for o in overrides if o != "data.train.synthetic.crop_size=null"]
    overrides.append("data.train.synthetic.crop_size=[192,144]")  # half the time of whole images
    before = train_script.train(config_of([*overrides, f"run_dir={tmp_path / 'before'}", "validate_only=true"]))
    after = train_script.train(config_of([*overrides, f"run_dir={tmp_path / 'after'}"]))
    assert after["global_step"] == 200
    start, end = before["validation"], after["validation"]
    assert end["val/loss"] < 0.9 * start["val/loss"]
    assert end["val/precision"] > max(3 * start["val/precision"], 8.0)


def test_world_is_generated_once_and_again_when_its_settings_differ(tmp_path, capsys):
    """Any setting of the world (its manifest, world.json) that differs from the one on disk makes it again:
    the scene split, but also the size, cameras, textures and seed, which the split files do not show."""
    settings = {"generate": True, "root": str(tmp_path / "w"), "scenes": 3, "test_scenes": 1, "cameras": 3,
                "size": (64, 48)}
    ensure_world(WorldSettings(**settings))
    assert "generating the synthetic world" in capsys.readouterr().out
    written = (tmp_path / "w" / "world.json").stat().st_mtime_ns
    ensure_world(WorldSettings(**settings))
    assert capsys.readouterr().out == "" and (tmp_path / "w" / "world.json").stat().st_mtime_ns == written
    ensure_world(WorldSettings(**{**settings, "scenes": 4, "test_scenes": 2}))
    assert "made with other settings (scenes 3 -> 4, test_scenes 1 -> 2)" in capsys.readouterr().out
    assert (tmp_path / "w" / "test.txt").read_text().split() == ["scene_info/scene0002.npz", "scene_info/scene0003.npz"]
    for change in ({"seed": 1}, {"size": (80, 48)}):  # cameras and textures: the same comparison
        settings.update(scenes=4, test_scenes=2, **change)
        ensure_world(WorldSettings(**settings))
        assert "made with other settings" in capsys.readouterr().out, change
    with __import__("h5py").File(tmp_path / "w" / "scene0000" / "depths" / "0.h5", "r") as depth:
        assert depth["depth"].shape == (48, 80)


def test_a_world_that_cannot_be_made_is_one_line(world, tmp_path):
    """Settings the generator refuses (two scenes: too few for a training, a validation and a test scene)
    stop the run with exit code 2 and one line naming the folder, before any data is read."""
    root = tmp_path / "w"
    run = run_script_here("train.py", *small(world, tmp_path / "run", "world.generate=true", f"world.root={root}",
                                             "world.scenes=2", "world.test_scenes=1"), cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and run.stderr.strip().splitlines()[-1] == (
        f"train.py: error: could not generate the synthetic world in {root}: 2 scenes with 1 test scenes: at least "
        f"one test scene, and one scene each for training and validation besides")


@pytest.mark.parametrize("shown", [True, False])
def test_progress_bar_flag_shows_or_hides_the_training_bar(world, tmp_path, capsys, shown):
    train_script.train(config_of(small(world, tmp_path, "trainer.max_epochs=1", f"callbacks.progress_bar={shown}")))
    printed = capsys.readouterr()
    assert ("Epoch 0" in printed.out + printed.err) == shown
