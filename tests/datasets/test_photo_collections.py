"""Brown's recipe on a few real photographs: reconstruct, then label fresh detections by the model's cameras."""

from __future__ import annotations

import shutil

import numpy as np

from patchmatch.datasets.brown import BrownDataset
from patchmatch.datasets.scenes import fundamental_matrix, load_scene
from patchmatch.datasets.tracks import PairSetConfig, TrackConfig
from tests.conftest import shared_path

NAMES = ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"]


def _undistorted_to_photo(model, undistorted_cameras):
    """``f(name, (x, y))``: a pixel of the undistorted image (the set's frame) in the photograph, by the
    model's camera (its distortion), OpenCV convention."""
    import json

    import pycolmap

    rec = pycolmap.Reconstruction(str(model))
    K = {n: np.asarray(c["K"]) for n, c in json.loads(undistorted_cameras.read_text())["images"].items()}

    def f(name, xy):
        ray = np.linalg.solve(K[name], np.r_[xy, 1.0])
        camera = rec.cameras[rec.find_image_with_name(name).camera_id]
        return np.asarray(camera.img_from_cam(ray[None]))[0] - 0.5  # COLMAP's pixel centres are at +0.5

    return f


def test_collection_positives_agree_with_the_ground_truth_cameras(tmp_path):
    """castle-P30's cameras are not given to the recipe; its positives must still satisfy them."""
    from patchmatch.datasets.photo_collections import write_collection_set
    from patchmatch.sfm import SfmConfig

    scene = load_scene(shared_path("scenes", "castle-P30"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in NAMES:
        shutil.copy(scene.image_path(n), photos / n)
    summary = write_collection_set(photos, tmp_path / "set", pair_config=PairSetConfig(tracks=TrackConfig(max_keypoints=1500)),
                                   sfm_config=SfmConfig(max_keypoints=2000, device="cpu", threads=1))  # fmt: skip
    ds = BrownDataset(tmp_path / "set" / "oriented")
    pairs = ds.pairs(summary["protocols"]["random"]["file"])
    names = summary["images"]
    to_photo = _undistorted_to_photo(tmp_path / "set.sfm" / "sparse" / "0", tmp_path / "set.undistorted" / "cameras.json")
    d = []
    for (a, b) in pairs.index[pairs.labels]:
        (ia, xa), (ib, xb) = ((names[int(ds.interest[k, 0])], ds.interest[k, 1:3]) for k in (a, b))
        line = fundamental_matrix(scene.cameras[ia], scene.cameras[ib]) @ np.r_[to_photo(ia, xa), 1.0]
        d.append(abs(line @ np.r_[to_photo(ib, xb), 1.0]) / np.hypot(line[0], line[1]))
    d = np.asarray(d)
    # both centres within a pixel of one point of the model, the model close to the truth
    assert len(d) > 100 and np.median(d) < 0.5 and (d < 2.0).mean() > 0.99, np.percentile(d, [50, 99, 100])
    neg = pairs.index[~pairs.labels]
    assert (ds.point_ids[neg[:, 0]] != ds.point_ids[neg[:, 1]]).all()
