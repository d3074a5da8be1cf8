"""Reading images: the one place that knows image files.

Every image enters patchmatch as an 8-bit grayscale array in the frame COLMAP reads: the stored
pixel grid, EXIF orientation *not* applied (COLMAP's bitmap reader ignores it, so keypoints,
camera sizes and the images that COLMAP's undistorter or MVS read later agree), 16-bit data
scaled to 8 bits, colour and alpha dropped. ``apply_exif=True`` gives the displayed frame.

Vetting a folder before any work (:func:`exclude_output_dir`, :func:`pair_key_collisions`,
:func:`duplicate_files`) says plainly which files are left out and why.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Files that mark a folder as the output of ``patchmatch sfm`` (``run.json``) or ``compare`` (``compare.json``).
RUN_MARKERS = ("run.json", "compare.json")

#: File extensions recognised as images (lower case), as COLMAP's image reader accepts them.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and the problem."""


#: libjpeg's warnings that mean pixels are missing or garbled from some point on (OpenCV decodes
#: such a file anyway, the rest grey or noise): the file is refused. Others (extraneous bytes
#: before a marker, common in camera files) are logged and the image is used.
CORRUPT_JPEG_MESSAGES = ("premature end", "bad huffman code", "bad arithmetic code", "huffman table")

_NATIVE_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Collects what native code (libjpeg inside OpenCV) writes to file descriptor 2 during the
    block; the lines are in the yielded list once it ends. One block at a time in the process;
    lines other threads write meanwhile are passed on to the real stderr afterwards."""
    lines: list[str] = []
    with _NATIVE_STDERR_LOCK, tempfile.TemporaryFile() as tmp:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to take over (a closed descriptor): nothing to collect
            yield lines
            return
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors="replace").splitlines())
    others = [ln for ln in lines if "JPEG" not in ln]
    if others:
        with contextlib.suppress(OSError):
            os.write(2, ("\n".join(others) + "\n").encode())
    lines[:] = [ln for ln in lines if "JPEG" in ln]


def list_images(root: str | os.PathLike) -> list[str]:
    """Lists the images below ``root``, recursively, named as COLMAP names them; symbolic links
    are followed (see :func:`scan_images` for the links left out and why).

    Args:
        root: folder to search.

    Returns:
        Sorted POSIX paths relative to ``root`` (e.g. ``"sub/0001.jpg"``), image extensions only.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    return scan_images(root)[0]


def _link_loop(path: Path) -> bool:
    """Whether resolving the symbolic link ``path`` runs in a circle (not merely to a missing file)."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def scan_images(root: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """The images below ``root`` (as :func:`list_images`), following symbolic links to files and
    folders, and the links left out: a dangling link, and a link to a folder already being
    searched (a loop) or already searched through another path.

    Returns:
        ``(sorted names, skipped)``, ``skipped`` as ``[{"name", "reason"}]`` (sorted by name).

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    names: list[str] = []
    skipped: list[dict[str, str]] = []
    seen = {}  # folder (device, inode) → the name it is searched under: the real folders of the tree first
    for folder, _, _ in os.walk(root):  # not following links
        rel = Path(folder).relative_to(root).as_posix()
        seen.setdefault(_dir_key(Path(folder)), "" if rel == "." else rel)
    stack = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            name = f"{rel}{entry.name}"
            if entry.is_symlink() and not os.path.exists(entry.path):
                if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS or not Path(entry.name).suffix:
                    what = "symbolic link in a loop" if _link_loop(Path(entry.path)) else "dangling symbolic link"
                    skipped.append({"name": name, "reason": f"{root / name}: {what} "
                                                            f"(to {os.readlink(entry.path)}); skipped"})  # fmt: skip
                continue
            if entry.is_dir():  # follows links
                key = _dir_key(Path(entry.path))
                if seen.setdefault(key, name) != name:
                    target = root / seen[key] if seen[key] else root
                    what = (f"symbolic link to {target}, a folder that holds it (a loop)" if _is_ancestor(seen[key], rel)
                            else f"symbolic link to {target}, searched already")  # fmt: skip
                    skipped.append({"name": name, "reason": f"{root / name}: {what}; skipped"})
                    continue
                stack.append((Path(entry.path), name + "/"))
            elif entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                names.append(name)
    return sorted(names), sorted(skipped, key=lambda s: s["name"])


def _dir_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _is_ancestor(folder: str, rel: str) -> bool:
    """Whether ``folder`` (relative, "" = the root) contains the folder ``rel`` ("a/b/")."""
    return folder == "" or (rel + "/").startswith(folder.rstrip("/") + "/")


def _to_uint8_gray(image: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) uint8 grey image of a decoded file: colour and alpha dropped, 16-bit and float data scaled to 8 bits.

    Raises:
        ImageReadError: an unsupported number of channels or pixel type (``path`` named).
    """
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        elif channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif channels == 1:
            image = image[..., 0]
        else:
            raise ImageReadError(f"{path}: unsupported number of channels {channels}.")
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        finite = image[np.isfinite(image)]
        hi = float(finite.max()) if finite.size else 1.0
        scale = 255.0 if hi <= 1.0 else 255.0 / hi
        return np.clip(np.nan_to_num(image) * scale + 0.5, 0, 255).astype(np.uint8)
    raise ImageReadError(f"{path}: unsupported pixel type {image.dtype}.")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Returns ``(width, height)`` in pixels of an image in COLMAP's frame (full read)."""
    image, _ = read_gray(path)
    return image.shape[1], image.shape[0]


def _check_complete(data: np.ndarray, path: Path) -> None:
    """Rejects JPEG and PNG files cut short (OpenCV decodes them silently, half grey)."""
    head = data[:8].tobytes()
    tail = data[-4096:].tobytes()
    if head[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in tail:
        raise ImageReadError(f"{path}: truncated JPEG (no end-of-image marker).")
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        raise ImageReadError(f"{path}: truncated PNG (no IEND chunk).")


def _check_jpeg_messages(messages: list[str], path: Path) -> None:
    """Refuses a JPEG whose decoding lost pixels (:data:`CORRUPT_JPEG_MESSAGES`); logs other warnings."""
    if not messages:
        return
    said = "; ".join(dict.fromkeys(m.strip() for m in messages))
    if any(k in m.lower() for m in messages for k in CORRUPT_JPEG_MESSAGES):
        raise ImageReadError(f"{path}: corrupt JPEG data, parts of the image would decode grey or garbled (libjpeg: {said}).")
    logger.warning("%s: decoded with libjpeg warnings: %s", path, said)


def read_gray(
    path: str | os.PathLike, max_size: int | None = None, apply_exif: bool = False
) -> tuple[np.ndarray, float]:
    """Reads an image as 8-bit grayscale, in COLMAP's frame (EXIF orientation ignored by default).

    Args:
        path: image file (any format OpenCV reads; 8/16-bit, gray, RGB or RGBA).
        max_size: if given, images whose longer side exceeds it are downscaled (area
            interpolation) so the longer side equals ``max_size`` pixels.
        apply_exif: rotate/flip by the EXIF orientation tag (the displayed frame); False (the
            default) reads the stored pixel grid, the frame COLMAP uses.

    Returns:
        ``(image, scale)``: ``image`` is uint8 (H, W); ``scale`` is new size / original size
        (1.0 when not resized). Keypoints found in ``image`` map back to original pixels as
        ``(xy + 0.5) / scale - 0.5`` (OpenCV pixel-centre convention).

    Raises:
        ImageReadError: the file is missing, empty, truncated, not an image, has no pixels, or
            is a JPEG whose decoder reports lost data (:data:`CORRUPT_JPEG_MESSAGES`).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty.")
    data = np.fromfile(path, dtype=np.uint8)
    # IMREAD_ANYDEPTH keeps 16-bit data; IMREAD_ANYCOLOR keeps the channel layout; EXIF orientation
    # is applied unless IMREAD_IGNORE_ORIENTATION is set.
    _check_complete(data, path)
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    if not apply_exif:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    try:
        if data[:2].tobytes() == b"\xff\xd8":
            with _native_stderr() as messages:
                image = cv2.imdecode(data, flags)
            _check_jpeg_messages(messages, path)
        else:
            image = cv2.imdecode(data, flags)
    except cv2.error as e:  # e.g. above OpenCV's 2^30-pixel decoding limit
        detail = str(e).strip().splitlines()[-1]
        raise ImageReadError(f"{path}: OpenCV cannot decode it ({detail}); very large images need "
                             "OPENCV_IO_MAX_IMAGE_PIXELS raised in the environment.") from e  # fmt: skip
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (unknown format or truncated data).")
    if image.size == 0 or min(image.shape[:2]) < 1:
        raise ImageReadError(f"{path}: image has no pixels.")
    image = _to_uint8_gray(image, path)
    scale = 1.0
    if max_size is not None and max(image.shape) > max_size:
        scale = max_size / float(max(image.shape))
        new_wh = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, new_wh, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image), scale


def _content_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike) -> str:
    """Size and modification time of a file (``"size=N;mtime_ns=T"``), from one ``stat`` (the file
    is not read): names a version of it where a copy or a ``touch`` may count as another."""
    st = Path(path).stat()
    return f"size={st.st_size};mtime_ns={st.st_mtime_ns}"


def file_fingerprint(path: str | os.PathLike) -> str:
    """:func:`file_stamp` and the content digest of a file (``"size=N;mtime_ns=T;blake2b=H"``):
    what was computed from it is stale when it no longer matches (:func:`same_file`)."""
    return f"{file_stamp(path)};blake2b={_content_digest(Path(path))}"


def same_file(fingerprint: str, path: str | os.PathLike) -> bool:
    """Whether ``path`` still holds the file of ``fingerprint`` (:func:`file_fingerprint`): the same
    size and modification time, or, where only the time changed (a copy, a ``touch``, a restore),
    the same content digest. Fingerprints without a digest are compared on size and time alone."""
    fields = dict(item.split("=", 1) for item in fingerprint.split(";") if "=" in item)
    st = Path(path).stat()
    if fields.get("size") != str(st.st_size):
        return False
    if fields.get("mtime_ns") == str(st.st_mtime_ns):
        return True
    return "blake2b" in fields and fields["blake2b"] == _content_digest(Path(path))


def stored_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image's stored pixel grid (COLMAP's frame), from the header of a
    PNG or JPEG file (no decoding), else by reading the whole image.

    Raises:
        ImageReadError: the file cannot be read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read it ({error}).") from error
    size = _png_size(head) or _jpeg_size(head)
    return size if size is not None else image_size(path)


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Width and height of a JPEG's frame header (SOF0-SOF15 but DHT, JPG, DAC), if within ``head``."""
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(head[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(head[i + 7 : i + 9], "big"), int.from_bytes(head[i + 5 : i + 7], "big")
        i += 2 + length
    return None


def check_one_size(image_dir: Path, names: list[str], option: str = "--single-camera") -> None:
    """Refuses images of different sizes for one shared camera (``single_camera``, or a known camera:
    ``option`` names what asked for it in the message), before any work.
    Files whose size cannot be read are left to the reader, which names them later.

    Raises:
        ValueError: naming two files of different sizes and their sizes.
    """
    first: tuple[str, tuple[int, int]] | None = None
    for n in names:
        try:
            size = stored_size(Path(image_dir) / n)
        except ImageReadError:
            continue
        if first is None:
            first = (n, size)
        elif size != first[1]:
            (a, (w0, h0)), (w1, h1) = first, size
            raise ValueError(f"one shared camera ({option}) needs images of one size: {a} is {w0}×{h0} px, "
                             f"{n} is {w1}×{h1} px")  # fmt: skip


#: Focal length over the longest image side beyond which a given camera is refused (:func:`check_known_camera`).
MAX_FOCAL_RATIO = 1000.0


def check_known_camera(image_dir: Path, names: list[str], camera) -> None:
    """Refuses known intrinsics (:class:`patchmatch.colmap.CameraIntrinsics`) that cannot be one of
    the images' cameras, before any work: a principal point outside an image, or a focal length
    beyond :data:`MAX_FOCAL_RATIO` times an image's longest side (a field of view under 0.06°).
    Files whose size cannot be read are left to the reader, which names them later.

    Raises:
        ValueError: naming the file, its size and the camera parameters.
    """
    for n in names:
        try:
            width, height = stored_size(Path(image_dir) / n)
        except ImageReadError:
            continue
        if not camera.principal_point_inside(width, height):
            raise ValueError(f"{Path(image_dir) / n} is {width}×{height} px: the principal point of the given camera "
                             f"({camera}) lies outside it")  # fmt: skip
        if max(camera.focal_lengths) > MAX_FOCAL_RATIO * max(width, height):
            raise ValueError(f"{Path(image_dir) / n} is {width}×{height} px: the focal length of the given camera "
                             f"({camera}) is more than {MAX_FOCAL_RATIO:g} times its longest side")  # fmt: skip


def exclude_output_dir(names: list[str], image_dir: Path, out_dir: Path) -> list[str]:
    """Drops the files of output folders inside the image folder (their PNGs would be read as
    photos): ``out_dir`` and any earlier ``sfm`` / ``compare`` output, i.e. a subfolder holding
    one of :data:`RUN_MARKERS`.

    Args:
        names: image names relative to ``image_dir`` (:func:`list_images`).
        image_dir: the image folder. out_dir: this run's output folder (anywhere).

    Returns:
        ``names`` without the files below such folders, in the same order.
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    inner: set[str] = set()
    try:
        inner.add(out_dir.resolve().relative_to(image_dir.resolve()).as_posix().rstrip("/"))
    except ValueError:
        pass
    for parent in {str(Path(n).parent) for n in names if "/" in n}:
        parts = Path(parent).parts
        for k in range(1, len(parts) + 1):
            sub_dir = Path(*parts[:k])
            if any((image_dir / sub_dir / m).is_file() for m in RUN_MARKERS):
                inner.add(sub_dir.as_posix())
                break
    if not inner:
        return names
    kept = [n for n in names if not any((n + "/").startswith(i + "/") for i in inner)]
    if len(kept) < len(names):
        logger.info("%s: %d file(s) inside output folders (%s) are not used as images", image_dir,
                    len(names) - len(kept), ", ".join(sorted(inner)))  # fmt: skip
    return kept


def pair_key_collisions(names: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """hloc names a pair by the image names with '/' replaced by '-', so ``a/b-c.jpg`` and
    ``a-b/c.jpg`` would share their matches: the later of two such names is left out.

    Returns:
        ``(kept names, skipped)``, ``skipped`` as ``[{"name", "reason"}]``.
    """
    seen: dict[str, str] = {}
    kept, skipped = [], []
    for n in names:
        key = n.replace("/", "-")
        if key in seen:
            skipped.append({"name": n, "reason": f"{n}: its hloc pair name {key!r} is the same as that of {seen[key]} "
                                                 "(a '/' and '-' clash); rename one of them; skipped"})  # fmt: skip
        else:
            seen[key] = n
            kept.append(n)
    return kept, skipped


def duplicate_files(
    image_dir: Path, names: list[str], prefer: set[str] | frozenset[str] = frozenset()
) -> tuple[list[str], list[dict[str, str]]]:
    """Byte-identical image files: the later of two is left out (two cameras at one pose would
    share every keypoint exactly and distort the model), unless only the later is in ``prefer``
    (e.g. the names a ground-truth ``cameras.json`` knows).

    Files of different sizes are never read; empty files are left to the reader (which names
    them as empty, not as copies of each other).

    Returns:
        ``(kept names, skipped)``, ``skipped`` as ``[{"name", "reason"}]``.
    """
    image_dir = Path(image_dir)
    by_size: dict[int, list[str]] = {}
    for n in names:
        size = (image_dir / n).stat().st_size
        if size:
            by_size.setdefault(size, []).append(n)
    first: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        for n in sorted(group, key=lambda m: m not in prefer):  # stable: preferred names first
            digest = hashlib.sha256((image_dir / n).read_bytes()).hexdigest()
            if digest in first:
                dropped[n] = first[digest]
            else:
                first[digest] = n
    kept = [n for n in names if n not in dropped]
    return kept, [{"name": n, "reason": f"{n}: the same file (bytes) as {other}; skipped"} for n, other in dropped.items()]
