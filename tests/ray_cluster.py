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
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
ROOT = Path(__file__).resolve().parents[1]


def _namespace_pids() -> list[int]:
    """The processes of this network namespace other than this one."""
    mine = os.readlink("/proc/self/ns/net")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if os.readlink(entry / "ns" / "net") == mine:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _matcher_pids() -> list[int]:
    """Ray worker processes holding a BlockMatcher actor."""
    found = []
    for pid in _namespace_pids():
        try:
            if b"ray::BlockMatcher" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def _count_nodes(port: str, env: dict) -> int:
    code = f"import ray; ray.init(address='127.0.0.1:{port}'); print(len([n for n in ray.nodes() if n['Alive']]))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def main(images: str, out: str, port: str, gpus: str, *options: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # a token for this cluster alone (ray 2.60's nodes refuse to join without one)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16)}  # fmt: skip
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", f"--num-gpus={gpus}", "--disable-usage-stats"]
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short (socket paths) and this cluster's alone
    result: dict = {"killed": None}
    try:
        t0 = time.perf_counter()
        head = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", *common]
        subprocess.run(head, env=env, check=True, capture_output=True)
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True, capture_output=True)
        result["nodes"] = _count_nodes(port, env)
        result["cluster_seconds"] = round(time.perf_counter() - t0, 1)
        cmd = [sys.executable, "-m", "patchmatch.cli", "-q", "sfm", images, out, "--executor", f"ray:127.0.0.1:{port}", *options]
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
    finally:
        for pid in _namespace_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
