"""Sweeps through Hydra's submitit launcher: `python train.py -m hydra/launcher=submitit_local ...` runs each
value as its own submitit job (the same code path as hydra/launcher=submitit_slurm on a cluster, without the
scheduler), and each job writes its summary.json in the sweep folder."""

import json

import yaml

from tests.train_helpers import run_script, small


def test_submitit_local_sweep_runs_each_value_as_a_job(world, tmp_path):
    sweep = tmp_path / "sweep"
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.gpus_per_node=0", "hydra.launcher.tasks_per_node=1"]
    run = run_script("train.py", "-m", *launcher,
                     *small(world, None, "trainer.max_epochs=1", "model.coarse.attention=linear,full",
                            f"hydra.sweep.dir={sweep}"), threads=1)  # the two jobs run at once
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in run.stdout + run.stderr
    for job, attention in (("0", "linear"), ("1", "full")):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["global_step"] == 4  # 1 training scene x 4 pairs, 1 epoch
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        assert f"model.coarse.attention={attention}" in overrides
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    logs = sorted(path.name for path in (sweep / ".submitit").rglob("*_log.err"))
    assert len(logs) == 2  # each value ran as its own submitit job
