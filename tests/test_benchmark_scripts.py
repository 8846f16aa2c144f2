"""The benchmark scripts still run against the current configs and model (their figures are not tested)."""

import re
from pathlib import Path

import pytest

from benchmarks.training import model_config
from models.eloftr import EfficientLoFTRConfig
from models.loftr import LoFTRConfig
from tests.eloftr_helpers import upstream_eloftr
from tests.helpers import run_here

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml")))
def test_training_benchmark_builds_every_model_file_as_train_py_does(name):
    config = model_config(name)
    expected = {"loftr": 256, "loftr_tiny": 64, "eloftr": 256, "eloftr_tiny": 64}[name]  # configs/model/NAME.yaml
    assert config.coarse.d_model == expected
    assert isinstance(config, EfficientLoFTRConfig if name.startswith("eloftr") else LoFTRConfig)


@pytest.mark.parametrize("attention, channels_last, subpixel", [("linear", False, False), ("full", True, True)])
def test_training_benchmark_prints_a_row_for_the_tiny_model(attention, channels_last, subpixel):
    flags = (["--channels-last"] if channels_last else []) + (["--subpixel"] if subpixel else [])
    out = run_here(["benchmarks/training.py", "--steps", "1", "--warmup", "0", "--sizes", "160x120",
                    "--attention", attention, *flags], ROOT)
    assert out.returncode == 0, out.stderr
    assert f"{attention} attention, channels-last {channels_last}" in out.stdout
    rows = [line.split() for line in out.stdout.strip().splitlines()[2:]]
    variants = [False, True] if subpixel else [False]
    assert [row[:3] for row in rows] == [["loftr_tiny", "160x120", str(value)] for value in variants]
    assert all(float(row[3]) > 0 for row in rows) and float(rows[0][5]) == 1.0  # the first row is the reference


def test_rotation_benchmark_prints_an_auc_row_per_angle(tmp_path):
    import cv2

    from data.synthetic.texture import make_texture

    cv2.imwrite(str(tmp_path / "photo.png"), make_texture(240, 320, seed=0))
    out = run_here(["benchmarks/rotation.py", "--benchmark", "homographies", f"root={tmp_path}",
                    "pairs_per_image=2", "--sift", "--angles", "0", "90"], ROOT)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[3:]}
    assert list(rows) == ["0", "90", "worst"]
    aucs = {angle: [float(v) for v in cells[::2]] for angle, cells in rows.items() if angle != "worst"}
    assert aucs["0"][2] > 80 and aucs["90"][2] > 80  # SIFT is rotation-invariant: AUC@10px on a sharp texture
    assert float(rows["worst"][0]) == min(aucs["0"][2], aucs["90"][2])
    bad = run_here(["benchmarks/rotation.py", "--loftr", "no-name"], ROOT)
    assert bad.returncode == 2 and "NAME=CHECKPOINT" in bad.stderr
    missing = run_here(["benchmarks/rotation.py", "--benchmark", "homographies", f"root={tmp_path}",
                        "--loftr", f"x={tmp_path / 'absent.ckpt'}"], ROOT)
    assert missing.returncode == 2 and "absent.ckpt" in missing.stderr and "Traceback" not in missing.stderr


def test_rotation_benchmark_runs_a_checkpoint_at_each_quarter_turn(tmp_path, monkeypatch):
    """`--loftr-turns` builds the checkpoint's matcher with the four quarter turns (load_matcher's rotations)."""
    import cv2
    import torch

    from data.synthetic.texture import make_texture
    from models.family import model_for_weights
    from models.matcher import LoFTRMatcher

    cv2.imwrite(str(tmp_path / "photo.png"), make_texture(120, 160, seed=0))
    torch.save(model_for_weights(None).state_dict(), tmp_path / "random.ckpt")
    built = []
    original = LoFTRMatcher.__init__

    def record(self, model, resize=0, precision="fp32", rotations=(0,)):
        built.append(tuple(rotations))
        original(self, model, resize, precision, rotations)

    monkeypatch.setattr(LoFTRMatcher, "__init__", record)
    out = run_here(["benchmarks/rotation.py", "--benchmark", "homographies", f"root={tmp_path}", "pairs_per_image=1",
                    "--loftr-turns", f"turns={tmp_path / 'random.ckpt'}", "--angles", "90"], ROOT)
    assert out.returncode == 0, out.stderr
    assert built == [(0, 90, 180, 270)] and "turns" in out.stdout.splitlines()[1]


def test_inference_benchmark_prints_the_efficient_loftr_row():
    """Ours and the official Efficient LoFTR on the same weights give the same matches (size floored to 32s)."""
    upstream_eloftr()  # skips without the package
    out = run_here(["benchmarks/inference.py", "--eloftr", "--sizes", "130x200", "--runs", "1", "--no-memory"], ROOT)
    assert out.returncode == 0, out.stderr
    row = out.stdout.strip().splitlines()[-1].split("|")
    assert row[0].strip() == "128x192"
    up, ours = (int(v) for v in row[6].split("/"))
    assert up == ours > 0 and row[7].strip() == "yes"


def test_localisation_benchmark_measures_sift_against_the_renderers_depth(tmp_path):
    """SIFT on rendered views: most matches within a pixel of the truth; a wrong flag or file is one line."""
    from data.synthetic.__main__ import main as generate_world

    assert generate_world(["--out", str(tmp_path), "--scenes", "4", "--cameras", "5", "--size", "320x240"]) == 0
    out = run_here(["benchmarks/localisation.py", "--world", str(tmp_path), "--sift", "--max-pairs", "4"], ROOT)
    assert out.returncode == 0, out.stderr
    [row] = [line.split() for line in out.stdout.splitlines() if line.startswith("sift")]
    matches, checked, median = int(row[1]), int(row[2]), float(row[3])
    assert 0 < checked <= matches and median < 1.0
    bad = run_here(["benchmarks/localisation.py", "--world", str(tmp_path), "--loftr", "x"], ROOT)
    assert bad.returncode == 2 and "NAME=CHECKPOINT" in bad.stderr
    missing = run_here(["benchmarks/localisation.py", "--world", str(tmp_path), "--loftr",
                        f"x={tmp_path / 'absent.ckpt'}"], ROOT)
    assert missing.returncode == 2 and "absent.ckpt" in missing.stderr and "Traceback" not in missing.stderr


def test_inference_benchmark_prints_a_row_per_attention():
    """`--attention quadtree`, as README's Speed section gives it: the coarse transformer with each attention,
    linear first as the reference of the ratios."""
    out = run_here(["benchmarks/inference.py", "--attention", "quadtree", "--sizes", "64x96", "--runs", "1",
                    "--no-memory"], ROOT)
    assert out.returncode == 0, out.stderr
    rows = [[cell.strip() for cell in line.split("|")] for line in out.stdout.strip().splitlines()[-3:]]
    assert [row[:3] for row in rows] == [["64x96", "96", name] for name in ("linear", "full", "quadtree")]
    assert rows[0][4] == "1.00x" and all(float(row[3]) > 0 for row in rows)


def test_affine_benchmark_prints_an_auc_row_per_tilt_and_the_simulation_recovers_sift(tmp_path):
    """SIFT loses a photo tilted by 4; SIFT inside the affine simulation (`--simulate sift`) keeps it."""
    import cv2

    from data.synthetic.texture import make_texture

    cv2.imwrite(str(tmp_path / "photo.png"), make_texture(240, 320, seed=0))
    plot = tmp_path / "curves.png"
    out = run_here(["benchmarks/affine.py", "--photos", str(tmp_path), "--pairs-per-photo", "2",
                    "--matcher", "sift", "--simulate", "sift=2.5", "--affine", "max_tilt=4",
                    "--tilts", "1", "4", "--threads", "1",
                    "--plot", str(plot)], ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("tilt "))
    assert lines[header].split()[1:] == ["sift", "sift+affine"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 2:header + 4]}
    aucs = {tilt: [float(v) for v in cells if v != "/"] for tilt, cells in rows.items()}  # two matchers x 3 AUCs
    assert list(aucs) == ["1", "4"]
    assert aucs["4"][5] > aucs["4"][2] + 20  # AUC@10 px at t = 4: the simulation's against SIFT's
    kept = lines[header + 4].split()
    assert kept[:3] == ["kept", "at", "4"] and len(kept) == 5
    assert lines[header + 5].startswith("ms / pair")
    assert "(2 pairs a tilt)" in lines[header - 1]
    assert cv2.imread(str(tmp_path / "curves_homographies.png")) is not None
    bad = run_here(["benchmarks/affine.py", "--photos", str(tmp_path), "--matcher", "sift", "--simulate", "xfeat"],
                   ROOT)
    assert bad.returncode == 2 and "--simulate xfeat" in bad.stderr
    low = run_here(["benchmarks/affine.py", "--photos", str(tmp_path), "--matcher", "sift", "--simulate", "sift",
                    "--affine", "max_views=0"], ROOT)
    assert low.returncode == 2 and "max_views" in low.stderr and "Traceback" not in low.stderr
    threads = run_here(["benchmarks/affine.py", "--photos", str(tmp_path), "--matcher", "sift", "--threads", "0"],
                       ROOT)
    assert threads.returncode == 2 and "--threads 0" in threads.stderr


def test_affine_benchmark_samples_every_nth_pair_of_the_world(world):
    """--every N scores the world's pairs 0, N, 2N, ... (a sample over every test scene)."""
    from evaluation.benchmarks import build_benchmark

    total = build_benchmark("synthetic", root=str(world)).num_pairs()
    out = run_here(["benchmarks/affine.py", "--world", str(world), "--every", "2", "--matcher", "sift",
                    "--tilts", "1"], ROOT)
    assert out.returncode == 0, out.stderr
    assert f"({(total + 1) // 2} pairs a tilt)" in out.stdout


def test_inhouse_benchmark_reports_pairs_and_reconstructions_before_and_after(trained, tmp_path):
    """benchmarks/inhouse.py end to end at its smallest: SfM on one room's photos, one fine-tuning step, and both
    models scored on the held-out views' pairs and on bags of them reconstructed by COLMAP."""
    out = run_here(["benchmarks/inhouse.py", "--checkpoint", str(trained), "--train-scenes", "1", "--cameras", "12",
                    "--test-cameras", "8", "--steps", "1", "--bag-sizes", "3", "--bags", "1", "--size", "320x240",
                    "--seed", "3", "--out", str(tmp_path)], ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for label in ("starting checkpoint", "fine-tuned (1 steps"):
        assert re.search(rf"held-out bags reconstructed \(IMC multiview.*\), {re.escape(label)}", out.stdout)
    assert out.stdout.count("stereo: mAA") == 3  # before (printed twice: as soon as known, and at the end), after
    assert len(list((tmp_path / "multiview" / "after" / "bags").rglob("database.db"))) >= 1
