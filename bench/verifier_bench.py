"""Verifier worker benchmark: bare sandboxed compile vs request+bounty -> attestation filed, and two
concurrent jobs vs sequential. Real parts only: the protocol on the embedded replica over HTTP, a loopback
git server, Docker (a private dockerd unless $DOCKER_HOST is set).

    .venv/bin/python bench/verifier_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from ic_replica.http_server import IcHttpServer  # noqa: E402
from prometheus_build import sandbox  # noqa: E402
from prometheus_build.image import ensure_image  # noqa: E402
from prometheus_build.recipe import build_all  # noqa: E402
from testkit.backends import EmbeddedBackend  # noqa: E402
from testkit.git_server import serve  # noqa: E402
from testkit.protocol import Stack  # noqa: E402
from testkit.verifier import HELLO, Net, make_worker, principal  # noqa: E402
from verifier_bot.dockerd import PrivateDockerd  # noqa: E402


def bare_compile(client: Any, image: Any, source: Path, work: Path, runs: int) -> float:
    times = []
    for i in range(runs):
        result = sandbox.build(client, image, source, "src/main.mo", work / f"bare-{i}")
        assert result.ok, result.log
        times.append(result.seconds)
    return statistics.median(times)


def request_to_attestation(net: Net, image: Any, host: str, work: Path, runs: int) -> float:
    """Wall time from the request + bounty to our attestation on chain, with the worker polling every 0.5 s."""
    worker, _ = make_worker(net, image, host, work / "latency", poll_interval_s=0.5, max_concurrent_jobs=1)
    loop = threading.Thread(target=worker.run, daemon=True)
    loop.start()
    times = []
    try:
        for i in range(runs):
            repo, commit, wasm = net.app_repo(HELLO.replace("Hello", f"Hello{i}"))
            started = time.perf_counter()
            wasm_id, _ = net.submit(wasm, repo, commit)
            while not net.filings(wasm_id):
                time.sleep(0.05)
            times.append(time.perf_counter() - started)
            assert net.filings(wasm_id)[0]["attested"]
    finally:
        worker.stopping.set()
        loop.join()
        worker.close()
    return statistics.median(times)


def jobs_wall_time(net: Net, image: Any, host: str, work: Path, concurrency: int, tag: str) -> float:
    submitted = []
    for i in range(2):
        repo, commit, wasm = net.app_repo(HELLO.replace("Hello", f"Hey{tag}{i}"))
        submitted.append(net.submit(wasm, repo, commit)[0])
    worker, _ = make_worker(net, image, host, work / f"jobs-{tag}", max_concurrent_jobs=concurrency,
                            role=f"verifier{concurrency + 1}")
    net.stack.stake(principal(f"verifier{concurrency + 1}"))
    started = time.perf_counter()
    while not all(net.filings(w) for w in submitted):
        worker.run_once()
    elapsed = time.perf_counter() - started
    worker.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prometheus-vbench-"))
    daemon = None
    host = os.environ.get("DOCKER_HOST")
    if not host:
        daemon = PrivateDockerd(work / "dockerd").start()
        host = daemon.host
    product = {r.name: r for r in build_all(ROOT / "canister_src", ROOT / "build" / "canisters",
                                            ROOT / "build" / "cache")}
    ic = EmbeddedBackend()
    server = IcHttpServer(ic.replica).start()
    try:
        client = docker.DockerClient(base_url=host, timeout=300)
        image = ensure_image(client)
        with serve(work / "git") as git_url:
            (work / "git").mkdir(exist_ok=True)
            stack = Stack.deploy(ic, product, server.url)
            stack.stake(principal())
            net = Net(stack, server.url, git_url, work / "git", ROOT / "build" / "cache")
            _, _, tree = net.repo({"src/main.mo": HELLO})
            bare = bare_compile(client, image, tree, work, args.runs)
            latency = request_to_attestation(net, image, host, work, args.runs)
            sequential = jobs_wall_time(net, image, host, work, 1, "s")
            concurrent = jobs_wall_time(net, image, host, work, 2, "c")
        print(f"cores: {os.cpu_count()}, build limits: 1 CPU, 2 GiB per container")
        print(f"bare in-container compile (median of {args.runs}):    {bare:6.2f} s")
        print(f"request+bounty -> attestation filed (median):  {latency:6.2f} s  "
              f"(target <= 1.5 x bare + 3 s = {1.5 * bare + 3:.2f} s)")
        print(f"two jobs, sequential (MAX_CONCURRENT_JOBS=1):   {sequential:6.2f} s")
        print(f"two jobs, concurrent (MAX_CONCURRENT_JOBS=2):   {concurrent:6.2f} s  "
              f"(speed-up {sequential / concurrent:.2f}x)")
    finally:
        server.stop()
        ic.replica.close()
        if daemon is not None:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
