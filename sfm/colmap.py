"""A COLMAP database from one keypoint set per image (sfm/keypoints.py), what COLMAP's mapper, its GUI, GLOMAP and
`pycolmap.incremental_mapping` read as they are.

    CameraPrior(width, height, focal=None): one image's camera; no focal: COLMAP's own prior.
    camera_of_photo(path): a photo's upright size and its EXIF focal length, as COLMAP reads them.
    write_database(path, features, cameras, verify=True): cameras, one-camera rigs and frames, images,
        keypoints and raw matches; with `verify`, two-view geometries by COLMAP's geometric verification.

Keypoints here put pixel (c, r) at (c, r); COLMAP puts the image's corner at (0, 0), so pixel centres at
(c + 0.5, r + 0.5): they are written shifted by half a pixel.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.files import written_atomically
from utils.values import check_number

from .keypoints import SfMFeatures
from .reconstruct import verify_geometry

# COLMAP's ImageReaderOptions.default_focal_length_factor: without EXIF, focal = 1.2 x the image's larger side
PRIOR_FOCAL_FACTOR = 1.2
# COLMAP's Bitmap::ExifFocalLength: focal = FocalLengthIn35mmFilm / 35 x the larger side, in pixels
FILM_35MM = 35.0
EXIF_IFD, FOCAL_35MM_TAG, ORIENTATION_TAG = 0x8769, 0xA405, 0x0112
TURNED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that show the stored image a quarter turn round
CAMERA_MODEL = "SIMPLE_RADIAL"  # COLMAP's feature extractor's default: f, cx, cy, k
PIXEL_CENTRE = 0.5  # COLMAP's pixel (c, r) centre minus ours


@dataclass(frozen=True)
class CameraPrior:
    """One image's camera for the mapper to start from: its size in pixels, the focal length in pixels (None:
    COLMAP's prior, PRIOR_FOCAL_FACTOR x the larger side, which bundle adjustment then refines) and the
    principal point (x, y) in this project's pixels (None: the image's centre)."""

    width: int
    height: int
    focal: float | None = None
    principal_point: tuple[float, float] | None = None

    def __post_init__(self):
        check_number("width", self.width, 1, integer=True)
        check_number("height", self.height, 1, integer=True)
        check_number("focal", self.focal, 0, above=True, optional=True)
        if self.principal_point is not None and not np.isfinite(self.principal_point).all():
            raise ValueError(f"principal_point={self.principal_point!r}: must be finite")

    @property
    def has_prior_focal(self) -> bool:
        return self.focal is not None

    def params(self) -> list[float]:
        """SIMPLE_RADIAL's f, cx, cy, k in COLMAP's pixels, no distortion."""
        focal = self.focal if self.focal is not None else PRIOR_FOCAL_FACTOR * max(self.width, self.height)
        if self.principal_point is None:
            return [float(focal), self.width / 2, self.height / 2, 0.0]
        x, y = self.principal_point
        return [float(focal), float(x) + PIXEL_CENTRE, float(y) + PIXEL_CENTRE, 0.0]


def camera_of_photo(path: str | Path) -> CameraPrior:
    """The camera of the photo at `path` as the matchers see it: its size once turned upright by its EXIF
    orientation (utils.images reads photos so), and the focal length its EXIF 35 mm equivalent gives (COLMAP's
    rule), None without one. Reads the header only. ValueError naming the file when it is no image PIL reads."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            exif = image.getexif()
            turned = exif.get(ORIENTATION_TAG, 1) in TURNED_ORIENTATIONS
            focal_35mm = exif.get_ifd(EXIF_IFD).get(FOCAL_35MM_TAG)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:  # PIL's errors for bad files
        raise ValueError(f"cannot read the size of image {path}: {error}") from None
    if turned:
        width, height = height, width
    try:
        focal = float(focal_35mm) / FILM_35MM * max(width, height) if focal_35mm else None
    except (TypeError, ValueError):  # a malformed tag: COLMAP's prior instead
        focal = None
    return CameraPrior(width, height, focal if focal and focal > 0 and np.isfinite(focal) else None)


def write_database(path: str | Path, features: SfMFeatures, cameras: dict[str, CameraPrior],
                   verify: bool = True) -> dict[str, int]:
    """Write `features` to a new COLMAP database at `path`: per image (in `features.keypoints`' order) a camera
    from `cameras[name]`, a one-camera rig and a frame, the image, its keypoints; every pair's raw matches; and
    with `verify` the two-view geometries (COLMAP's geometric verification, one thread), which the mapper
    reads. The file appears only once complete. Returns {image name: COLMAP image id}.
    FileExistsError when `path` exists (a database is never added to or replaced); KeyError naming an image
    without a camera."""
    import pycolmap  # only the export needs it

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: exists; a COLMAP database is written new (choose another path)")
    missing = [name for name in features.keypoints if name not in cameras]
    if missing:
        raise KeyError(f"no camera for image {missing[0]!r}")
    with written_atomically(path) as partial:
        database = pycolmap.Database.open(str(partial))
        try:
            ids = {name: _write_image(database, pycolmap, name, keypoints, cameras[name])
                   for name, keypoints in features.keypoints.items()}
            for (name0, name1), found in features.matches.items():
                database.write_matches(ids[name0], ids[name1], np.ascontiguousarray(found, np.uint32))
        finally:
            database.close()
        if verify:
            verify_geometry(partial)
    return ids


def _write_image(database, pycolmap, name: str, keypoints: np.ndarray, camera: CameraPrior) -> int:
    """One image's camera, rig, frame, image and keypoints; its image id."""
    camera_id = database.write_camera(pycolmap.Camera(
        model=CAMERA_MODEL, width=camera.width, height=camera.height, params=camera.params(),
        has_prior_focal_length=camera.has_prior_focal))
    sensor = pycolmap.sensor_t(pycolmap.SensorType.CAMERA, camera_id)
    rig = pycolmap.Rig()
    rig.add_ref_sensor(sensor)
    rig_id = database.write_rig(rig)
    image_id = database.write_image(pycolmap.Image(name=name, camera_id=camera_id))
    frame = pycolmap.Frame()
    frame.rig_id = rig_id
    frame.add_data_id(pycolmap.data_t(sensor, image_id))
    database.write_frame(frame)
    database.write_keypoints(image_id, np.ascontiguousarray(np.asarray(keypoints) + PIXEL_CENTRE, np.float32))
    return image_id
