"""Reading images and depth maps, with errors that name the file; checking their headers without decoding."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

# Photo formats that the datasets look for in a folder (all decoded by cv2.imread); lower case, with the dot
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


def read_depth_h5(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 depth in metres of a MegaDepth `.h5` file (dataset `depth`), 0 where unknown as MegaDepth
    writes it. MegaDepth stores depth at its image's resolution, so the declared shape must be the image's
    `shape` (H, W): checked from the file's metadata before a value is read, so that a small file declaring a
    huge map (through a fill value) allocates nothing. ValueError naming the file for another shape or dtype, a
    link, and for NaN, infinite or negative values (a broken export)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth map not found: {path}")
    try:
        with h5py.File(path, "r") as file:
            dataset = _depth_dataset(file, path)
            if dataset.shape != tuple(shape):
                raise ValueError(f"depth map {path} declares {_size(dataset.shape)} but its image is {_size(shape)}: "
                                 f"the geometry needs them aligned")
            depth = dataset[()].astype(np.float32)
    except (OSError, KeyError) as error:
        raise ValueError(f"cannot read depth map {path}: {error}") from None
    check_depth(depth, path)
    return depth


def _size(shape: tuple[int, ...]) -> str:
    """(H, W) as "WxH", as image sizes are written."""
    return "x".join(map(str, shape[::-1]))


def _depth_dataset(file, path: Path):
    """The dataset `depth` of an open `.h5` depth map, checked from its metadata: stored in the file (no soft
    or external link, no external or virtual storage, which read other files), 2-D, of real numbers."""
    import h5py

    link = file.get("depth", getlink=True)
    if not isinstance(link, h5py.HardLink) or not isinstance(file["depth"], h5py.Dataset):
        raise ValueError(f"depth map {path} has no dataset 'depth' stored in the file")
    dataset = file["depth"]
    if dataset.dtype.kind not in "fiu":
        raise ValueError(f"depth map {path}: dataset 'depth' has dtype {dataset.dtype}, not real numbers")
    if dataset.ndim != 2:
        raise ValueError(f"depth map {path} has shape {dataset.shape}, expected (H, W)")
    if dataset.external or dataset.is_virtual:
        raise ValueError(f"depth map {path} keeps its data in other files (external or virtual storage)")
    return dataset


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_image_header(path: str | Path) -> None:
    """FileNotFoundError when `path` is not a file, ValueError when its first bytes are not the signature of a
    format OpenCV reads. Nothing is decoded: a file cut short after its header passes here and fails when read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if not cv2.haveImageReader(str(path)):
        raise ValueError(f"image {path} does not start as an image OpenCV reads (empty, corrupt or another format)")


def check_depth_h5_header(path: str | Path, max_side: int) -> None:
    """FileNotFoundError when `path` is not a file, ValueError when it does not start as an HDF5 file or its
    dataset `depth` is not a 2-D map of real numbers at most `max_side` on each side (the dataset's
    depth_pad_size, which every map is padded to): read from the metadata, nothing is decoded."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth map not found: {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"depth map {path} does not start as an HDF5 file (empty, corrupt or another format)")
    try:
        with h5py.File(path, "r") as file:
            shape = _depth_dataset(file, path).shape
    except (OSError, KeyError) as error:
        raise ValueError(f"cannot read depth map {path}: {error}") from None
    if max(shape) > max_side:
        raise ValueError(f"depth map {path} declares {_size(shape)}, larger than depth_pad_size {max_side}: a "
                         f"depth map has its image's size")


# The largest side a depth PNG may declare: ScanNet's depth sensor gives 640x480 (and LoFTR's export keeps it);
# 4096 leaves room for any RGB-D sensor while keeping a decoded map under 32 MB.
MAX_DEPTH_PNG_SIDE = 4096


def check_depth_png_header(path: str | Path, max_shape: tuple[int, int] = (MAX_DEPTH_PNG_SIDE, MAX_DEPTH_PNG_SIDE)
                           ) -> None:
    """FileNotFoundError when `path` is not a file, ValueError when it does not start as a PNG, is not 16-bit
    single-channel (millimetres), or declares more than `max_shape` (H, W) pixels: read from the PNG's header,
    nothing is decoded (a small PNG may declare gigapixels)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth map not found: {path}")
    with open(path, "rb") as file:
        head = file.read(26)  # signature (8), IHDR's length and type (8), width, height (4 each), bit depth, colour
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR" or len(head) < 26:
        raise ValueError(f"depth map {path} does not start as a PNG file (empty, corrupt or another format)")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if (head[24], head[25]) != (16, 0):
        raise ValueError(f"depth map {path} is a {head[24]}-bit PNG of colour type {head[25]}, not 16-bit grey "
                         f"(millimetres)")
    if height > max_shape[0] or width > max_shape[1]:
        raise ValueError(f"depth map {path} declares {width}x{height} pixels, more than {max_shape[1]}x"
                         f"{max_shape[0]}")


@contextmanager
def naming(what: str) -> Iterator[None]:
    """A FileNotFoundError or ValueError (of any subclass) raised inside, re-raised as the same of the two with
    its message prefixed by `what`."""
    try:
        yield
    except (FileNotFoundError, ValueError) as error:
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError
        raise kind(f"{what}: {error}") from None


def check_depth(depth: np.ndarray, path: str | Path) -> None:
    """ValueError naming `path` when the depth map holds NaN, infinite or negative values."""
    bad = ~np.isfinite(depth) | (depth < 0)
    if bad.any():
        raise ValueError(f"depth map {path} has {int(bad.sum())} NaN, infinite or negative values: "
                         f"write 0 where depth is unknown")


def listed_files(list_file: str | Path, folder: str | Path | None = None, suffix: str = ".npz") -> list[str]:
    """The files named in `list_file`, one per line (blank lines and # comments skipped), as LoFTR's
    TRAIN_LIST_PATH files name scene-info or index files: relative to `folder` (default: the list file's
    own folder), `suffix` added where a name lacks it."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"list file not found: {list_file}")
    folder = Path(folder) if folder is not None else list_file.parent
    names = [line.split("#")[0].strip() for line in list_file.read_text().splitlines()]
    return [str(folder / (name if name.endswith(suffix) else name + suffix)) for name in names if name]


def write_bytes(path: str | Path, data: bytes) -> None:
    """`data` written to `path` by Python, whose writes raise OSError (ENOSPC: a full disk) where a C library
    may ignore the error or crash: h5py segfaulted closing a file it could not flush."""
    with open(path, "wb") as file:
        file.write(data)


def write_image(path: str | Path, image: np.ndarray, params: tuple[int, ...] = ()) -> None:
    """An image encoded by OpenCV in the format of `path`'s suffix (JPEG quality etc. in `params`), written by
    `write_bytes`; ValueError naming the path when OpenCV cannot encode it."""
    ok, encoded = cv2.imencode(Path(path).suffix, image, list(params))
    if not ok:
        raise ValueError(f"cannot encode an image for {path}")
    write_bytes(path, encoded.tobytes())


def write_depth_h5(path: str | Path, depth: np.ndarray) -> None:
    """(H, W) depth in metres as MegaDepth's `.h5` (dataset `depth`, gzip), built in memory and written by
    `write_bytes`: a full disk is an OSError, never a crash in HDF5's close."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_dataset("depth", data=depth, compression="gzip")
    write_bytes(path, buffer.getvalue())
