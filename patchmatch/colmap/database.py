"""A COLMAP database file: create and open it, write images, keypoints and matches, read them back.

Some pycolmap misuse aborts the whole process instead of raising (wrong dtype or shape, an image
id that does not exist, a second write of the same pair, a transaction whose commit finds the
disk full): every function here validates its input first and raises ``ValueError``,
``FileExistsError`` or ``OSError`` (``ENOSPC``) with the file and the problem named.
Keypoints are passed in and returned in the OpenCV pixel convention; the +0.5 shift to COLMAP's
is applied here (:mod:`patchmatch.colmap.convention`).
"""

from __future__ import annotations

import contextlib
import functools
import errno
import logging
import os
import shutil
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from .convention import colmap_to_opencv, opencv_to_colmap

logger = logging.getLogger(__name__)

#: Focal length prior (pixels) = ``DEFAULT_FOCAL_FACTOR * max(width, height)``
#: when the image carries no EXIF focal length (COLMAP's own default).
DEFAULT_FOCAL_FACTOR = 1.2

#: Bytes a write needs per byte of data: SQLite writes a transaction's pages to the WAL file,
#: then copies them into the database file at the checkpoint.
WRITE_SPACE_FACTOR = 2
#: Free bytes every database write needs besides its data (page headers, indices, the WAL index);
#: also the free space under which a database that cannot be opened is reported as a full disk.
FREE_SPACE_MARGIN = 1 << 20

_SQLITE_MAGIC = b"SQLite format 3\x00"


class NotADatabaseError(ValueError):
    """The file is not a COLMAP database, or a truncated or corrupt one."""


class MatchesExistError(ValueError):
    """A pair's matches are already in the database (COLMAP keeps one entry per pair)."""


class DatabaseInUseError(OSError):
    """Another process holds the database's write lock (SQLite: "database is locked")."""


@dataclass(frozen=True)
class CameraInfo:
    """What :func:`add_images` needs to create one camera and one image.

    Attributes:
        name: image name in the database (path relative to the image folder,
            posix separators).
        width: width in pixels of the image as the keypoints see it.
        height: height in pixels.
        focal: focal-length prior in pixels; ``None`` = ``1.2 * max(w, h)``.
    """

    name: str
    width: int
    height: int
    focal: float | None = None


@dataclass(frozen=True)
class CameraIntrinsics:
    """Known intrinsics shared by every image (a calibrated camera), as COLMAP takes them
    (``colmap feature_extractor --ImageReader.camera_model M --ImageReader.camera_params P``).

    Attributes:
        model: a COLMAP camera model name: ``"SIMPLE_PINHOLE"`` (f, cx, cy), ``"PINHOLE"``
            (fx, fy, cx, cy), ``"SIMPLE_RADIAL"`` (f, cx, cy, k), ``"RADIAL"`` (f, cx, cy, k1, k2),
            ``"OPENCV"`` (fx, fy, cx, cy, k1, k2, p1, p2), or any other of COLMAP's models.
        params: the model's parameters in COLMAP's order, in pixels of the original images; the
            principal point is measured from the top-left corner of the top-left pixel (COLMAP's
            convention: OpenCV's ``cx + 0.5``, ``cy + 0.5``).
        refine: refine the focal length and distortion in bundle adjustment from these values
            (as priors); by default they are held fixed. The principal point is never refined.

    Raises:
        ValueError: an unknown model, the wrong number of parameters for it, a non-finite
            parameter or a focal length that is not positive.
    """

    model: str
    params: tuple[float, ...]
    refine: bool = False

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(float(v) for v in self.params))
        self.camera(100, 100)  # raises on an unknown model or a wrong parameter count
        if not all(np.isfinite(self.params)):
            raise ValueError(f"camera parameters must be finite numbers, got {list(self.params)}")
        focal = list(self.focal_lengths)
        if any(f <= 0 for f in focal):
            raise ValueError(f"camera model {self.model}: focal length must be positive, got {focal}")

    @classmethod
    def parse(cls, model: str, params: str, refine: bool = False) -> CameraIntrinsics:
        """From the command line's ``--camera-model`` and ``--camera-params "f,cx,cy,k"``.

        Raises:
            ValueError: ``params`` is not a comma-separated list of numbers, or see the class.
        """
        try:
            values = tuple(float(v) for v in params.replace(" ", "").split(","))
        except ValueError:
            raise ValueError(f"camera parameters must be comma-separated numbers, got {params!r}") from None
        return cls(model.upper(), values, refine)

    def camera(self, width: int, height: int) -> pycolmap.Camera:
        """A pycolmap camera of this model and these parameters for images of ``width`` × ``height`` px.

        Raises:
            ValueError: an unknown model, or the wrong number of parameters for it.
        """
        models = [m for m in pycolmap.CameraModelId.__members__ if m != "INVALID"]
        if self.model not in models:
            raise ValueError(f"unknown camera model {self.model!r}; COLMAP's models: {', '.join(sorted(models))}")
        camera = pycolmap.Camera.create_from_model_name(0, self.model, 1.0, int(width), int(height))
        if len(self.params) != camera.params.size:
            names = camera.params_info
            raise ValueError(f"camera model {self.model} takes {camera.params.size} parameters ({names}), "
                             f"got {len(self.params)}")  # fmt: skip
        camera.params = np.asarray(self.params, dtype=np.float64)
        camera.has_prior_focal_length = True
        return camera

    @functools.cached_property
    def principal_point(self) -> tuple[float, float]:
        """``(cx, cy)`` in pixels (COLMAP's convention)."""
        camera = self.camera(1, 1)
        cx, cy = (float(camera.params[i]) for i in camera.principal_point_idxs())
        return cx, cy

    @functools.cached_property
    def focal_lengths(self) -> tuple[float, ...]:
        """The focal length(s) in pixels: ``(f,)`` or ``(fx, fy)``."""
        camera = self.camera(1, 1)
        return tuple(float(camera.params[i]) for i in camera.focal_length_idxs())

    def principal_point_inside(self, width: int, height: int) -> bool:
        """Whether the principal point lies inside an image of ``width`` × ``height`` px."""
        cx, cy = self.principal_point
        return 0 < cx < width and 0 < cy < height

    def __str__(self) -> str:
        """As the command line gives it: ``"PINHOLE 1520.4,1525.9,302.82,247.37"``."""
        return f"{self.model} {','.join(f'{v:g}' for v in self.params)}"


@dataclass(frozen=True)
class DatabaseSummary:
    """Counts read from a database (see :func:`database_summary`): ``verified_pairs`` are the pairs
    whose two-view geometry kept inlier matches (COLMAP also stores the rejected ones, empty)."""

    images: int
    keypoints: int
    matched_pairs: int
    matches: int
    verified_pairs: int
    inlier_matches: int


@dataclass
class DatabaseImage:
    """An image of an existing database with its features.

    Attributes:
        image_id: COLMAP image id.
        name: image name (path relative to the image folder).
        width: camera width in pixels. height: camera height in pixels.
        keypoints: (N, 6) float32 ``[x, y, a11, a12, a21, a22]`` in COLMAP's convention
            (pixel centres at +0.5); (N, 0) when the image has none.
        descriptors: (N, D) uint8 descriptors (SIFT: D = 128, COLMAP's L1-root normalisation).
    """

    image_id: int
    name: str
    width: int
    height: int
    keypoints: np.ndarray
    descriptors: np.ndarray


# --------------------------------------------------------------------------
# Opening, and the errors a file or a disk can cause
# --------------------------------------------------------------------------
def _sqlite_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an intact SQLite file, from its 100-byte header; ``None`` if it can."""
    size = path.stat().st_size
    if size == 0:  # an empty file is an empty SQLite database
        return None
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(_SQLITE_MAGIC):
        return "no SQLite header"
    if len(header) < 100:
        return f"{size} bytes, shorter than an SQLite header"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    wal = path.with_name(path.name + "-wal")
    pending = wal.is_file() and wal.stat().st_size > 0  # pages not yet copied into the file
    # the page count is valid only when the "version-valid-for" number equals the change counter
    if header[92:96] == header[24:28] and not pending and size < pages * page_size:
        return f"{size} bytes where its header says {pages * page_size}"
    return None


#: Tables every COLMAP database has (COLMAP creates them when it opens a new file).
COLMAP_TABLES = ("cameras", "images", "keypoints", "descriptors", "matches", "two_view_geometries")


def _read_only(path: Path) -> sqlite3.Connection:
    """An SQLite connection that cannot write to ``path`` (pycolmap's open writes its schema)."""
    return sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro", uri=True, timeout=0.5)


def _missing_tables(path: Path) -> list[str] | None:
    """COLMAP tables ``path`` lacks, read without writing to it; ``None`` when SQLite cannot
    read it now (locked, or damaged: opening it says which)."""
    try:
        with contextlib.closing(_read_only(path)) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:
        return None
    return [t for t in COLMAP_TABLES if t not in tables]


def peek_keypoint_columns(database: str | os.PathLike) -> dict[str, int]:
    """``{image name: columns of its keypoints}`` (0 when it has none), read without writing to
    the database: what a command checks before it opens the file with pycolmap.

    Raises:
        FileNotFoundError, NotADatabaseError: see :func:`require_database`.
    """
    database = require_database(database)
    try:
        with contextlib.closing(_read_only(database)) as con:
            rows = con.execute("SELECT images.name, COALESCE(keypoints.cols, 0) FROM images "
                               "LEFT JOIN keypoints ON keypoints.image_id = images.image_id").fetchall()  # fmt: skip
    except sqlite3.Error as error:
        _raise_if_unwritable(database)  # SQLite cannot read a database in WAL mode in a folder it cannot write
        raise NotADatabaseError(f"{database}: not a COLMAP database or truncated (SQLite: {error})") from None
    return {str(name): int(cols) for name, cols in rows}


def require_database(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` after checking, without writing to it, that it is
    an intact SQLite file holding COLMAP's tables.

    Raises:
        FileNotFoundError: the file does not exist.
        NotADatabaseError: the file is empty, has no SQLite header, is shorter than its header
            says, or is an SQLite database without COLMAP's tables (it is left as it is).
        PermissionError: SQLite cannot open it because the file or its folder cannot be written.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COLMAP database {path} does not exist (create_database first)")
    if path.stat().st_size == 0:
        raise NotADatabaseError(f"{path}: not a COLMAP database (an empty file)")
    problem = _sqlite_problem(path)
    if problem:
        _raise_if_unwritable(path)  # SQLite cannot read a database in WAL mode in a folder it cannot write
        raise NotADatabaseError(f"{path}: not a COLMAP database or truncated ({problem})")
    missing = _missing_tables(path)
    if missing:
        raise NotADatabaseError(f"{path}: an SQLite database but not COLMAP's (no table {', '.join(missing)}); "
                                "it was left as it is")  # fmt: skip
    return path


def _raise_if_unwritable(path: Path) -> None:
    """Raises ``PermissionError`` naming ``path`` when the database file, SQLite's files beside it
    (``-wal``, ``-shm``, ``-journal``) or its folder (where SQLite writes them) cannot be written."""
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        try:
            if file == path or file.exists():
                with open(file, "r+b"):
                    pass
        except OSError as error:
            raise PermissionError(f"{file}: cannot be written ({error.strerror}): a COLMAP database is "
                                  "opened for writing; make it writable or work on a copy") from None  # fmt: skip
    try:
        with tempfile.TemporaryFile(dir=path.resolve().parent):
            pass
    except OSError as error:
        raise PermissionError(f"{path}: its folder {path.parent} cannot be written ({error.strerror}), where SQLite "
                              "keeps its journal; make it writable or work on a copy") from None  # fmt: skip


def _locked(path: Path) -> bool:
    """Whether another connection holds ``path``'s write lock (tried for 0.5 s, nothing written)."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=0.5, isolation_level=None)) as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        return "locked" in str(error) or "busy" in str(error)
    return False


def _free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or would hold it)."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def disk_full_error(path: str | os.PathLike, needed: int | None = None) -> OSError:
    """An ``OSError`` (``ENOSPC``) naming ``path`` and the free space left."""
    path = Path(path)
    need = f", {needed / 2**20:.1f} MiB needed" if needed else ""
    return OSError(errno.ENOSPC, f"disk full: cannot write {path} ({_free_bytes(path) / 2**20:.1f} MiB free{need})")


def ensure_free_space(path: str | os.PathLike, data_bytes: int = 0, factor: int = WRITE_SPACE_FACTOR) -> None:
    """Raises before a write of ``data_bytes`` into ``path`` (a database, by default) that would not fit.

    COLMAP aborts the whole process when SQLite finds the disk full while committing a
    transaction, and writes truncated model files without an error: checking the free space
    first turns both into an exception.

    Raises:
        OSError: ``ENOSPC``, fewer than ``factor * data_bytes + FREE_SPACE_MARGIN`` bytes free.
    """
    path = Path(path)
    needed = factor * int(data_bytes) + FREE_SPACE_MARGIN
    if _free_bytes(path) < needed:
        raise disk_full_error(path, needed)


#: SQLite's words (in pycolmap's ``RuntimeError``) for a damaged file.
_DAMAGED = ("database disk image is malformed", "file is not a database")


@contextlib.contextmanager
def colmap_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raises pycolmap's ``RuntimeError`` for SQLite's "database or disk is full" and an
    ``ENOSPC`` as :func:`disk_full_error`, and SQLite's words for a damaged file as
    :class:`NotADatabaseError`, naming ``path``."""
    try:
        yield
    except RuntimeError as error:
        if "database or disk is full" in str(error):
            raise disk_full_error(path) from None
        damage = [words for words in _DAMAGED if words in str(error)]
        if damage:
            raise NotADatabaseError(f"{path}: not a COLMAP database or truncated (SQLite: {damage[0]})") from None
        raise
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise disk_full_error(getattr(error, "filename", None) or path) from None
        raise


@contextlib.contextmanager
def open_database(path: str | os.PathLike) -> Iterator[pycolmap.Database]:
    """``pycolmap.Database.open`` with its failures said plainly; closed on exit.

    Raises:
        FileNotFoundError: the file does not exist.
        NotADatabaseError: COLMAP cannot open the file as a database (not one, or truncated).
        DatabaseInUseError: another process holds the database's write lock.
        PermissionError: the file or its folder cannot be written.
        OSError: ``ENOSPC``, the disk is full (opening writes the schema and the WAL index).
    """
    path = require_database(path)
    try:
        db = pycolmap.Database.open(str(path))
    except RuntimeError as error:  # "No registered database factory succeeded.": the cause is only logged
        if "database or disk is full" in str(error) or _free_bytes(path) < FREE_SPACE_MARGIN:
            raise disk_full_error(path) from None
        if "locked" in str(error) or _locked(path):
            raise DatabaseInUseError(f"{path}: in use by another process (SQLite: database is locked); "
                                     "wait for it to finish, or close the program holding it") from None  # fmt: skip
        _raise_if_unwritable(path)
        raise NotADatabaseError(f"{path}: not a COLMAP database or truncated (SQLite cannot read it)") from None
    with db, colmap_errors(path):
        yield db


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------
def create_database(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create an empty COLMAP database file.

    Args:
        path: database file to create (parent folders are created).
        overwrite: delete an existing file first; otherwise an existing file
            is an error.

    Returns:
        The path of the new database.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        OSError: ``ENOSPC``, the disk is full.
    """
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"COLMAP database {path} already exists; pass overwrite=True to replace it")
        path.unlink()
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_free_space(path)
    try:
        pycolmap.Database.open(str(path)).close()
    except RuntimeError as error:
        if "database or disk is full" in str(error) or _free_bytes(path) < FREE_SPACE_MARGIN:
            raise disk_full_error(path) from None
        raise
    return path


def exif_focal(image_path: str | os.PathLike) -> float | None:
    """Focal length in pixels from the image's EXIF data, if it has one.

    Args:
        image_path: the image file.

    Returns:
        The focal length in pixels of the file as stored (before any EXIF
        rotation), or ``None`` when the file carries no usable EXIF focal
        length or COLMAP cannot read it.
    """
    try:
        camera = pycolmap.infer_camera_from_image(str(image_path))
    except Exception as error:  # noqa: BLE001 - any reader failure means "no prior"
        logger.debug("no EXIF focal for %s: %s", image_path, error)
        return None
    if not camera.has_prior_focal_length:
        return None
    return float(camera.mean_focal_length())


def _check_camera_infos(database: Path, cameras: Sequence[CameraInfo], single_camera: bool,
                        intrinsics: CameraIntrinsics | None) -> None:  # fmt: skip
    names = [info.name for info in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate image names given for {database}")
    for info in cameras:
        if info.width <= 0 or info.height <= 0:
            raise ValueError(f"image {info.name!r}: invalid size {info.width}x{info.height}")
        if info.focal is not None and not (np.isfinite(info.focal) and info.focal > 0):
            raise ValueError(f"image {info.name!r}: invalid focal length {info.focal}")
        if intrinsics is not None and not intrinsics.principal_point_inside(info.width, info.height):
            raise ValueError(f"image {info.name!r} ({info.width}x{info.height} px): the given camera's principal point "
                             f"lies outside it ({intrinsics}, pixels of the original image)")  # fmt: skip
    if single_camera and len({(info.width, info.height) for info in cameras}) > 1:
        raise ValueError(f"single_camera needs images of one size; got {sorted({(i.width, i.height) for i in cameras})}")


def _write_camera_and_rig(db: pycolmap.Database, info: CameraInfo,
                          intrinsics: CameraIntrinsics | None) -> tuple[int, int]:  # fmt: skip
    """One camera (``intrinsics``, or SIMPLE_RADIAL with focal ``info.focal`` as a prior or the
    default guess) and its trivial rig; returns ``(camera_id, rig_id)``."""
    if intrinsics is not None:
        camera = intrinsics.camera(info.width, info.height)
    else:
        prior = info.focal is not None
        focal = float(info.focal) if prior else DEFAULT_FOCAL_FACTOR * max(info.width, info.height)
        camera = pycolmap.Camera.create_from_model_name(0, "SIMPLE_RADIAL", focal, int(info.width), int(info.height))
        camera.has_prior_focal_length = prior
    camera_id = db.write_camera(camera)
    camera.camera_id = camera_id
    rig = pycolmap.Rig()
    rig.add_ref_sensor(camera.sensor_id)
    return camera_id, db.write_rig(rig)


def _write_image_and_frame(db: pycolmap.Database, name: str, camera_id: int, rig_id: int) -> int:
    image = pycolmap.Image(name=name, camera_id=camera_id)
    image_id = db.write_image(image)
    image.image_id = image_id
    frame = pycolmap.Frame()
    frame.rig_id = rig_id
    frame.add_data_id(image.data_id)
    db.write_frame(frame)
    return int(image_id)


def add_images(
    database: str | os.PathLike,
    cameras: Sequence[CameraInfo],
    single_camera: bool = False,
    intrinsics: CameraIntrinsics | None = None,
) -> dict[str, int]:
    """Add one SIMPLE_RADIAL camera, trivial rig, frame and image per entry.

    The camera's principal point is the image centre, its radial distortion
    0, and its focal length ``info.focal`` or ``1.2 * max(width, height)``;
    a given focal is flagged as a prior COLMAP may trust. With ``intrinsics``
    every camera is that model with those parameters instead (a prior).

    Args:
        database: an existing database file (see :func:`create_database`).
        cameras: one :class:`CameraInfo` per image; names must be unique and
            not yet in the database.
        single_camera: all images share one camera (and one rig), built from
            the first entry: for a set taken with one camera and zoom, where
            per-image intrinsics are poorly constrained.
        intrinsics: the known camera of every image (:class:`CameraIntrinsics`).

    Returns:
        ``{name: image_id}`` for the images added.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: a duplicate or already-present name, a non-positive size, or a principal
            point of ``intrinsics`` outside an image.
        OSError: ``ENOSPC``, the disk is full.
    """
    database = require_database(database)
    _check_camera_infos(database, cameras, single_camera, intrinsics)
    ensure_free_space(database)
    ids: dict[str, int] = {}
    with open_database(database) as db:
        clash = sorted({info.name for info in cameras} & {image.name for image in db.read_all_images()})
        if clash:
            raise ValueError(f"images already in {database}: {clash[:5]}")
        with pycolmap.DatabaseTransaction(db):
            camera_id = rig_id = None
            for info in cameras:
                if camera_id is None or not single_camera:
                    camera_id, rig_id = _write_camera_and_rig(db, info, intrinsics)
                ids[info.name] = _write_image_and_frame(db, info.name, camera_id, rig_id)
    return ids


def write_keypoints(database: str | os.PathLike, keypoints: Mapping[int, np.ndarray]) -> None:
    """Write keypoints of images already in the database, in one transaction.

    Args:
        database: the database file.
        keypoints: ``{image_id: (N, 2) float}`` pixel coordinates in the
            **OpenCV** convention; the +0.5 shift to COLMAP's is applied here.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: an unknown image id, keypoints already written for it, a
            wrong shape or non-finite coordinates.
        OSError: ``ENOSPC``, the disk is full.
    """
    database = require_database(database)
    prepared: dict[int, np.ndarray] = {}
    for image_id, xy in keypoints.items():
        xy = np.asarray(xy)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"image {image_id}: keypoints must be (N, 2), got {xy.shape}")
        if not np.isfinite(xy).all():
            raise ValueError(f"image {image_id}: non-finite keypoint coordinates")
        prepared[int(image_id)] = np.ascontiguousarray(opencv_to_colmap(xy.astype(np.float64)), dtype=np.float32)
    with open_database(database) as db:
        for image_id in prepared:
            if not db.exists_image(image_id):
                raise ValueError(f"image id {image_id} is not in {database}")
            if db.exists_keypoints(image_id):
                raise ValueError(f"keypoints of image id {image_id} are already in {database}")
        ensure_free_space(database, sum(xy.nbytes for xy in prepared.values()))
        with pycolmap.DatabaseTransaction(db):
            for image_id, xy in prepared.items():
                db.write_keypoints(image_id, xy)


def _prepare_matches(
    database: Path, matches: Mapping[tuple[int, int], np.ndarray]
) -> list[tuple[int, int, np.ndarray]]:
    """Checks shapes, self pairs and pairs given twice; ``(id0, id1, (K, 2) uint32)`` for non-empty pairs."""
    seen: set[tuple[int, int]] = set()
    prepared: list[tuple[int, int, np.ndarray]] = []
    for (id0, id1), m in matches.items():
        id0, id1 = int(id0), int(id1)
        if id0 == id1:
            raise ValueError(f"self pair ({id0}, {id1}) given for {database}")
        key = (min(id0, id1), max(id0, id1))
        if key in seen:
            raise ValueError(f"pair ({id0}, {id1}) given twice for {database}")
        seen.add(key)
        m = np.asarray(m)
        if m.ndim != 2 or m.shape[1] != 2:
            raise ValueError(f"pair ({id0}, {id1}): matches must be (K, 2), got {m.shape}")
        if len(m) == 0:
            continue
        if (m < 0).any():
            raise ValueError(f"pair ({id0}, {id1}): negative keypoint index")
        prepared.append((id0, id1, np.ascontiguousarray(m, dtype=np.uint32)))
    return prepared


def _check_matches_fit(db: pycolmap.Database, database: Path, id0: int, id1: int, m: np.ndarray) -> None:
    """Both images exist, the indices are within their keypoints, the pair holds no matches yet."""
    for image_id, column in ((id0, 0), (id1, 1)):
        if not db.exists_image(image_id):
            raise ValueError(f"image id {image_id} is not in {database}")
        n = db.num_keypoints_for_image(image_id)
        if int(m[:, column].max()) >= n:
            raise ValueError(f"pair ({id0}, {id1}): index {int(m[:, column].max())} out of range "
                             f"for image {image_id} with {n} keypoints in {database}")  # fmt: skip
    if db.exists_matches(id0, id1):
        raise MatchesExistError(f"matches of pair ({id0}, {id1}) are already in {database}")


def write_matches(database: str | os.PathLike, matches: Mapping[tuple[int, int], np.ndarray]) -> int:
    """Write putative matches of image pairs, in one transaction.

    Args:
        database: the database file, with the images' keypoints written.
        matches: ``{(image_id0, image_id1): (K, 2) int}`` keypoint indices
            (row ``k`` matches keypoint ``matches[k, 0]`` of image 0 with
            ``matches[k, 1]`` of image 1). Pairs with no match are skipped.

    Returns:
        The number of pairs written.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: a self pair, a pair given twice (in either order), unknown image ids, or
            indices outside the image's keypoints; :class:`MatchesExistError` (a ValueError):
            a pair already in the database.
        OSError: ``ENOSPC``, the disk is full.
    """
    database = require_database(database)
    prepared = _prepare_matches(database, matches)
    with open_database(database) as db:
        for id0, id1, m in prepared:
            _check_matches_fit(db, database, id0, id1, m)
        ensure_free_space(database, sum(m.nbytes for _, _, m in prepared))
        with pycolmap.DatabaseTransaction(db):
            for id0, id1, m in prepared:
                db.write_matches(id0, id1, m)
    return len(prepared)


def delete_pairs(database: str | os.PathLike, pairs: Sequence[tuple[int, int]]) -> None:
    """Deletes the matches and two-view geometries of image-id pairs, in one transaction.

    Raises:
        FileNotFoundError: the database does not exist.
        OSError: ``ENOSPC``, the disk is full (a deletion writes pages too).
    """
    database = require_database(database)
    ensure_free_space(database)
    with open_database(database) as db, pycolmap.DatabaseTransaction(db):
        for a, b in pairs:
            if db.exists_matches(int(a), int(b)):
                db.delete_matches(int(a), int(b))
            if db.exists_two_view_geometry(int(a), int(b)):
                db.delete_two_view_geometry(int(a), int(b))


def copy_with_shared_cameras(database: str | os.PathLike, out: str | os.PathLike, shared: Mapping[int, int]) -> Path:
    """A copy of a database in which images share cameras (COLMAP's ``single_camera`` per group).

    Args:
        database: the database; not changed.
        out: the copy; replaced if present.
        shared: camera id → the camera id its images use in the copy (the cameras left unused
            are deleted); cameras not named keep their images. Every rig must hold one camera
            and every frame one image (as :func:`add_images` writes them): the copy gets one
            trivial rig per camera it keeps.

    Returns:
        ``out``. Image ids, keypoints, matches and two-view geometries are the database's.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: a rig with several sensors, or a frame with several images.
        OSError: ``ENOSPC``, the disk is full.
    """
    database, out = require_database(database), Path(out)
    ensure_free_space(out.parent, database.stat().st_size)
    out.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(database)) as source, contextlib.closing(sqlite3.connect(out)) as copy:
        source.backup(copy)
    with open_database(out) as db:
        cameras = {int(c.camera_id): c for c in db.read_all_cameras()}
        frames = db.read_all_frames()
        if any(r.num_sensors() > 1 for r in db.read_all_rigs()) or any(f.num_data_ids() > 1 for f in frames):
            raise ValueError(f"{database}: cameras can be shared only where every rig holds one camera and every frame one image")
        frame_of = {int(d.id): int(f.frame_id) for f in frames for d in f.data_ids}
        kept = sorted({int(shared.get(c, c)) for c in cameras})
        with pycolmap.DatabaseTransaction(db):
            db.clear_frames()
            db.clear_rigs()
            rig_of = {}
            for camera_id in kept:
                rig = pycolmap.Rig()
                rig.add_ref_sensor(cameras[camera_id].sensor_id)
                rig_of[camera_id] = db.write_rig(rig)
            for image in db.read_all_images():
                image.camera_id = int(shared.get(int(image.camera_id), image.camera_id))
                frame = pycolmap.Frame()  # written before the image, which must be in its frame
                frame.frame_id, frame.rig_id = frame_of[int(image.image_id)], rig_of[int(image.camera_id)]
                frame.add_data_id(image.data_id)
                db.write_frame(frame, use_frame_id=True)
                db.update_image(image)
    with contextlib.closing(sqlite3.connect(out)) as copy, copy:  # pycolmap deletes no camera
        copy.execute(f"DELETE FROM cameras WHERE camera_id NOT IN ({','.join('?' * len(kept))})", kept)
    return out


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------
def read_image_ids(database: str | os.PathLike) -> dict[str, int]:
    """``{name: image_id}`` of all images in a database.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    with open_database(database) as db:
        return {image.name: int(image.image_id) for image in db.read_all_images()}


def database_summary(database: str | os.PathLike) -> DatabaseSummary:
    """Count images, keypoints, matched and verified pairs of a database.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    with open_database(database) as db:
        return DatabaseSummary(
            images=int(db.num_images()),
            keypoints=int(db.num_keypoints()),
            matched_pairs=int(db.num_matched_image_pairs()),
            matches=int(db.num_matches()),
            verified_pairs=sum(rows > 0 for rows in table_pairs(database, "two_view_geometries").values()),
            inlier_matches=int(db.num_inlier_matches()),
        )


def read_keypoints(database: str | os.PathLike, image_id: int) -> np.ndarray:
    """Keypoints of one image, ``(N, 2)`` float32 in the **OpenCV** convention.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: the image has no keypoints in the database.
    """
    database = require_database(database)
    with open_database(database) as db:
        if not db.exists_image(int(image_id)) or not db.exists_keypoints(int(image_id)):
            raise ValueError(f"no keypoints for image id {image_id} in {database}")
        xy = np.asarray(db.read_keypoints(int(image_id)))[:, :2]
    return colmap_to_opencv(xy.astype(np.float64)).astype(np.float32)


def read_matches(database: str | os.PathLike, id0: int, id1: int) -> np.ndarray:
    """Putative matches ``(K, 2)`` int64 of a pair (ordered as asked); empty if none.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    with open_database(database) as db:
        if not db.exists_matches(int(id0), int(id1)):
            return np.zeros((0, 2), np.int64)
        return np.asarray(db.read_matches(int(id0), int(id1)), dtype=np.int64)


def read_verified_matches(database: str | os.PathLike, id0: int, id1: int) -> np.ndarray:
    """Inlier matches ``(K, 2)`` int64 of a verified pair (ordered as asked); empty if none.

    Raises:
        FileNotFoundError: the database does not exist.
    """
    with open_database(database) as db:
        if not db.exists_two_view_geometry(int(id0), int(id1)):
            return np.zeros((0, 2), np.int64)
        geometry = db.read_two_view_geometry(int(id0), int(id1))
        return np.asarray(geometry.inlier_matches, dtype=np.int64).reshape(-1, 2)


def positions_only_message(database: str | os.PathLike, name: str) -> str:
    """The error of an image whose keypoints are positions only."""
    return (f"{database}: the keypoints of {name} are positions only (2 columns, no scale or orientation): "
            "patches cannot be cropped from them; extract features with COLMAP's SIFT")


def _affine_keypoints(raw: np.ndarray, database: Path, name: str) -> np.ndarray:
    """COLMAP keypoint rows → (N, 6) float32 ``[x, y, a11, a12, a21, a22]``."""
    raw = raw.reshape(len(raw), -1) if raw.ndim != 2 else raw
    cols = raw.shape[1] if len(raw) else 6
    if cols == 6:
        return raw.astype(np.float32, copy=False)
    if cols == 4:  # x, y, scale, orientation (radians), as COLMAP's FeatureKeypoint builds its shape
        x, y, scale, angle = raw.T
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        return np.stack([x, y, c, -s, s, c], 1).astype(np.float32)
    if cols == 2:
        raise ValueError(positions_only_message(database, name))
    raise ValueError(f"{database}: the keypoints of {name} have {cols} columns (COLMAP stores 2, 4 or 6)")


def _read_features(db: pycolmap.Database, database: Path, image) -> tuple[np.ndarray, np.ndarray]:
    """(N, 6) float32 affine keypoints and (N, D) uint8 descriptors of one image (N = 0 when absent)."""
    iid = int(image.image_id)
    kps = np.zeros((0, 6), np.float32)
    desc = np.zeros((0, 128), np.uint8)
    if db.exists_keypoints(iid):
        kps = _affine_keypoints(np.asarray(db.read_keypoints(iid), dtype=np.float32), database, image.name)
    if db.exists_descriptors(iid):
        desc = np.asarray(db.read_descriptors(iid).data)
    if len(kps) != len(desc):
        raise ValueError(f"{database}: image {image.name} has {len(kps)} keypoints but {len(desc)} descriptors")
    return kps, desc


def read_database_images(database: str | os.PathLike) -> dict[str, DatabaseImage]:
    """Reads every image of a database with its keypoints (affine shapes) and descriptors.

    Keypoints stored with 6 columns (affine shapes), 4 (``x, y, scale, orientation``, e.g. older
    COLMAP versions) or 2 (positions only) are read; the 4-column ones become the similarity
    shapes COLMAP's ``FeatureKeypoint(x, y, scale, orientation)`` builds.

    Raises:
        FileNotFoundError: the database does not exist.
        NotADatabaseError: the file is not a COLMAP database, or truncated.
        ValueError: an image's keypoint and descriptor counts disagree, or its keypoints have no
            shapes (2 columns: patches need a scale and an orientation) or another column count.
    """
    database = require_database(database)
    out: dict[str, DatabaseImage] = {}
    with open_database(database) as db:
        cameras = {int(c.camera_id): c for c in db.read_all_cameras()}
        for image in db.read_all_images():
            kps, desc = _read_features(db, database, image)
            cam = cameras[int(image.camera_id)]
            out[image.name] = DatabaseImage(int(image.image_id), image.name, int(cam.width), int(cam.height), kps, desc)
    return out


def table_pairs(database: str | os.PathLike, table: str) -> dict[tuple[int, int], int]:
    """Image-id pairs (smaller id first) of a ``matches`` or ``two_view_geometries`` table → their
    row count (matches, or inlier matches), empty rows included.

    pycolmap's ``read_all_matches`` / ``read_two_view_geometries`` leave empty rows out (pairs
    COLMAP tried without a match, or verified and rejected) and decode every match; this is
    read-only SQL on COLMAP's schema instead.

    Raises:
        FileNotFoundError: the database does not exist.
        ValueError: ``table`` is not one of the two.
    """
    if table not in ("matches", "two_view_geometries"):
        raise ValueError(f"table must be 'matches' or 'two_view_geometries', got {table!r}")
    database = require_database(database)
    uri = f"{database.resolve().as_uri()}?mode=ro"
    out = {}
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
            for pid, rows in con.execute(f"SELECT pair_id, rows FROM {table}"):
                a, b = pycolmap.pair_id_to_image_pair(int(pid))
                out[(min(int(a), int(b)), max(int(a), int(b)))] = int(rows)
    except sqlite3.DatabaseError as error:
        raise NotADatabaseError(f"{database}: not a COLMAP database or truncated ({error})") from None
    return out


def pairs_with_matches(database: str | os.PathLike) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """Image-id pairs (smaller id first) that hold a matches entry → its number of matches (0 for
    an empty one: COLMAP's matchers record the pairs they tried), and those that hold a two-view
    geometry → its number of inlier matches (:func:`table_pairs`)."""
    return table_pairs(database, "matches"), table_pairs(database, "two_view_geometries")


@dataclass(frozen=True)
class PairGeometry:
    """A verified image pair's two-view geometry, in **OpenCV** pixels (centres at integers).

    Attributes:
        config: COLMAP's configuration name (``"CALIBRATED"``, ``"UNCALIBRATED"``, ``"PLANAR"``, ...).
        F: (3, 3) float64 fundamental matrix ``x1ᵀ F x0 = 0``, or None (planar, panoramic).
        H: (3, 3) float64 homography ``x1 ~ H x0``, or None.
        inliers: (K, 2) int64 inlier matches ``[i0, i1]``, ordered as asked.
    """

    config: str
    F: np.ndarray | None
    H: np.ndarray | None
    inliers: np.ndarray


#: COLMAP configurations whose geometry is a homography (no epipolar line to search along).
HOMOGRAPHY_CONFIGS = ("PLANAR", "PANORAMIC", "PLANAR_OR_PANORAMIC")
#: COLMAP configurations with a fundamental (or essential) matrix.
EPIPOLAR_CONFIGS = ("CALIBRATED", "UNCALIBRATED")


def _to_opencv_pixels(M: np.ndarray, left: bool) -> np.ndarray:
    """``M`` acting on COLMAP pixels (+0.5) → the same map on OpenCV pixels: ``x_colmap = S x_cv``."""
    S = np.array([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1.0]])
    return (np.linalg.inv(S) @ M @ S) if left else (S.T @ M @ S)


def _config_name(geometry) -> str:
    """COLMAP's configuration name of a two-view geometry (pycolmap gives an enum or an int)."""
    config = geometry.config
    return config.name if hasattr(config, "name") else pycolmap.TwoViewGeometryConfiguration(int(config)).name


def _geometry_matrices(db: pycolmap.Database, id0: int, id1: int, geometry) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(F, H) of a two-view geometry in COLMAP pixels; F from E and the cameras when F is unset."""
    name = _config_name(geometry)
    if name in HOMOGRAPHY_CONFIGS and geometry.H is not None:
        return None, np.asarray(geometry.H, np.float64)
    if name not in EPIPOLAR_CONFIGS:
        return None, None
    F = None if geometry.F is None else np.asarray(geometry.F, np.float64)
    if F is None or not np.abs(F).sum():
        if geometry.E is None:
            return None, None
        K0, K1 = (np.asarray(db.read_camera(db.read_image(i).camera_id).calibration_matrix()) for i in (id0, id1))
        F = np.linalg.inv(K1).T @ np.asarray(geometry.E, np.float64) @ np.linalg.inv(K0)
    return F, None


def read_pair_geometry(database: str | os.PathLike, id0: int, id1: int) -> PairGeometry | None:
    """The two-view geometry of a verified image pair (ordered as asked), or None when the pair
    has none or it has no usable matrix (degenerate, watermark, ...).

    Raises:
        FileNotFoundError: the database does not exist.
    """
    with open_database(database) as db:
        if not db.exists_two_view_geometry(int(id0), int(id1)):
            return None
        geometry = db.read_two_view_geometry(int(id0), int(id1))
        inliers = np.asarray(geometry.inlier_matches, dtype=np.int64).reshape(-1, 2)
        if not len(inliers):
            return None
        F, H = _geometry_matrices(db, int(id0), int(id1), geometry)
    if F is None and H is None:
        return None
    return PairGeometry(_config_name(geometry), None if F is None else _to_opencv_pixels(F, False),
                        None if H is None else _to_opencv_pixels(H, True), inliers)  # fmt: skip
