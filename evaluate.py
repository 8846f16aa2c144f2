"""Score a matcher on a benchmark as the papers report it: pose AUC@5/10/20 and epipolar precision (or
homography AUC@1/3/5/10), matches and runtime per pair, optionally under rotation or tilt stress.

    python evaluate.py benchmark=synthetic matcher=sift
    python evaluate.py benchmark=megadepth1500 benchmark.root=... benchmark.scene_info_dir=... \
        matcher=loftr checkpoint=weights/outdoor_ds.ckpt
    python evaluate.py benchmark=synthetic matcher=loftr checkpoint=last.ckpt stress=rotation
    python evaluate.py benchmark=synthetic matcher=loftr checkpoint=last.ckpt stress=tilt affine=simulated
    python evaluate.py benchmark=synthetic predictions=outputs/evaluate/RUN/predictions.h5 ransac_threshold=1.0
    python evaluate.py benchmark=synthetic matcher=[sift,xfeat,loftr] checkpoint=last.ckpt
    python evaluate.py benchmark=multiview matcher=loftr checkpoint=last.ckpt 'benchmark.bag_sizes=[5,10]'

Several matchers (`matcher=[a,b,...]`) run one after the other in one process, each into its own folder under
the run folder (`out_dir/NAME/`, checkpoint= going to loftr only), then one table, cumulative_errors.png with a
curve per matcher, and matches/NNN.png with each matcher's picture of the same pair one above the other.

Predicts, then scores: every scored pair's matches go to predictions.h5 in the run folder (`out_dir`), and the
table is computed from them; `predictions=FILE` scores an earlier run's again (another RANSAC threshold or
seed) without building the matcher. Prints the table and writes results.csv (per pair), summary.json,
cumulative_errors.png (and auc_by_rotation.png or auc_by_tilt.png) and match pictures of the first pairs to
the run folder. benchmark=multiview reconstructs bags of each scene's images with COLMAP instead and scores
IMC's multiview and stereo tasks (evaluation/multiview.py). `affine=simulated` runs the matcher inside the
affine simulation (models/affine.py: views of image 0 at the tilts that cover the range, merged and filtered).
Choices and options: configs/evaluate.yaml (schema: evaluation/config.py), configs/benchmark/, configs/matcher/,
configs/affine/. The run: evaluation/run.py; several matchers: evaluation/several.py.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig

from evaluation.config import evaluate_config, register_configs
from evaluation.run import EvaluationError, evaluate
from evaluation.several import evaluate_several, listed_matchers
from utils.cli import run_hydra_main

register_configs()


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(config: DictConfig) -> None:
    try:
        try:
            settings = evaluate_config(config)
        except ValueError as error:  # a config class's own check of its values, naming the key
            raise EvaluationError(str(error)) from None
        overrides = list(HydraConfig.get().overrides.task)
        names = listed_matchers(overrides)
        if names is None:
            evaluate(settings)
        else:
            evaluate_several(names, overrides, settings)
    except EvaluationError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        sys.exit(2)


def check_matcher_lists(arguments: list[str]) -> None:
    """Exit code 2 and one line for a nested `matcher=[sift,[xfeat]]`, which Hydra's composition meets with a
    TypeError before `main` runs; an override Hydra cannot parse is left to Hydra to report."""
    try:
        listed_matchers([argument for argument in arguments if not argument.startswith("-")])
    except EvaluationError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except HydraException:
        pass


if __name__ == "__main__":
    check_matcher_lists(sys.argv[1:])
    run_hydra_main(main)
