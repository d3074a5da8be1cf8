from pathlib import Path

import cv2
import numpy as np
import pytest

from patchmatch.images import ImageReadError, list_images, read_gray, scan_images


def test_list_images_recursive_relative(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["z.jpg", "a/b/x.PNG", "a/y.tif", "notes.txt"]:
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 4), np.uint8)) if not name.endswith("txt") else (tmp_path / name).write_text("x")
    assert list_images(tmp_path) == ["a/b/x.PNG", "a/y.tif", "z.jpg"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_read_formats(tmp_path):
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 2] = 200  # red in BGR
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    rgba = np.dstack([rgb, np.full((10, 20), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((10, 20), 65535, np.uint16))
    for name in ["rgb.png", "rgba.png"]:
        img, scale = read_gray(tmp_path / name)
        assert img.shape == (10, 20) and img.dtype == np.uint8 and scale == 1.0
        assert abs(int(img[0, 0]) - round(0.299 * 200)) <= 1
    img, _ = read_gray(tmp_path / "deep.png")
    assert img.dtype == np.uint8 and img.max() == 255


def test_read_downscales(tmp_path):
    cv2.imwrite(str(tmp_path / "big.png"), np.random.default_rng(0).integers(0, 255, (300, 400), dtype=np.uint8))
    img, scale = read_gray(tmp_path / "big.png", max_size=100)
    assert img.shape == (75, 100) and scale == pytest.approx(0.25)


def test_read_bad_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    good = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    png = cv2.imencode(".png", np.zeros((64, 64), np.uint8))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[:-20])
    for name, msg in [("empty.jpg", "empty"), ("text.jpg", "not a readable image"), ("cut.jpg", "truncated JPEG"),
                      ("cut.png", "truncated PNG"), ("missing.jpg", "no such file")]:
        with pytest.raises(ImageReadError, match=msg) as err:
            read_gray(tmp_path / name)
        assert name in str(err.value)


def test_a_jpeg_whose_decoder_loses_data_is_refused_and_a_harmless_warning_only_logged(tmp_path, caplog):
    """OpenCV decodes a JPEG with missing entropy data (a copy cut short and closed with an
    end-of-image marker) without an error, the rest grey: libjpeg's own warning refuses it. Stray
    bytes before the end marker (common in camera files) cost no pixels: logged, used."""
    pixels = np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8)
    good = cv2.imencode(".jpg", pixels)[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2] + b"\xff\xd9")
    with pytest.raises(ImageReadError, match=r"cut\.jpg: corrupt JPEG data.*premature end"):
        read_gray(tmp_path / "cut.jpg")
    (tmp_path / "stray.jpg").write_bytes(good[:-2] + b"\x12\x34\x56\x78" * 4 + good[-2:])
    with caplog.at_level("WARNING", logger="patchmatch.images"):
        image, _ = read_gray(tmp_path / "stray.jpg")
    np.testing.assert_array_equal(image, read_gray(tmp_path / "stray.jpg")[0])
    assert np.abs(image.astype(int) - pixels).mean() < 20  # the picture itself, not grey
    assert "stray.jpg: decoded with libjpeg warnings: Corrupt JPEG data: 11 extraneous bytes" in caplog.text


def test_exif_orientation(tmp_path):
    """A JPEG with EXIF orientation 6: displayed frame on request, COLMAP's frame by default."""
    img = np.zeros((40, 80), np.uint8)
    img[:, :10] = 255  # bright left band
    jpg = bytearray(cv2.imencode(".jpg", img)[1].tobytes())
    # APP1 Exif segment with one IFD0 entry: Orientation (0x0112) = 6, little endian
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00" + b"\x00\x00\x00\x00"
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    (tmp_path / "rot.jpg").write_bytes(bytes(jpg[:2]) + app1 + bytes(jpg[2:]))
    out, _ = read_gray(tmp_path / "rot.jpg", apply_exif=True)
    assert out.shape == (80, 40)  # rotated into portrait
    assert out[:10].mean() > 200 and out[-10:].mean() < 50  # the left band is now on top
    raw, _ = read_gray(tmp_path / "rot.jpg")  # default: COLMAP's frame, the stored pixel grid
    assert raw.shape == (40, 80)
    import pycolmap

    bitmap = pycolmap.Bitmap.read(str(tmp_path / "rot.jpg"), as_rgb=False)
    assert (bitmap.width, bitmap.height) == (80, 40)  # COLMAP agrees


def test_image_above_opencvs_pixel_limit_is_a_read_error(tmp_path):
    """A PNG declaring 40000×30000 pixels (above OpenCV's 2^30 decoding limit) raises
    ImageReadError naming the file, not cv2.error."""
    import struct
    import zlib

    ok, png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    data = bytearray(png.tobytes())
    ihdr = data[12:29]  # chunk type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", 40000, 30000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="huge.png: OpenCV cannot decode it"):
        read_gray(path)


def test_name_collisions_and_output_inside_images(tmp_path):
    """hloc's pair names clash for a/b-c.jpg and a-b/c.jpg; output folders inside the image folder are not images."""
    from patchmatch.images import exclude_output_dir, pair_key_collisions

    kept, skipped = pair_key_collisions(["a-b/c.jpg", "a/b-c.jpg", "x.jpg"])
    assert kept == ["a-b/c.jpg", "x.jpg"]
    assert skipped[0]["name"] == "a/b-c.jpg" and "a-b/c.jpg" in skipped[0]["reason"]
    names = ["out/viz/p.png", "outdoor.jpg", "x.jpg"]
    assert exclude_output_dir(names, tmp_path, tmp_path / "out") == ["outdoor.jpg", "x.jpg"]
    assert exclude_output_dir(names, tmp_path / "imgs", tmp_path / "out") == names
    # an earlier run's output inside the image folder is not read as photos by a later run elsewhere
    (tmp_path / "old" / "viz").mkdir(parents=True)
    (tmp_path / "old" / "run.json").write_text("{}")
    (tmp_path / "cmp" / "patchmatch").mkdir(parents=True)
    (tmp_path / "cmp" / "compare.json").write_text("{}")
    names = ["a.jpg", "old/viz/cameras.png", "cmp/patchmatch/viz/p.png", "oldies/b.jpg"]
    assert exclude_output_dir(names, tmp_path, tmp_path.parent / "elsewhere") == ["a.jpg", "oldies/b.jpg"]


def test_byte_identical_images_are_skipped(tmp_path):
    """The same file under two names would give two cameras sharing every keypoint: the later is skipped."""
    from patchmatch.images import duplicate_files

    (tmp_path / "a.jpg").write_bytes(b"1234")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "copy.jpg").write_bytes(b"1234")
    (tmp_path / "b.jpg").write_bytes(b"1235")  # same size, other bytes
    (tmp_path / "c.jpg").write_bytes(b"12345")
    kept, skipped = duplicate_files(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "sub/copy.jpg"])
    assert kept == ["a.jpg", "b.jpg", "c.jpg"]
    assert skipped == [{"name": "sub/copy.jpg", "reason": "sub/copy.jpg: the same file (bytes) as a.jpg; skipped"}]
    # with a ground truth that knows only the later name, the copy under the other name is the one skipped
    kept, skipped = duplicate_files(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "sub/copy.jpg"], {"sub/copy.jpg"})
    assert kept == ["b.jpg", "c.jpg", "sub/copy.jpg"] and skipped[0]["name"] == "a.jpg"
    (tmp_path / "e0.jpg").write_bytes(b"")
    (tmp_path / "e1.jpg").write_bytes(b"")  # two empty files are not copies of each other: the reader names them empty
    assert duplicate_files(tmp_path, ["e0.jpg", "e1.jpg"]) == (["e0.jpg", "e1.jpg"], [])


def test_stored_size_reads_png_and_jpeg_headers(tmp_path, monkeypatch):
    import patchmatch.images as images

    for name in ("a.png", "b.jpg", "c.bmp"):
        cv2.imwrite(str(tmp_path / name), np.zeros((37, 53), np.uint8))
    decoded = []
    monkeypatch.setattr(images, "image_size", lambda p: decoded.append(Path(p).name) or (53, 37))
    assert [images.stored_size(tmp_path / n) for n in ("a.png", "b.jpg", "c.bmp")] == [(53, 37)] * 3
    assert decoded == ["c.bmp"]  # PNG and JPEG: from the header, not decoded


def test_check_one_size_names_two_files(tmp_path):
    from patchmatch.images import check_one_size

    for name, shape in (("a.png", (10, 20)), ("b.jpg", (10, 20)), ("bad.png", None), ("c.png", (20, 10))):
        if shape is None:
            (tmp_path / name).write_bytes(b"not an image")
        else:
            cv2.imwrite(str(tmp_path / name), np.zeros(shape, np.uint8))
    check_one_size(tmp_path, ["a.png", "b.jpg", "bad.png"])  # the unreadable file is left to the reader
    with pytest.raises(ValueError, match="a.png is 20×10 px, c.png is 10×20 px"):
        check_one_size(tmp_path, ["a.png", "b.jpg", "bad.png", "c.png"])


def test_symbolic_links_followed_loops_and_dangling_links_reported(tmp_path):
    """A linked folder of images is searched, a link back to a folder being searched (a loop)
    and a dangling link are left out with a reason, and sfm's report lists them as skipped."""
    from patchmatch import sfm

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cv2.imwrite(str(elsewhere / "far.png"), np.zeros((8, 8), np.uint8))
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(root / "sub" / "b.png"), np.zeros((8, 8), np.uint8))
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "photo.png").symlink_to(root / "a.png")
    (root / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "a.jpg").symlink_to(root / "b.jpg")  # two file links pointing at each other
    (root / "b.jpg").symlink_to(root / "a.jpg")
    (root / "again").symlink_to(root / "sub", target_is_directory=True)
    names, skipped = scan_images(root)
    assert names == ["a.png", "linked/far.png", "photo.png", "sub/b.png"]
    assert list_images(root) == names
    reasons = {s["name"]: s["reason"] for s in skipped}
    assert sorted(reasons) == ["a.jpg", "again", "b.jpg", "gone.jpg", "sub/loop"]
    assert "symbolic link in a loop" in reasons["a.jpg"] and "dangling" not in reasons["b.jpg"]
    assert "dangling symbolic link" in reasons["gone.jpg"] and "missing.jpg" in reasons["gone.jpg"]
    assert "a folder that holds it" in reasons["sub/loop"] and "(a loop)" in reasons["sub/loop"]
    assert "searched already" in reasons["again"]
    kept, vetted = sfm._vet_images(root, tmp_path / "out", sfm.SfmConfig(), None)
    assert {"again", "gone.jpg", "sub/loop"} <= {s["name"] for s in vetted}
    assert "photo.png" not in kept  # a link to a.png: the same bytes, skipped as a copy
