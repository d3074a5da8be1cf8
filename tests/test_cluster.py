"""``patchmatch sfm`` (6 entry-P10 views at 640 px) on a two-node Ray cluster started on this machine: a head and a second node
joined by address, on 127.0.0.1 inside a network namespace of their own (Ray binds to the
machine's network interface otherwise), with one matching worker killed mid-run. The matches
equal a local run's, every pair written once.

Skipped where Ray is not installed or a network namespace cannot be made (``unshare -n`` needs
root or user namespaces).
"""

from __future__ import annotations

import json
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
OPTIONS = ["--max-keypoints", "1024", "--max-image-size", "640", "--pairs", "exhaustive", "--device", "cpu",
           "--threads", "1"]  # fmt: skip


def _can_unshare() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (iproute2) not found"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n is not permitted here ({probe.stderr.strip()})"


def _sfm(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "patchmatch.cli", "-q", *args]
    return subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)


def _pair_groups(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return sum(len(f[first]) for first in f)


@pytest.mark.cluster
def test_two_node_cluster_with_a_killed_worker_gives_the_local_matches(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'patchmatch[ray]')")
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    scene = shared_path("scenes", "entry-P10", "images")
    images = tmp_path / "images"
    images.mkdir()
    for n in NAMES:
        (images / n).symlink_to(scene / n)
    local = _sfm(["sfm", str(images), str(tmp_path / "local"), *OPTIONS])
    assert local.returncode == 0, local.stdout + local.stderr
    script = Path(__file__).with_name("ray_cluster.py")
    done = subprocess.run(["unshare", "-n", sys.executable, str(script), str(images), str(tmp_path / "ray"), "6390",
                           *OPTIONS], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["nodes"] == 2 and result["returncode"] == 0, result["output"]
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
