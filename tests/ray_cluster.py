"""Run inside a network namespace of its own by tests/test_cluster.py: starts a Ray head and a
second node on 127.0.0.1 (``ray start``, joined by address), runs ``patchmatch sfm`` through
them, kills one matching worker process as soon as the first block of matches is written, and
stops every process of the namespace at the end (by pid: only this namespace's processes).

Usage: python tests/ray_cluster.py IMAGES OUT PORT GPUS [sfm options...] (GPUS: the GPUs each node
declares, ``ray start --num-gpus``, whether or not it has them); prints one JSON line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipelines"))
from ray_local_cluster import count_nodes, local_cluster, namespace_pids  # noqa: E402


def _matcher_pids() -> list[int]:
    """Ray worker processes holding a BlockMatcher actor."""
    found = []
    for pid in namespace_pids():
        try:
            if b"ray::BlockMatcher" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def main(images: str, out: str, port: str, gpus: str, *options: str) -> None:
    result: dict = {"killed": None}
    t0 = time.perf_counter()
    with local_cluster(nodes=2, cpus_per_node=1, port=int(port), gpus_per_node=int(gpus)) as (address, env):
        result["nodes"] = count_nodes(address, env)
        result["cluster_seconds"] = round(time.perf_counter() - t0, 1)
        cmd = [sys.executable, "-m", "patchmatch.cli", "-q", "sfm", images, out, "--executor", f"ray:{address}", *options]
        t0 = time.perf_counter()
        run = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        shards = Path(out) / "shards"
        while run.poll() is None and result["killed"] is None:
            if shards.is_dir() and any(p.name.startswith("matches-") for p in shards.iterdir()):
                victims = _matcher_pids()
                if victims:
                    os.kill(victims[0], signal.SIGKILL)
                    result["killed"] = victims[0]
            time.sleep(0.02)
        output, _ = run.communicate(timeout=600)
        result.update(returncode=run.returncode, sfm_seconds=round(time.perf_counter() - t0, 1), output=output[-3000:])
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
