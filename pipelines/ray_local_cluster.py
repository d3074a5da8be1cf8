"""A Ray cluster of N nodes on this machine, on loopback inside a network namespace of its own,
and a command run against it (for benchmarks and tests of ``--executor ray:ADDRESS``).

Ray binds its nodes to the machine's network interface even when given
``--node-ip-address=127.0.0.1``; inside a fresh network namespace (``unshare -n``, needs root or
user namespaces) loopback is the only interface, so the nodes take 127.0.0.1 and nothing outside
can reach them. The command gets ``RAY_ADDRESS`` and the cluster's token in its environment; every
``{address}`` in it is replaced by the head's address. At the end every process of the namespace
is stopped.

    unshare -n python pipelines/ray_local_cluster.py --nodes 2 --cpus-per-node 1 -- \\
        python pipelines/scale_bench.py OUT --sizes 50 --executor ray:{address} --label "ray, 2 nodes"
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
ROOT = Path(__file__).resolve().parents[1]


def namespace_pids() -> list[int]:
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


def require_own_namespace() -> None:
    """Refuses to run outside a network namespace of its own: on exit every process of the
    namespace is killed, which outside ``unshare -n`` would be every process of the machine.

    Raises:
        RuntimeError: this namespace has an interface other than ``lo`` (the machine's own).
    """
    interfaces = [line.split(":")[0].strip() for line in Path("/proc/self/net/dev").read_text().splitlines()[2:]]
    if any(name != "lo" for name in interfaces):
        raise RuntimeError("ray_local_cluster.py runs inside a network namespace of its own (`unshare -n python "
                           f"pipelines/ray_local_cluster.py ...`); this one has {', '.join(interfaces)}")  # fmt: skip


def count_nodes(address: str, env: dict) -> int:
    """Alive nodes of the cluster at ``address``."""
    code = f"import ray; ray.init(address='{address}'); print(len([n for n in ray.nodes() if n['Alive']]))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


@contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 1, port: int = 6390, gpus_per_node: int = 0):
    """Starts a head and ``nodes - 1`` nodes joined by address on 127.0.0.1 (call inside
    ``unshare -n``), each declaring ``cpus_per_node`` CPUs and ``gpus_per_node`` GPUs (whether
    or not it has them: Ray schedules by what nodes declare); yields ``(address, env)`` (the environment a driver needs); stops every
    process of the namespace on exit.

    Raises:
        RuntimeError: not inside a network namespace of its own (:func:`require_own_namespace`).
        subprocess.CalledProcessError: ``ip`` or ``ray start`` failed.
    """
    require_own_namespace()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # a token for this cluster alone (ray 2.60's nodes refuse to join without one)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16)}  # fmt: skip
    common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}", f"--num-gpus={gpus_per_node}",
              "--disable-usage-stats"]  # fmt: skip
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short (socket paths) and this cluster's alone
    address = f"127.0.0.1:{port}"
    try:
        head = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", *common]
        subprocess.run(head, env=env, check=True, capture_output=True)
        for _ in range(nodes - 1):
            subprocess.run([RAY, "start", f"--address={address}", *common], env=env, check=True, capture_output=True)
        yield address, {**env, "RAY_ADDRESS": address}
    finally:
        for pid in namespace_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=0)
    parser.add_argument("--port", type=int, default=6390)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command ({address}: the head's)")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    try:
        require_own_namespace()
    except RuntimeError as error:
        print(f"ray_local_cluster.py: error: {error}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with local_cluster(args.nodes, args.cpus_per_node, args.port, args.gpus_per_node) as (address, env):
        alive = count_nodes(address, env)
        print(f"{alive} Ray nodes up at {address} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return subprocess.run([c.replace("{address}", address) for c in command], env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
