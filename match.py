"""Match two images with LoFTR: matched keypoints (original-image pixels) and confidences to an .npz,
optionally a picture of the matches.

    python match.py a.jpg b.jpg --checkpoint outdoor_ds.ckpt --out outputs/ab/matches.npz --plot outputs/ab/matches.png
    python match.py --demo --random-weights --out outputs/demo/matches.npz

Bad input (a missing or undecodable image, an image too small, a checkpoint that does not fit) is reported
on one line on stderr with exit code 2, and no output file is written.
"""

import argparse
import os
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

from data.io import read_grayscale as read_image
from data.synthetic.texture import make_texture, warp_homography
from evaluation.plots import plot_matches
from models.checkpoint import CheckpointError, load_weights, read_state_dict
from models.loftr import LoFTR, LoFTRConfig

DEMO_SIZE = (480, 640)  # (height, width) of the generated demo image


class InputError(Exception):
    """Something the user gave cannot be used; main reports it on one line and exits with 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--pos-encoding", choices=["auto", "legacy", "fixed"], default="auto",
                        help="positional encoding: legacy for the released official weights, fixed for models trained "
                             "with the corrected one; auto picks legacy for official checkpoints (matcher.* keys)")
    parser.add_argument("--resize", type=_non_negative_int, default=640, metavar="PIXELS",
                        help="resize each image so its longer side has this many pixels, keeping the aspect ratio "
                             "(0: original size); keypoints are reported in original pixels either way")
    parser.add_argument("--coarse-threshold", type=_unit_float, default=0.2, metavar="CONF",
                        help="minimum coarse confidence of a match, in [0, 1] (official: 0.2)")
    parser.add_argument("--device", type=_device, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the model runs: cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--out", type=Path, required=True,
                        help=".npz written with keypoints0, keypoints1 (N, 2) (x, y) pixels and confidence (N,)")
    parser.add_argument("--plot", type=Path, help="also draw the matches to this picture (.png, .pdf, .svg, ...)")
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
    return args


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("CUDA is not available on this machine")
    return device


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def read_grayscale(path: Path, name: str) -> np.ndarray:
    """The (H, W) uint8 grayscale image at `path`; `name` says which input it is in error messages."""
    try:
        return read_image(path)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{name}: {error}") from None


def resize_longer_side(image: np.ndarray, longer: int) -> tuple[np.ndarray, tuple[float, float]]:
    """`image` (H, W) resized so that its longer side is `longer` pixels, aspect ratio kept (0: unchanged),
    and the factors (x, y) = (original width / new width, original height / new height) that take
    network-input pixels back to original pixels (the model's `scale`)."""
    height, width = image.shape
    if longer == 0 or longer == max(height, width):
        return image, (1.0, 1.0)
    factor = longer / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))  # (w, h), as OpenCV wants it
    # area averaging avoids aliasing when shrinking; bilinear when enlarging, where area acts like nearest
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), (width / size[0], height / size[1])


def build_model(args: argparse.Namespace) -> LoFTR:
    """The LoFTR of the command line: checkpoint read, positional encoding chosen, weights loaded."""
    state_dict = None
    if args.checkpoint is not None:
        try:
            state_dict = read_state_dict(args.checkpoint, trusted=args.trust_checkpoint)
        except (FileNotFoundError, CheckpointError) as error:
            raise InputError(_one_line(str(error))) from None

    if args.pos_encoding == "auto":
        legacy = state_dict is not None and any(key.startswith("matcher.") for key in state_dict)
    else:
        legacy = args.pos_encoding == "legacy"
    config = LoFTRConfig(temp_bug_fix=not legacy)
    config.match_coarse.threshold = args.coarse_threshold
    if state_dict is not None and any(key.endswith("coarse_matching.bin_score") for key in state_dict):
        config.match_coarse.match_type = "sinkhorn"  # a LoFTR-OT checkpoint: its dustbin score says so

    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same random model on every run, so runs can be compared
            return LoFTR(config).eval()

    model = LoFTR(config)
    try:
        load_weights(model, state_dict)
    except CheckpointError as error:
        raise InputError(f"checkpoint {args.checkpoint}: {_one_line(str(error))}") from None
    return model.eval()


def _one_line(text: str) -> str:
    """A multi-line message (load_weights lists missing, unexpected and mismatched keys) as one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()


def match_images(
    model: LoFTR, image0: np.ndarray, image1: np.ndarray, resize: int, names: tuple[str, str]
) -> dict[str, np.ndarray]:
    """Matches between two (H, W) uint8 images, resized to `resize` (longer side; 0 keeps them) for the network.

    Returns float32 arrays: keypoints0, keypoints1 (N, 2) (x, y) in each image's original pixels, confidence (N,).
    """
    device = next(model.parameters()).device
    batch = {}
    for index, (image, name) in enumerate(zip((image0, image1), names)):
        resized, scale = resize_longer_side(image, resize)
        if min(resized.shape) < model.coarse_stride:
            after = f" after --resize {resize}" if resize else ""
            raise InputError(
                f"{name}: {resized.shape[1]}x{resized.shape[0]} px{after} is smaller than one coarse cell "
                f"({model.coarse_stride} px on each side)"
            )
        batch[f"image{index}"] = torch.from_numpy(resized).to(device, torch.float32)[None, None] / 255
        batch[f"scale{index}"] = torch.tensor([scale], dtype=torch.float32, device=device)
    with torch.inference_mode():
        result = model(batch)
    return {
        "keypoints0": result.keypoints0.float().cpu().numpy(),
        "keypoints1": result.keypoints1.float().cpu().numpy(),
        "confidence": result.confidence.float().cpu().numpy(),
    }


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
    image1 = warp_homography(image0, np.linalg.inv(to_centre) @ about_centre @ to_centre)
    paths = folder / "demo_image0.png", folder / "demo_image1.png"
    folder.mkdir(parents=True, exist_ok=True)
    for path, image in zip(paths, (image0, image1)):
        if not cv2.imwrite(str(path), image):
            raise OSError(f"cannot write {path}")
    return paths


@contextmanager
def written_atomically(path: Path):
    """A temporary path beside `path`, with the same suffix so writers pick the same format, that replaces
    `path` only once written in full: a failed or interrupted run leaves no half-written output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for bad input)."""
    args = parse_args(argv)
    try:
        if args.demo:
            try:
                args.image0, args.image1 = write_demo_images(args.out.parent)
            except OSError as error:
                raise InputError(f"--out {args.out}: cannot write the demo images there ({error})") from None
        names = (f"image0 {args.image0}", f"image1 {args.image1}")
        image0, image1 = read_grayscale(args.image0, "image0"), read_grayscale(args.image1, "image1")
        model = build_model(args).to(args.device)
        matches = match_images(model, image0, image1, args.resize, names)

        title = f"{len(matches['confidence'])} matches" + (" (untrained model)" if args.random_weights else "")
        try:
            # both outputs are complete before either replaces a file, so a failure leaves neither
            with ExitStack() as outputs:
                with open(outputs.enter_context(written_atomically(args.out)), "wb") as file:
                    np.savez(file, **matches)
                if args.plot is not None:
                    plot_matches(image0, image1, matches["keypoints0"], matches["keypoints1"], matches["confidence"],
                                 outputs.enter_context(written_atomically(args.plot)), title, value_range=(0.0, 1.0))
        except OSError as error:
            raise InputError(f"cannot write output: {error}") from None
    except InputError as error:
        print(f"match.py: error: {error}", file=sys.stderr)
        return 2

    if args.random_weights:
        print("warning: --random-weights: the model is untrained, its matches are meaningless "
              "(use this to check the pipeline only)", file=sys.stderr)
    elif args.pos_encoding == "auto" and not model.config.temp_bug_fix:
        print("note: official checkpoint (matcher.* keys), so the legacy positional encoding that the released "
              "outdoor_ds/indoor_ds weights need; pass --pos-encoding fixed for weights trained with the corrected "
              "one (e.g. indoor_ds_new)", file=sys.stderr)
    written = f"{args.out}" + (f" and {args.plot}" if args.plot is not None else "")
    print(f"{len(matches['confidence'])} matches -> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
