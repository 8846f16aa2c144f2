"""The benchmark scripts still run against the current configs and model (their figures are not tested)."""

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.training import model_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml")))
def test_training_benchmark_builds_every_model_file_as_train_py_does(name):
    config = model_config(name)
    assert config.backbone.type == "resnet_fpn"
    expected = {"loftr": 256, "loftr_tiny": 64}[name]  # coarse width of configs/model/NAME.yaml
    assert config.coarse.d_model == expected


def test_training_benchmark_prints_a_row_for_the_tiny_model():
    out = subprocess.run([sys.executable, "benchmarks/training.py", "--steps", "1", "--warmup", "0", "--sizes",
                          "160x120"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    row = out.stdout.strip().splitlines()[-1].split()
    assert row[:2] == ["loftr_tiny", "160x120"] and float(row[2]) > 0
