"""Match two images with LoFTR: matched keypoints (original-image pixels) and confidences to an .npz,
optionally a picture of the matches and, through a homography fitted to them, an overlay and a panorama.

    python match.py a.jpg b.jpg --checkpoint outdoor_ds.ckpt --out outputs/ab/matches.npz --plot outputs/ab/matches.png
    python match.py a.jpg b.jpg --checkpoint outdoor_ds.ckpt --out outputs/ab/m.npz --overlay outputs/ab/overlay.png
    python match.py --demo --random-weights --out outputs/demo/matches.npz

Bad input (a missing or undecodable image, an image too small or too large, a checkpoint that does not fit,
an output that would overwrite an input) is reported on one line on stderr with exit code 2, and no output
file is written.
"""

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

from data.synthetic.texture import make_texture
from data.untrusted import read_small_numbers
from evaluation.matchers import checked_device
from evaluation.plots import epipolar_matches_figure, panorama, plot_matches, save_figure, warp_overlay, write_rgb
from geometry.estimation import estimate_homography
from geometry.warp import apply_homography, warp_image
from models.checkpoint import POS_ENCODINGS, CheckpointError
from models.matcher import ImageTooLargeError, ImageTooSmallError, LoFTRMatcher
from models.matches import Matches
from utils.files import check_no_output_on_input, write_failure, written_atomically
from utils.images import read_grayscale as read_image
from utils.values import INT_MAX

DEMO_SIZE = (480, 640)  # (height, width) of the generated demo image
MAX_GROUND_TRUTH_BYTES = 64 << 10  # --ground-truth's 34 numbers take under 1 kB, with comments a few
HOMOGRAPHY_THRESHOLD_PX = 3.0  # RANSAC inlier threshold of --overlay / --panorama's homography (OpenCV's default)


class InputError(Exception):
    """Something the user gave cannot be used; main reports it on one line and exits with 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, its errors one line (`match.py: error: ...`, exit code 2) as every other bad input's; the
    usage is --help's."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image0", nargs="?", type=Path, help="first image (any format OpenCV reads)")
    parser.add_argument("image1", nargs="?", type=Path, help="second image")
    parser.add_argument("--demo", action="store_true",
                        help="instead of IMAGE0 IMAGE1: match a generated texture with a homography-warped copy; "
                             "both images are written next to --out")
    parser.add_argument("--checkpoint", type=Path,
                        help="official LoFTR checkpoint (outdoor_ds.ckpt, ...) or one of ours")
    parser.add_argument("--random-weights", action="store_true",
                        help="run without a checkpoint, to try the pipeline (the matches are meaningless)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow a checkpoint that holds pickled objects besides tensors (only for files you trust)")
    parser.add_argument("--pos-encoding", choices=POS_ENCODINGS, default="auto",
                        help="positional encoding: legacy for the released official weights, fixed for models trained "
                             "with the corrected one; auto picks legacy for official checkpoints (matcher.* keys)")
    parser.add_argument("--resize", type=_non_negative_int, default=640, metavar="PIXELS",
                        help="resize each image so its longer side has this many pixels, keeping the aspect ratio "
                             "(0: original size); keypoints are reported in original pixels either way")
    parser.add_argument("--coarse-threshold", type=_unit_float, default=0.2, metavar="CONF",
                        help="minimum coarse confidence of a match, in [0, 1] (official: 0.2)")
    parser.add_argument("--quadtree-topks", type=_positive_int, nargs="+", metavar="K",
                        help="QuadTree-LoFTR: keys kept a level, coarsest first (default: the model's; the official "
                             "indoor weights want 32 16 16)")
    parser.add_argument("--device", type=_device, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the model runs: cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--out", type=Path, required=True,
                        help=".npz written with keypoints0, keypoints1 (N, 2) (x, y) pixels and confidence (N,)")
    parser.add_argument("--plot", type=Path, help="also draw the matches to this picture (.png, .pdf, .svg, ...)")
    parser.add_argument("--ground-truth", type=Path, metavar="FILE",
                        help="colour --plot by epipolar error instead of confidence: a text file of 34 numbers, "
                             "K0 (9), K1 (9) and T_0to1 (16, camera 0 -> camera 1), for the original images")
    parser.add_argument("--epipolar-threshold", type=_positive_float, default=1e-4,
                        help="with --ground-truth: a match is correct below this squared symmetric epipolar "
                             "distance in normalized coordinates (LoFTR: 1e-4 outdoor, 5e-4 indoor)")
    parser.add_argument("--overlay", type=Path,
                        help="fit a homography to the matches (RANSAC) and write image0 warped onto image1 "
                             "(magenta: image0, green: image1, gray where they agree) to this picture (.png, .jpg)")
    parser.add_argument("--panorama", type=Path,
                        help="fit a homography to the matches and write both images on one canvas to this "
                             "picture (.png, .jpg)")
    args = parser.parse_args(argv)

    if args.demo and (args.image0 or args.image1):
        parser.error("--demo makes its own images: give either --demo or IMAGE0 IMAGE1")
    if not args.demo and not (args.image0 and args.image1):
        parser.error("give two images IMAGE0 IMAGE1, or --demo")
    if args.checkpoint and args.random_weights:
        parser.error("give either --checkpoint or --random-weights, not both")
    if not args.checkpoint and not args.random_weights:
        parser.error("--checkpoint FILE is required (or --random-weights to try the pipeline with an untrained model)")
    if args.plot is not None:
        formats = Figure().canvas.get_supported_filetypes()
        if args.plot.suffix.lstrip(".").lower() not in formats:
            parser.error(f"--plot {args.plot}: unknown picture format; name it with one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    for flag, path in (("--overlay", args.overlay), ("--panorama", args.panorama)):
        if path is not None and not cv2.haveImageWriter(str(path)):
            parser.error(f"{flag} {path}: OpenCV cannot write this format; name it .png or .jpg")
    return args


def _device(text: str) -> torch.device:
    try:
        return checked_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(text: str, kind: type) -> int | float:
    """`text` as an int or a float; argparse's one-line error saying what was wanted otherwise."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'a whole number' if kind is int else 'a number'}, got "
                                         f"{text!r}") from None


def _non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return _at_most_int_max(value)


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return _at_most_int_max(value)


def _at_most_int_max(value: int) -> int:
    if value > INT_MAX:  # a C int in OpenCV and torch
        raise argparse.ArgumentTypeError(f"must be at most {INT_MAX}, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if not 0.0 < value < float("inf"):  # nan fails too
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return value


def _unit_float(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def read_grayscale(path: Path, name: str) -> np.ndarray:
    """The (H, W) uint8 grayscale image at `path`; `name` says which input it is in error messages."""
    try:
        return read_image(path)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{name}: {error}") from None


def build_matcher(args: argparse.Namespace) -> LoFTRMatcher:
    """The LoFTR of the command line: checkpoint read, positional encoding chosen, weights loaded."""
    try:
        return LoFTRMatcher.from_checkpoint(
            args.checkpoint, trusted=args.trust_checkpoint, pos_encoding=args.pos_encoding,
            coarse_threshold=args.coarse_threshold, resize=args.resize, device=args.device,
            quadtree_topks=args.quadtree_topks,
        )
    except (FileNotFoundError, CheckpointError) as error:
        raise InputError(str(error)) from None


def match_images(matcher: LoFTRMatcher, image0: np.ndarray, image1: np.ndarray, names: tuple[str, str]) -> Matches:
    """The matcher's matches between two (H, W) uint8 images, in their original pixels; an image too small
    for the network, or a pair too large for the device's memory, is an InputError that names them."""
    try:
        return matcher.match(image0, image1)
    except ImageTooSmallError as error:
        after = f" after --resize {matcher.resize}" if matcher.resize else ""
        raise InputError(
            f"{names[error.index]}: {error.size[0]}x{error.size[1]} px{after} is smaller than one coarse cell "
            f"({error.stride} px on each side)"
        ) from None
    except ImageTooLargeError as error:
        shown = " and ".join(f"{name} ({image.shape[1]}x{image.shape[0]} px)" for name, image in
                             zip(names, (image0, image1)))
        resized = (f" (resized to {' and '.join(f'{w}x{h}' for w, h in error.sizes)} px)" if matcher.resize else "")
        raise InputError(
            f"{shown} are too large to match at --resize {matcher.resize}{resized}: LoFTR's coarse matching would "
            f"need {error.needed / 2**30:,.0f} GiB ({error.cell_pairs:.1e} coarse-cell pairs), more than the "
            f"{error.available / 2**30:,.0f} GiB of {error.device.type} memory; pass --resize N with N at most "
            f"{error.longest_side}"
        ) from None


def fit_homography(matches: Matches, wanted_by: str) -> tuple[np.ndarray, int]:
    """Homography (3, 3) image0 -> image1 pixels fitted to the matches with RANSAC, and its inlier count;
    an InputError that names the flags `wanted_by` when there are too few matches or no model fits."""
    if len(matches) < 4:
        raise InputError(f"{wanted_by}: a homography needs at least 4 matches, found {len(matches)}")
    H = estimate_homography(matches.keypoints0.astype(np.float64), matches.keypoints1.astype(np.float64),
                            HOMOGRAPHY_THRESHOLD_PX)
    if H is None or not np.isfinite(H).all():
        raise InputError(f"{wanted_by}: no homography fits the {len(matches)} matches")
    errors = np.linalg.norm(apply_homography(H, matches.keypoints0) - matches.keypoints1, axis=1)
    return H, int((errors < HOMOGRAPHY_THRESHOLD_PX).sum())


def homography_pictures(args: argparse.Namespace, image0: np.ndarray, image1: np.ndarray, H: np.ndarray) -> dict:
    """{output path: RGB uint8 picture} for the --overlay and --panorama asked for."""
    pictures = {}
    if args.overlay is not None:
        pictures[args.overlay] = warp_overlay(image0, image1, H)
    if args.panorama is not None:
        try:
            pictures[args.panorama] = panorama(image0, image1, H)
        except ValueError as error:
            raise InputError(f"--panorama: {error}") from None
    return pictures


def check_paths(args: argparse.Namespace) -> None:
    """InputError naming both when an output would overwrite an input (an image, the ground truth, the
    checkpoint) or another output; before anything is read or written."""
    inputs = {"image0": args.image0, "image1": args.image1, "--ground-truth": args.ground_truth,
              "--checkpoint": args.checkpoint}
    outputs = {"--out": args.out, "--plot": args.plot, "--overlay": args.overlay, "--panorama": args.panorama}
    if args.demo:
        outputs.update(zip(("--demo's image0", "--demo's image1"), demo_image_paths(args.out.parent)))
    try:
        check_no_output_on_input(inputs, outputs.items())
    except ValueError as error:
        raise InputError(str(error)) from None


def demo_image_paths(folder: Path) -> tuple[Path, Path]:
    return folder / "demo_image0.png", folder / "demo_image1.png"


def write_demo_images(folder: Path) -> tuple[Path, Path]:
    """A generated texture and its warp by a homography (rotation, zoom, slight tilt), as PNGs in `folder`."""
    height, width = DEMO_SIZE
    image0 = make_texture(height, width, seed=0)
    angle, zoom = np.deg2rad(10.0), 0.9
    to_centre = np.array([[1.0, 0.0, -width / 2], [0.0, 1.0, -height / 2], [0.0, 0.0, 1.0]])
    about_centre = np.array([
        [zoom * np.cos(angle), -zoom * np.sin(angle), 0.0],
        [zoom * np.sin(angle), zoom * np.cos(angle), 0.0],
        [2e-4, 1e-4, 1.0],  # perspective tilt (per pixel from the centre)
    ])
    image1 = warp_image(image0, np.linalg.inv(to_centre) @ about_centre @ to_centre)
    paths = demo_image_paths(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for path, image in zip(paths, (image0, image1)):
        if not cv2.imwrite(str(path), image):
            raise OSError(f"cannot write {path}")
    return paths


def read_ground_truth(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K0, K1 (3, 3) and T_0to1 (4, 4) from a text file of 34 numbers; InputError naming it otherwise."""
    try:
        numbers = read_small_numbers(path, MAX_GROUND_TRUTH_BYTES).ravel()
    except (FileNotFoundError, ValueError) as error:  # missing, no regular file, too large, no numbers: named
        raise InputError(f"--ground-truth {error}") from None
    if numbers.size != 34 or not np.isfinite(numbers).all():
        raise InputError(f"--ground-truth {path}: expected 34 finite numbers (K0 9, K1 9, T_0to1 16), "
                         f"got {numbers.size}")
    return numbers[:9].reshape(3, 3), numbers[9:18].reshape(3, 3), numbers[18:].reshape(4, 4)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for bad input)."""
    args = parse_args(argv)
    try:
        check_paths(args)
        if args.demo:
            try:
                args.image0, args.image1 = write_demo_images(args.out.parent)
            except OSError as error:
                raise InputError(f"--out {args.out}: cannot write the demo images there ({error})") from None
        names = (f"image0 {args.image0}", f"image1 {args.image1}")
        image0, image1 = read_grayscale(args.image0, "image0"), read_grayscale(args.image1, "image1")
        truth = read_ground_truth(args.ground_truth) if args.ground_truth is not None else None
        matcher = build_matcher(args)
        matches = match_images(matcher, image0, image1, names)
        pictures, homography_note = {}, None
        wanted_by = " and ".join(f"--{flag}" for flag in ("overlay", "panorama") if getattr(args, flag) is not None)
        if wanted_by:
            H, inliers = fit_homography(matches, wanted_by)
            pictures = homography_pictures(args, image0, image1, H)
            homography_note = f"homography: {inliers} of {len(matches)} matches within {HOMOGRAPHY_THRESHOLD_PX:g} px"

        title = f"{len(matches)} matches" + (" (untrained model)" if args.random_weights else "")
        try:
            # all outputs are complete before any replaces a file, so a failure leaves none
            with ExitStack() as outputs:
                with open(outputs.enter_context(written_atomically(args.out)), "wb") as file:
                    np.savez(file, **matches.as_dict())
                if args.plot is not None and truth is not None:
                    figure = epipolar_matches_figure(image0, image1, matches.keypoints0, matches.keypoints1, *truth,
                                                     args.epipolar_threshold, title)
                    save_figure(figure, outputs.enter_context(written_atomically(args.plot)))
                elif args.plot is not None:
                    plot_matches(image0, image1, matches.keypoints0, matches.keypoints1, matches.confidence,
                                 outputs.enter_context(written_atomically(args.plot)), title, value_range=(0.0, 1.0))
                for path, picture in pictures.items():
                    write_rgb(outputs.enter_context(written_atomically(path)), picture)
        except OSError as error:  # a full disk, a folder in the way: no output replaced
            folders = dict.fromkeys(str(path.parent) for path in (args.out, args.plot, *pictures) if path is not None)
            raise InputError(f"cannot write the outputs to {' and '.join(folders)}: {write_failure(error)}; any "
                             f"earlier ones there are whole") from None
    except InputError as error:
        print(f"match.py: error: {error}", file=sys.stderr)
        return 2

    if args.random_weights:
        print("warning: --random-weights: the model is untrained, its matches are meaningless "
              "(use this to check the pipeline only)", file=sys.stderr)
    elif args.pos_encoding == "auto" and not getattr(matcher.model.config, "temp_bug_fix", True):  # LoFTR's only
        print("note: official checkpoint (matcher.* keys), so the legacy positional encoding that the released "
              "outdoor_ds/indoor_ds weights need; pass --pos-encoding fixed for weights trained with the corrected "
              "one (e.g. indoor_ds_new)", file=sys.stderr)
    if homography_note is not None:
        print(homography_note)
    written = [str(path) for path in (args.out, args.plot, *pictures) if path is not None]
    listed = written[0] if len(written) == 1 else f"{', '.join(written[:-1])} and {written[-1]}"
    print(f"{len(matches)} matches -> {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
