"""The harness: matches go back to the original frames through the resize and the stress warps, so exact
matches score perfectly and real matchers score well on pairs with exact ground truth."""


import numpy as np
import pytest

from data.pairs import EvalPair
from data.synthetic.texture import make_texture
from evaluation.baselines import SIFTMatcher
from evaluation.benchmarks import Resize
from evaluation.harness import HarnessConfig, run
from evaluation.metrics import summarize, summarize_groups
from evaluation.stress import StressConfig
from geometry.warp import warp_image
from models.matches import Matches
from tests.harness_helpers import GivenPairs, Oracle, two_view


def test_exact_matches_score_perfectly_through_the_resize():
    pair, pixels0, pixels1 = two_view()
    results = run(GivenPairs(given=[pair]), Oracle(pixels0, pixels1))
    (result,) = results
    assert result.pose.max_deg < 1e-3 and result.precision == 1.0 and result.num_matches == 300
    summary = summarize(results, "pose")
    assert summary["auc@5"] > 99.9 and summary["precision"] == 100.0

    class Unscaled(Oracle):  # a matcher that reports original pixels although it saw 640x480 images
        def match(self, image0, image1):
            return Matches(self.pixels0, self.pixels1, np.ones(len(self.pixels0)))

    (wrong,) = run(GivenPairs(given=[pair]), Unscaled(pixels0, pixels1))
    assert wrong.precision < 0.2  # the harness really maps the matches it is given


def homography_pair(size=(320, 240)) -> EvalPair:
    width, height = size
    image0 = make_texture(height, width, seed=3)
    H = np.array([[0.95, -0.12, 20.0], [0.1, 0.98, -8.0], [1e-4, -5e-5, 1.0]])
    return EvalPair("h", image0, warp_image(image0, H), H_0to1=H, group="h")


@pytest.mark.parametrize("stress, settings", [("rotation", {"angles": (0, 90, 180, 270, 30)}),
                                              ("tilt", {"tilts": (1, 1.5)})])
def test_stress_warps_are_undone_before_scoring(stress, settings):
    """SIFT is rotation invariant and survives a small tilt: if the harness undoes each warp, every setting
    keeps a small corner error; a warp left in place would cost tens of pixels."""
    benchmark = GivenPairs(given=[homography_pair()], kind="homography", resize=Resize(longer_side=320),
                           epipolar_threshold=None)
    config = HarnessConfig(stress=stress, stress_config=StressConfig(**settings))
    results = run(benchmark, SIFTMatcher(), config)
    assert len(results) == len(next(iter(settings.values())))
    assert [r.group for r in results][:2] == (["rot 0", "rot 90"] if stress == "rotation" else ["tilt 1", "tilt 1.5"])
    assert max(r.homography_error_px for r in results) < 3.0
    groups = summarize_groups(results, "homography")
    assert all(group["auc@10"] > 70 for group in groups.values())


def test_stressed_image_keeps_its_original_scale():
    """A rotated canvas is larger than the image; it is resized by the factors of the original image, so the
    matcher sees the content at the benchmark's scale, not shrunk to fit the canvas."""
    seen = []

    class Recorder:
        name = "recorder"

        def match(self, image0, image1):
            seen.append((image0.shape, image1.shape))
            return Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))

    pair = homography_pair(size=(400, 300))
    benchmark = GivenPairs(given=[pair], kind="homography", resize=Resize(longer_side=200), epipolar_threshold=None)
    results = run(benchmark, Recorder(), HarnessConfig(stress="rotation", stress_config=StressConfig(angles=(0, 45))))
    assert seen[0][0] == (144, 200)  # 150 floored to a multiple of 8 (LoFTR's rule)
    canvas = (400 + 300) / np.sqrt(2)  # each side of a 400x300 image turned by 45 degrees
    factor = np.sqrt(200 / 400 * 144 / 300)
    assert all(abs(side - canvas * factor) <= 1 for side in seen[1][1])  # scaled like the original image
    assert all(np.isinf(r.homography_error_px) for r in results)  # no matches: a failure, not a crash


def test_bad_stress_kind_is_named():
    with pytest.raises(ValueError, match=r"stress='spin' is not one of None, 'rotation', 'tilt'"):
        HarnessConfig(stress="spin")


def test_progress_bar_names_benchmark_and_matcher_on_stderr(capsys):
    """One bar step per scored pair (each stress variant), on stderr: stdout stays the table's alone."""
    pair, pixels0, pixels1 = two_view()
    config = HarnessConfig(stress="rotation", stress_config=StressConfig(angles=(0, 90)))
    run(GivenPairs(given=[pair]), Oracle(pixels0, pixels1), config)
    out, err = capsys.readouterr()
    assert out == ""
    assert "given / oracle / rotation" in err and "2pair" in err.replace(" ", "")
    run(GivenPairs(given=[pair]), Oracle(pixels0, pixels1), progress=False)
    assert capsys.readouterr().err == ""
