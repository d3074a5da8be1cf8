"""``patchmatch sfm`` (6 entry-P10 views at 640 px) on a two-node Ray cluster started on this machine: a head and a second node
joined by address, on 127.0.0.1 inside a network namespace of their own (Ray binds to the
machine's network interface otherwise), with one matching worker killed mid-run. The matches
equal a local run's, every pair written once. On nodes declaring a GPU they do not have, the
run fails with one line naming the node.

Skipped where Ray is not installed or a network namespace cannot be made (``unshare -n`` needs
root or user namespaces).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from patchmatch import storage
from patchmatch.stages import select_pairs
from tests.conftest import shared_path

NAMES = [f"{i:04d}.jpg" for i in range(6)]
OPTIONS = ["--max-keypoints", "1024", "--max-image-size", "640", "--pairs", "exhaustive", "--threads", "1"]


def _can_unshare() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (iproute2) not found"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n is not permitted here ({probe.stderr.strip()})"


def _sfm(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "patchmatch.cli", "-q", *args]
    return subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)


def _images(tmp_path: Path) -> Path:
    scene = shared_path("scenes", "entry-P10", "images")
    images = tmp_path / "images"
    images.mkdir()
    for n in NAMES:
        (images / n).symlink_to(scene / n)
    return images


def _on_cluster(images: Path, out: Path, gpus: int) -> dict:
    """``patchmatch sfm`` on the two-node cluster of ``tests/ray_cluster.py``, each node declaring ``gpus`` GPUs."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'patchmatch[ray]')")
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    script = Path(__file__).with_name("ray_cluster.py")
    done = subprocess.run(["unshare", "-n", sys.executable, str(script), str(images), str(out), "6390", str(gpus),
                           *OPTIONS], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["nodes"] == 2, result["output"]
    return result


def _pair_groups(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return sum(len(f[first]) for first in f)


@pytest.mark.cluster
def test_two_node_cluster_with_a_killed_worker_gives_the_local_matches(tmp_path):
    """``--device auto`` on a cluster without GPUs: CPU actors at the driver's precision, as the local run."""
    images = _images(tmp_path)
    local = _sfm(["sfm", str(images), str(tmp_path / "local"), *OPTIONS, "--device", "cpu"])
    assert local.returncode == 0, local.stdout + local.stderr
    result = _on_cluster(images, tmp_path / "ray", gpus=0)
    assert result["returncode"] == 0, result["output"]
    assert result["killed"] is not None, "no matching worker was found to kill: " + result["output"]
    pairs = select_pairs.read(tmp_path / "ray" / "pairs.json")
    assert pairs == select_pairs.read(tmp_path / "local" / "pairs.json") and len(pairs) == 15
    for a, b in pairs:
        for ours, theirs in zip(storage.read_matches(tmp_path / "ray" / "matches.h5", a, b),
                                storage.read_matches(tmp_path / "local" / "matches.h5", a, b)):  # fmt: skip
            np.testing.assert_array_equal(ours, theirs)
    assert _pair_groups(tmp_path / "ray" / "matches.h5") == len(pairs)  # none written twice (or reversed)
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert report["registered"] == report["images"] == len(NAMES)
    local_report = json.loads((tmp_path / "local" / "report.json").read_text())
    assert report["scoring"]["device"] == local_report["scoring"]["device"] == "cpu"
    assert report["scoring"]["precision"] == local_report["scoring"]["precision"] == local_report["weights"]["precision"]
    assert report["scoring"]["actors"] == 2 and report["scoring"]["executor"] == "ray"  # one per CPU of the nodes
    assert len(set(report["scoring"]["nodes"])) == 2, report["scoring"]  # two nodes of one machine told apart


@pytest.mark.cluster
def test_nodes_declaring_a_gpu_without_cuda_fail_in_one_line(tmp_path):
    """``--device auto`` on nodes that declare a GPU each: one CUDA actor per node; where CUDA is
    not usable (this machine) the run stops with one line naming the node and the problem."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the failure needs nodes that only declare GPUs")
    result = _on_cluster(_images(tmp_path), tmp_path / "ray", gpus=1)
    assert result["returncode"] == 2, result["output"]
    assert "Traceback" not in result["output"], result["output"]
    last = result["output"].strip().splitlines()[-1]
    assert re.fullmatch(r"patchmatch sfm: error: node .+ \(127\.0\.0\.1, node [0-9a-f]{8}\): cannot score on cuda \(Ray's GPU \d+\): "
                        r"PyTorch .+ \(1 more of the 2 actors failed too\)", last), result["output"]  # fmt: skip
    assert not (tmp_path / "ray" / "matches.h5").exists()
