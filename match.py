"""Match images with LoFTR or another matcher: for two images, matched keypoints (original-image pixels) and
confidences to an .npz, optionally a picture of the matches and, through a homography fitted to them, an
overlay and a panorama; for many pairs (a pairs file, or the images of a folder), one HDF5 file.

    python match.py a.jpg b.jpg --checkpoint outdoor_ds.ckpt --out outputs/ab/matches.npz --plot outputs/ab/matches.png
    python match.py a.jpg b.jpg --checkpoint outdoor_ds.ckpt --out outputs/ab/m.npz --overlay outputs/ab/overlay.png
    python match.py --demo --random-weights --out outputs/demo/matches.npz

Bad input (a missing or undecodable image, an image too small or too large, a checkpoint that does not fit,
an output that would overwrite an input) is reported on one line on stderr with exit code 2, and no output
file is written.

Other matchers: --matcher sift (asift, xfeat, xfeat_star, xfeat_lighterglue, aliked_lightglue, disk_lightglue:
evaluation/matchers.py) instead of LoFTR's --checkpoint; --resize applies to them as to LoFTR.

Strongly tilted views: --affine-simulation wraps any --matcher in the affine simulation (models/affine.py):
tilted views of image 0 (made from the image after --resize), each matched against image 1, the matches taken
back, merged and filtered; --affine-max-tilt and --affine-tolerance change its covering, e.g.

    python match.py a.jpg b.jpg --checkpoint outdoor_ds.ckpt --affine-simulation --out outputs/ab/m.npz

Many pairs into one HDF5 file: the pairs of a text file (two image names a line, relative to --image-root;
blank lines, '#' comments and further columns, such as SuperGlue's ground truth, ignored), or the images of a
folder (subfolders included, names relative to it, sorted) paired exhaustively or each with the next N:

    python match.py --pairs pairs.txt --image-root data/world --checkpoint outdoor_ds.ckpt --out outputs/m.h5
    python match.py --images frames --pairing sequential:2 --matcher sift --out outputs/frames/matches.h5

The file (--out, named .h5 or .hdf5):

    attributes      format "match.py pairs"; matcher, resize (--resize); for loftr also checkpoint (its
                    absolute path, or "random weights"), coarse_threshold, pos_encoding, quadtree_topks ("": the
                    model's); with --affine-simulation also affine_simulation (its every option, as text)
    /NAME0/NAME1/   one group a pair: its image names URL-quoted (urllib.parse.quote(name, safe="")), so that
                    a "/" in a name does not nest groups
        keypoints0  (N, 2) float32 (x, y) pixels of the original image 0
        keypoints1  (N, 2) float32 (x, y) pixels of the original image 1
        confidence  (N,) float32

the names of the .npz of one pair. A run adds to an existing file: the pairs already in it are skipped, and a
file made with other settings (those attributes) is refused, unchanged. Each pair is written under a
temporary name and moved to its own once whole, and the file is flushed after each, so an interrupted run
(Ctrl-C: exit code 130) keeps every pair it finished and the same command goes on from there. A bad image
found half-way (missing, undecodable, too small) stops the run on one line with exit code 2, the pairs
matched before it kept. A progress bar goes to stderr when stderr is a terminal.
"""

import argparse
import re
import shutil
import sys
from contextlib import ExitStack
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import cv2
import h5py
import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from data.io import IMAGE_SUFFIXES
from data.pair_list import folder_images, paired_names, read_name_pairs
from data.synthetic.texture import make_texture
from data.untrusted import read_small_numbers
from evaluation.matchers import DETECTOR_MATCHERS, MATCHERS, default_quantization, simulated
from evaluation.matchers import build_matcher as build_named_matcher
from evaluation.plots import epipolar_matches_figure, panorama, plot_matches, save_figure, warp_overlay, write_rgb
from geometry.estimation import estimate_homography
from geometry.warp import apply_homography, warp_image
from models.affine import AffineSimulationConfig
from models.checkpoint import POS_ENCODINGS, CheckpointError
from models.matcher import (
    PRECISIONS,
    CoarseCellTooSmallError,
    ImageTooLargeError,
    LoFTRMatcher,
    ResizedMatcher,
    checked_device,
)
from models.matches import KEYS, ImageTooSmallError, Matches
from sfm.colmap import camera_of_photo, write_database
from sfm.hloc import FEATURES_FILE, MATCHES_FILE, write_hloc
from sfm.keypoints import PRESETS, sfm_features
from utils.files import (
    NotARegularFileError,
    check_no_output_on_input,
    check_replaceable,
    write_failure,
    written_atomically,
)
from utils.images import read_grayscale as read_image
from utils.values import INT_MAX

DEMO_SIZE = (480, 640)  # (height, width) of the generated demo image
MAX_GROUND_TRUTH_BYTES = 64 << 10  # --ground-truth's 34 numbers take under 1 kB, with comments a few
HOMOGRAPHY_THRESHOLD_PX = 3.0  # RANSAC inlier threshold of --overlay / --panorama's homography (OpenCV's default)
DEFAULT_COARSE_THRESHOLD = 0.2  # LoFTR's official value
# the options only LoFTR takes: refused with another --matcher (--device: the other matchers pick their own)
LOFTR_FLAGS = ("checkpoint", "random_weights", "trust_checkpoint", "pos_encoding", "quadtree_topks",
               "coarse_threshold", "device", "precision")
# the simulation's options: with --affine-simulation
AFFINE_FLAGS = ("affine_max_tilt", "affine_tolerance", "affine_screening_scale", "affine_views_kept")
SINGLE_PAIR_FLAGS = ("demo", "plot", "ground_truth", "overlay", "panorama")
SFM_FLAGS = ("colmap", "hloc", "quantization")  # exports of many pairs' matches: with --pairs or --images
MATCHES_FILE_SUFFIXES = (".h5", ".hdf5")
MATCHES_FILE_FORMAT = "match.py pairs"  # the root attribute `format` of the HDF5 files match.py writes
# the group a pair is written into before it is moved to its name: no URL-quoted name holds a space
WRITING_GROUP = " writing"
IMAGES_CACHED = 8  # decoded images kept during a run: a row of exhaustive pairs, or a window of sequential ones
# free space kept beyond a pair's bytes before it is written: HDF5's own writes (group heaps, B-trees, flushed
# metadata) take kilobytes, and a write that fails crashes the process when HDF5 closes the file
FREE_SPACE_MARGIN = 1 << 20


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
    parser.add_argument("--pairs", type=Path, metavar="FILE",
                        help="instead of IMAGE0 IMAGE1: match every pair of this text file (two image names a line, "
                             "relative to --image-root; further columns ignored) into the HDF5 file --out")
    parser.add_argument("--image-root", type=Path, metavar="DIR",
                        help="with --pairs: the folder its image names are relative to")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="instead of IMAGE0 IMAGE1: match pairs of the images of this folder (subfolders "
                             "included, names sorted) into the HDF5 file --out, paired by --pairing")
    parser.add_argument("--pairing", type=_pairing, metavar="exhaustive|sequential:N",
                        help="with --images: every pair once (exhaustive), or each image with the next N in name "
                             "order (sequential:N, for video frames)")
    parser.add_argument("--matcher", choices=sorted(MATCHERS), default="loftr",
                        help="loftr (default: --checkpoint or --random-weights), or a baseline of "
                             "evaluation/matchers.py with its own weights (aliked_lightglue, disk_lightglue: "
                             "requirements-baselines.txt)")
    parser.add_argument("--checkpoint", type=Path,
                        help="official LoFTR checkpoint (outdoor_ds.ckpt, ...) or one of ours")
    parser.add_argument("--random-weights", action="store_true",
                        help="run without a checkpoint, to try the pipeline (the matches are meaningless)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow a checkpoint that holds pickled objects besides tensors (only for files you trust)")
    parser.add_argument("--pos-encoding", choices=POS_ENCODINGS,
                        help="positional encoding: legacy for the released official weights, fixed for models trained "
                             "with the corrected one; auto picks legacy for official checkpoints (matcher.* keys)")
    parser.add_argument("--resize", type=_non_negative_int, default=640, metavar="PIXELS",
                        help="resize each image so its longer side has this many pixels, keeping the aspect ratio "
                             "(0: original size); keypoints are reported in original pixels either way")
    parser.add_argument("--coarse-threshold", type=_unit_float, metavar="CONF",
                        help="minimum coarse confidence of a match, in [0, 1] (official: 0.2)")
    parser.add_argument("--quadtree-topks", type=_positive_int, nargs="+", metavar="K",
                        help="QuadTree-LoFTR: keys kept a level, coarsest first (default: the model's; the official "
                             "indoor weights want 32 16 16)")
    parser.add_argument("--device", type=_device,
                        help="where the model runs: cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--precision", choices=list(PRECISIONS),
                        help="the forward in float32 (default), or under autocast in bf16 (CPUs with bfloat16 "
                             "instructions, GPUs) or fp16 (GPUs); the similarity, softmaxes and fine expectation "
                             "stay in float32")
    parser.add_argument("--affine-simulation", action="store_true",
                        help="match tilted views of image 0 (made after --resize) against image 1 and merge their "
                             "matches, for strongly tilted views (models/affine.py; any --matcher; slower: one "
                             "match a view)")
    parser.add_argument("--affine-max-tilt", type=float, metavar="T",
                        help=f"with --affine-simulation: the transition tilts covered, 1 to T (default: "
                             f"{AffineSimulationConfig.max_tilt:g})")
    parser.add_argument("--affine-tolerance", type=float, metavar="T",
                        help=f"with --affine-simulation: the transition tilt the matcher handles itself (default: "
                             f"{AffineSimulationConfig.tolerance:g}); larger: fewer views")
    parser.add_argument("--affine-screening-scale", type=float, metavar="S",
                        help=f"with --affine-simulation: match every view at this scale first, then only the "
                             f"--affine-views-kept best at full resolution (default: "
                             f"{AffineSimulationConfig.screening_scale:g}; 1: every view at full resolution)")
    parser.add_argument("--affine-views-kept", type=int, metavar="N",
                        help=f"with --affine-simulation: the views redone at full resolution after screening "
                             f"(default: {AffineSimulationConfig.views_kept})")
    parser.add_argument("--colmap", type=Path, metavar="DB",
                        help="with --pairs or --images: also write the matches as a new COLMAP database (one "
                             "keypoint set per image, cameras from EXIF focal lengths or COLMAP's prior, verified "
                             "two-view geometries) for COLMAP's mapper and GUI, GLOMAP or pycolmap.incremental_mapping")
    parser.add_argument("--hloc", type=Path, metavar="DIR",
                        help="with --pairs or --images: also write hloc's features.h5 and matches.h5 to DIR")
    parser.add_argument("--quantization", choices=list(PRESETS),
                        help="with --colmap or --hloc: how each image's keypoints of all its pairs become one set, "
                             "hloc's presets (loftr: 1 px cells, merged within 1 px; loftr_aachen: 8 and 2; "
                             "loftr_superpoint: 4 and 4) or none (exact duplicates only); default: loftr, or none "
                             f"for a detector's keypoints ({', '.join(DETECTOR_MATCHERS)})")
    parser.add_argument("--out", type=Path, required=True,
                        help=".npz written with keypoints0, keypoints1 (N, 2) (x, y) pixels and confidence (N,); "
                             "with --pairs or --images an .h5 file that gets one group a pair (added to if it exists)")
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

    if args.pairs is not None or args.images is not None:
        check_batch_args(parser, args)
    else:
        for flag, value in (("--image-root", args.image_root), ("--pairing", args.pairing)):
            if value is not None:
                parser.error(f"{flag} goes with {'--pairs' if flag == '--image-root' else '--images'}")
        for name in SFM_FLAGS:
            if getattr(args, name) is not None:
                parser.error(f"--{name} goes with --pairs or --images (one keypoint set per image of many pairs)")
        check_single_pair_args(parser, args)
    check_matcher_args(parser, args)
    args.affine = affine_config(parser, args)
    return args


def affine_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> AffineSimulationConfig | None:
    """The affine simulation's options (None without --affine-simulation), the config's own check naming the
    flag of a wrong value."""
    given = {name[len("affine_"):]: getattr(args, name) for name in AFFINE_FLAGS if getattr(args, name) is not None}
    if not args.affine_simulation:
        if given:
            parser.error(f"--affine-{next(iter(given)).replace('_', '-')} goes with --affine-simulation")
        return None
    try:
        return AffineSimulationConfig(**given)
    except ValueError as error:  # its message starts with the field's name
        field = re.match(r"\w*", str(error)).group()
        flag = f"--affine-{field.replace('_', '-')}" if field in given else "--affine-simulation"
        parser.error(f"{flag}: {error}")


def check_single_pair_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checks of one pair's command line (IMAGE0 IMAGE1 or --demo), before anything is read."""
    if args.demo and (args.image0 or args.image1):
        parser.error("--demo makes its own images: give either --demo or IMAGE0 IMAGE1")
    if not args.demo and not (args.image0 and args.image1):
        parser.error("give two images IMAGE0 IMAGE1, or --demo")
    if args.plot is not None:
        formats = Figure().canvas.get_supported_filetypes()
        if args.plot.suffix.lstrip(".").lower() not in formats:
            parser.error(f"--plot {args.plot}: unknown picture format; name it with one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    for flag, path in (("--overlay", args.overlay), ("--panorama", args.panorama)):
        if path is not None and not cv2.haveImageWriter(str(path)):
            parser.error(f"{flag} {path}: OpenCV cannot write this format; name it .png or .jpg")


def check_batch_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checks of a many-pairs command line (--pairs or --images), before anything is read."""
    if args.pairs is not None and args.images is not None:
        parser.error("give either --pairs FILE or --images DIR, not both")
    mode = "--pairs" if args.pairs is not None else "--images"
    if args.image0 is not None:
        parser.error(f"give either {mode} or two images IMAGE0 IMAGE1, not both")
    for name in SINGLE_PAIR_FLAGS:
        if getattr(args, name) not in (None, False):
            parser.error(f"--{name.replace('_', '-')} is for one pair (IMAGE0 IMAGE1); {mode} writes the HDF5 "
                         f"file --out only")
    if args.pairs is not None and args.image_root is None:
        parser.error("--pairs needs --image-root DIR, the folder its image names are relative to")
    if args.pairs is not None and args.pairing is not None:
        parser.error("--pairing goes with --images; --pairs lists its pairs")
    if args.images is not None and args.image_root is not None:
        parser.error("--images DIR is the image root: drop --image-root")
    if args.images is not None and args.pairing is None:
        parser.error("--images needs --pairing exhaustive (every pair) or sequential:N (each image with the next N)")
    if args.out.suffix.lower() not in MATCHES_FILE_SUFFIXES:
        parser.error(f"--out {args.out}: {mode} writes an HDF5 file; name it .h5 or .hdf5")
    if args.quantization is not None and args.colmap is None and args.hloc is None:
        parser.error("--quantization goes with --colmap or --hloc")
    if args.quantization is None:
        args.quantization = default_quantization(args.matcher, bool(args.affine_simulation))


def check_matcher_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """LoFTR needs weights (--checkpoint or --random-weights) and gets its defaults filled in; another matcher
    takes none of LoFTR's options, which stay None."""
    if args.matcher != "loftr":
        for name in LOFTR_FLAGS:
            if getattr(args, name) not in (None, False):
                parser.error(f"--{name.replace('_', '-')} is LoFTR's: --matcher {args.matcher} does not take it")
        return
    if args.checkpoint and args.random_weights:
        parser.error("give either --checkpoint or --random-weights, not both")
    if not args.checkpoint and not args.random_weights:
        parser.error("--checkpoint FILE is required (or --random-weights to try the pipeline with an untrained model)")
    args.pos_encoding = args.pos_encoding or "auto"
    if args.coarse_threshold is None:
        args.coarse_threshold = DEFAULT_COARSE_THRESHOLD
    if args.device is None:
        args.device = _device("cuda" if torch.cuda.is_available() else "cpu")


def _pairing(text: str) -> tuple[str, int | None]:
    """--pairing's value: ("exhaustive", None) or ("sequential", N)."""
    kind, colon, count = text.partition(":")
    if kind == "exhaustive" and not colon:
        return kind, None
    if kind == "sequential" and colon:
        try:
            return kind, _positive_int(count)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"sequential:N: N {error}") from None
    raise argparse.ArgumentTypeError(f"expected exhaustive or sequential:N (N a whole number, 1 or more), "
                                     f"got {text!r}")


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


def read_grayscale(path: Path, name: str, read=read_image) -> np.ndarray:
    """The (H, W) uint8 grayscale image at `path`, through `read` (a cached read_image); `name` says which
    input it is in error messages."""
    try:
        return read(path)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{name}: {error}") from None


def build_matcher(args: argparse.Namespace):
    """The matcher of the command line: `wrapped` around `base_matcher`."""
    return wrapped(args, base_matcher(args))


def wrapped(args: argparse.Namespace, matcher):
    """`matcher` (`base_matcher`) behind --resize: LoFTR resizes itself; another one of evaluation/matchers.py
    and any matcher in the affine simulation (--affine-simulation, whose views are made from the resized image 0)
    behind `ResizedMatcher`."""
    if args.affine is None and args.matcher == "loftr":
        return matcher
    return ResizedMatcher(simulated(matcher, args.affine), args.resize)  # both checked by parse_args


def base_matcher(args: argparse.Namespace):
    """The matcher itself: for LoFTR, checkpoint read, positional encoding chosen, weights loaded (resizing to
    --resize itself unless the affine simulation is to wrap it); another one of evaluation/matchers.py, which
    takes the images as given."""
    if args.matcher != "loftr":
        try:
            return build_named_matcher(args.matcher)
        except ValueError as error:  # an optional package missing: the command that installs it
            raise InputError(f"--matcher {args.matcher}: {error}") from None
    try:
        return LoFTRMatcher.from_checkpoint(
            args.checkpoint, trusted=args.trust_checkpoint, pos_encoding=args.pos_encoding,
            coarse_threshold=args.coarse_threshold, resize=args.resize if args.affine is None else 0,
            device=args.device, quadtree_topks=args.quadtree_topks, precision=args.precision or "fp32",
        )
    except (FileNotFoundError, CheckpointError) as error:
        raise InputError(str(error)) from None
    except ValueError as error:  # e.g. precision bf16 on a CPU without bfloat16 instructions: as the flag
        message = str(error)
        raise InputError(f"--{message}" if message.startswith("precision") else message) from None


def match_images(matcher: LoFTRMatcher, image0: np.ndarray, image1: np.ndarray, names: tuple[str, str]) -> Matches:
    """The matcher's matches between two (H, W) uint8 images, in their original pixels; an image too small
    for the network, or a pair too large for the device's memory, is an InputError that names them."""
    try:
        return matcher.match(image0, image1)
    except CoarseCellTooSmallError as error:
        after = f" after --resize {matcher.resize}" if matcher.resize else ""
        raise InputError(
            f"{names[error.index]}: {error.size[0]}x{error.size[1]} px{after} is smaller than one coarse cell "
            f"({error.stride} px on each side)"
        ) from None
    except ImageTooSmallError as error:  # another matcher's (its message: which image, its size)
        after = f" after --resize {matcher.resize}" if matcher.resize else ""
        raise InputError(f"{names[0]} and {names[1]}: {error}{after}") from None
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


def match_into_file(args: argparse.Namespace) -> int:
    """--pairs / --images: match the pairs not yet in the HDF5 file --out into it. Returns the exit code: 0, 2
    for bad input, 130 when interrupted; every pair finished before either is kept."""
    matched = stored = 0
    try:
        root, pairs = pairs_to_match(args)
        check_batch_paths(args)
        check_sfm_outputs(args)
        settings = file_settings(args)
        done = stored_pairs(args.out, settings) if args.out.exists() else set()
        pairs = list(dict.fromkeys(pairs))  # a pair listed twice is matched once
        todo = [pair for pair in pairs if pair_key(*pair) not in done]
        stored = len(pairs) - len(todo)
        matcher = build_matcher(args) if todo else None
        if not args.out.exists():
            create_matches_file(args.out, settings)
        if todo:
            try:
                file = h5py.File(args.out, "r+")
            except OSError as error:
                raise InputError(f"cannot write to --out {args.out}: {write_failure(error)}") from None
            with file:
                if WRITING_GROUP in file:  # a pair cut short by a kill: never one of the file's
                    del file[WRITING_GROUP]
                read = lru_cache(maxsize=IMAGES_CACHED)(read_image)
                for name0, name1 in tqdm(todo, desc="matching", unit="pair", disable=None):  # None: on a terminal
                    paths = (root / name0, root / name1)
                    images = [read_grayscale(path, f"pair {name0} {name1}", read) for path in paths]
                    matches = match_images(matcher, *images, tuple(map(str, paths)))
                    check_room(args.out, sum(value.nbytes for value in matches.as_dict().values()))
                    try:
                        add_pair(file, (name0, name1), matches)
                    except OSError as error:
                        raise InputError(f"cannot write to --out {args.out}: {write_failure(error)}") from None
                    matched += 1
        exported = export_for_sfm(args, root, pairs) if args.colmap or args.hloc else None
    except InputError as error:
        kept = f"; the {matched} pairs matched before it are kept in {args.out}: run again to go on" if matched else ""
        print(f"match.py: error: {error}{kept}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"match.py: interrupted: matched {matched} pairs, {stored + matched} in {args.out}; the same command "
              f"goes on from there", file=sys.stderr)
        return 130
    if args.random_weights:
        print("warning: --random-weights: the model is untrained, its matches are meaningless "
              "(use this to check the pipeline only)", file=sys.stderr)
    print(f"matched {matched} pairs, {stored} already in {args.out}")
    if exported is not None:
        print(exported)
    return 0


def check_sfm_outputs(args: argparse.Namespace) -> None:
    """InputError, before anything is matched, when --colmap's database or --hloc's files exist (they are
    written new, never added to) or would land on --out or an input."""
    outputs = []
    if args.colmap is not None:
        outputs.append(("--colmap", args.colmap))
    if args.hloc is not None:
        outputs += [("--hloc", args.hloc / FEATURES_FILE), ("--hloc", args.hloc / MATCHES_FILE)]
    for flag, path in outputs:
        if path.exists():
            raise InputError(f"{flag} {path} exists: it is written new, never added to; give another path "
                             f"(nothing was matched or written)")
    try:
        check_no_output_on_input({"--out": args.out, "--pairs": args.pairs, "--checkpoint": args.checkpoint}, outputs)
    except ValueError as error:
        raise InputError(str(error)) from None


def export_for_sfm(args: argparse.Namespace, root: Path, pairs: list[tuple[str, str]]) -> str:
    """--colmap / --hloc: the matches of `pairs` in --out as one keypoint set per image (--quantization) written
    as a COLMAP database and/or hloc's files; the line that says what was written."""
    with h5py.File(args.out, "r") as file:
        found = {}
        for pair in pairs:
            group = file["/".join(pair_key(*pair))]
            found[pair] = Matches(*(group[key][()].astype(np.float64) for key in KEYS))
    features = sfm_features(found, PRESETS[args.quantization])
    try:
        cameras = {name: camera_of_photo(root / name) for name in features.keypoints}
    except ValueError as error:
        raise InputError(str(error)) from None
    keypoints = sum(len(points) for points in features.keypoints.values())
    written = []
    try:
        if args.hloc is not None:
            sizes = {name: (camera.width, camera.height) for name, camera in cameras.items()}
            written += map(str, write_hloc(args.hloc, features, sizes))
        if args.colmap is not None:
            write_database(args.colmap, features, cameras)
            written.append(str(args.colmap))
    except OSError as error:
        done = f" ({' and '.join(written)} written)" if written else ""
        raise InputError(f"cannot write the exports{done}: {write_failure(error)}") from None
    return (f"{keypoints} keypoints in {len(features.keypoints)} images ({args.quantization} quantization), "
            f"{sum(map(len, features.matches.values()))} matches -> {' and '.join(written)}")


def pairs_to_match(args: argparse.Namespace) -> tuple[Path, list[tuple[str, str]]]:
    """The image root and the (name0, name1) pairs of --pairs or --images, in order; InputError naming what
    is wrong with them."""
    if args.images is not None:
        if not args.images.is_dir():
            raise InputError(f"--images {args.images} is not a folder")
        names = folder_images(args.images)
        if len(names) < 2:
            raise InputError(f"--images {args.images} holds {len(names)} image(s) ({' '.join(IMAGE_SUFFIXES)}): "
                             f"nothing to pair")
        return args.images, paired_names(names, args.pairing[1])
    if not args.image_root.is_dir():
        raise InputError(f"--image-root {args.image_root} is not a folder")
    try:
        pairs = read_name_pairs(args.pairs)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"--pairs: {error}") from None
    if not pairs:
        raise InputError(f"--pairs {args.pairs} lists no pairs")
    return args.image_root, pairs


def check_batch_paths(args: argparse.Namespace) -> None:
    """InputError when --out would overwrite an input (--pairs, --checkpoint) or is no regular file."""
    try:
        check_no_output_on_input({"--pairs": args.pairs, "--checkpoint": args.checkpoint}, [("--out", args.out)])
        check_replaceable(args.out)
    except NotARegularFileError as error:
        raise InputError(f"--out {error}") from None
    except ValueError as error:
        raise InputError(str(error)) from None


def file_settings(args: argparse.Namespace) -> dict[str, str | int | float]:
    """What the matches depend on, the root attributes of the file: a run with other ones would mix two
    matchers' matches in it."""
    settings = {"matcher": args.matcher, "resize": args.resize}
    if args.matcher == "loftr":
        settings.update(checkpoint="random weights" if args.random_weights else str(args.checkpoint.resolve()),
                        coarse_threshold=args.coarse_threshold, pos_encoding=args.pos_encoding,
                        quadtree_topks=" ".join(map(str, args.quadtree_topks or ())),
                        precision=args.precision or "fp32")
    if args.affine is not None:  # every option, defaults too: a run with other defaults makes other matches
        settings["affine_simulation"] = " ".join(f"{key}={value}" for key, value in asdict(args.affine).items())
    return settings


def pair_key(name0: str, name1: str) -> tuple[str, str]:
    """The names of a pair's two nested groups: its image names, URL-quoted so that a '/' does not nest."""
    return quote(name0, safe=""), quote(name1, safe="")


def stored_pairs(path: Path, settings: dict) -> set[tuple[str, str]]:
    """The pairs (`pair_key`) already in the matches file at `path`, read only; InputError, the file as it
    was, when match.py did not write it or wrote it with other settings than `settings`."""
    unchanged = "give another --out (the file is unchanged)"
    try:
        with h5py.File(path, "r") as file:
            if file.attrs.get("format") != MATCHES_FILE_FORMAT:
                raise InputError(f"--out {path} is an HDF5 file that match.py did not write: {unchanged}")
            differences = settings_differences(dict(file.attrs), settings)
            if differences:
                raise InputError(f"--out {path} holds matches made with other settings ({'; '.join(differences)}): "
                                 f"run with those, or {unchanged}")
            return {(key0, key1) for key0, group in file.items()
                    if key0 != WRITING_GROUP and isinstance(group, h5py.Group) for key1 in group}
    except OSError as error:
        raise InputError(f"--out {path} is not an HDF5 file match.py can read ({write_failure(error)}): "
                         f"{unchanged}") from None


def settings_differences(stored: dict, settings: dict) -> list[str]:
    """'--FLAG X there, Y here' for each setting of `settings` that the file attributes `stored` hold otherwise
    (or lack), and each that the file holds beyond them."""
    stored = {key: value for key, value in stored.items() if key != "format"}
    return [f"--{key.replace('_', '-')} {_shown(stored.get(key))} there, {_shown(wanted)} here"
            for key, wanted in {**dict.fromkeys(stored), **settings}.items() if stored.get(key) != wanted]


def _shown(setting) -> str:
    return "(none)" if setting is None or setting == "" else str(setting)


def check_room(path: Path, size: int) -> None:
    """InputError saying that the disk is full unless the folder of the HDF5 file `path` has room for `size`
    more bytes of data in it, with a margin: HDF5 crashes the process (a segmentation fault) when it closes a
    file that a full disk cut short, so a pair is written only where it fits. The margin grows with the file
    (its group heaps and B-trees)."""
    folder = path.parent
    while not folder.is_dir():  # --out's folder is made with the file
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    needed = FREE_SPACE_MARGIN + 2 * size + (path.stat().st_size // 8 if path.is_file() else 0)
    if free < needed:
        raise InputError(f"cannot write to --out {path}: the disk is full ({free // 1024} kB free, {needed // 1024} "
                         f"kB wanted)")


def create_matches_file(path: Path, settings: dict) -> None:
    """A matches file without pairs, its root attributes `settings`; whole, or none at all."""
    check_room(path, 0)
    try:
        with written_atomically(path) as temporary, h5py.File(temporary, "w") as file:
            file.attrs.update({"format": MATCHES_FILE_FORMAT, **settings})
    except OSError as error:
        raise InputError(f"cannot write --out {path}: {write_failure(error)}") from None


def add_pair(file: h5py.File, names: tuple[str, str], matches: Matches) -> None:
    """The pair's matches as the group /NAME0/NAME1/ of `file`, whole or not at all: written into a group of its
    own, moved to its name (one link), flushed so that the file on disk holds it."""
    key0, key1 = pair_key(*names)
    try:
        group = file.create_group(WRITING_GROUP)
        for key, values in matches.as_dict().items():
            group.create_dataset(key, data=np.asarray(values, np.float32))
        file.require_group(key0)
        file.move(WRITING_GROUP, f"{key0}/{key1}")
    except BaseException:  # Ctrl-C, a full disk: no half pair left (after a kill, the next run drops it)
        if WRITING_GROUP in file:
            del file[WRITING_GROUP]
        raise
    file.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for bad input)."""
    args = parse_args(argv)
    if args.pairs is not None or args.images is not None:
        return match_into_file(args)
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
        base = base_matcher(args)
        matcher = wrapped(args, base)
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
                    np.savez(file, **{key: np.asarray(value, np.float32) for key, value in matches.as_dict().items()})
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
    elif args.pos_encoding == "auto" and base.family.positional_encoding(base.model.config) == "legacy":
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
