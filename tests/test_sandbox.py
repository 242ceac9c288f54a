"""The builder image and the hardened build container, on a real Docker daemon.

The recipe runs no repository code, but the container is the last line of defence if the compiler were
ever exploited: these tests run hostile programs inside the very container configuration the worker uses.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from prometheus_build import sandbox
from prometheus_build.image import BUILDER_UID, ImageError, check_image, write_rootfs
from prometheus_build.recipe import build_canister
from prometheus_build.toolchain import find_toolchain

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HOSTILE_LIMITS = sandbox.Limits(memory_bytes=512 << 20, timeout_s=60, pids=64)


def node(client: Any, image: Any, tmp_path: Path, code: str, limits: sandbox.Limits = HOSTILE_LIMITS,
         owner: str = "test") -> sandbox.ContainerRun:
    out = tmp_path / "out"
    sandbox.prepare_out(out)
    return sandbox.run_container(client, image, [image.node, "-e", code], EXAMPLES, out, limits, owner)


def test_rootfs_is_reproducible(tmp_path: Path) -> None:
    toolchain = find_toolchain()
    first = write_rootfs(toolchain, tmp_path / "a.tar")
    second = write_rootfs(toolchain, tmp_path / "b.tar")
    assert first == second == hashlib.sha256((tmp_path / "a.tar").read_bytes()).hexdigest()


def test_image_layer_is_the_pinned_rootfs(docker_client: Any, builder_image: Any) -> None:
    attrs = docker_client.images.get(builder_image.tag).attrs
    assert attrs["RootFS"]["Layers"] == [f"sha256:{builder_image.rootfs_digest}"]
    assert attrs["Config"]["Labels"]["io.prometheus.toolchain-digest"] == builder_image.toolchain_digest
    assert attrs["Config"]["User"] == f"{BUILDER_UID}:{BUILDER_UID}"


def test_a_retagged_image_is_refused(docker_client: Any, builder_image: Any) -> None:
    impostor = builder_image.__class__(tag=builder_image.tag, rootfs_digest="0" * 64,
                                       toolchain_digest=builder_image.toolchain_digest)
    with pytest.raises(ImageError, match="does not match"):
        check_image(docker_client, impostor)


def test_sandboxed_build_matches_the_host_recipe(docker_client: Any, builder_image: Any, tmp_path: Path) -> None:
    owner = f"match-test-{os.getpid()}"  # other test workers may be building on the same daemon
    result = sandbox.build(docker_client, builder_image, EXAMPLES, "hello_mcp/main.mo", tmp_path / "out", owner=owner)
    host = build_canister("hello", EXAMPLES, "hello_mcp/main.mo", tmp_path / "host", ROOT / "build" / "cache")
    assert result.ok, result.log
    assert result.sha256 == host.sha256 == hashlib.sha256((tmp_path / "out" / "app.wasm").read_bytes()).hexdigest()
    assert not docker_client.containers.list(all=True, filters={"label": f"io.prometheus.owner={owner}"})


def test_compile_error_is_a_result_with_the_diagnostic(docker_client: Any, builder_image: Any,
                                                       tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.mo").write_text("persistent actor { public func f() : async Nat { \"text\" } }\n")
    result = sandbox.build(docker_client, builder_image, src, "main.mo", tmp_path / "out")
    assert not result.ok and result.sha256 is None
    assert "main.mo:1:" in result.reason and "error" in result.reason


def test_timeout_kills_and_removes_the_container(docker_client: Any, builder_image: Any, tmp_path: Path) -> None:
    run = node(docker_client, builder_image, tmp_path, "setInterval(() => {}, 1000)",
               sandbox.Limits(timeout_s=1.5), owner="timeout-test")
    assert run.timed_out and run.exit_code is None
    assert run.seconds < 15
    assert not docker_client.containers.list(all=True, filters={"label": "io.prometheus.owner=timeout-test"})


def test_no_network(docker_client: Any, builder_image: Any, tmp_path: Path) -> None:
    code = ("const n=require('net');const s=n.connect(80,'1.1.1.1');s.on('connect',()=>{console.log('CONNECTED');"
            "process.exit(0)});s.on('error',e=>{console.log('blocked',e.code);process.exit(3)});"
            "console.log('ifaces',Object.keys(require('os').networkInterfaces()).join(','))")
    run = node(docker_client, builder_image, tmp_path, code)
    assert run.exit_code == 3 and "blocked ENETUNREACH" in run.log and "CONNECTED" not in run.log
    assert "ifaces lo" in run.log and "eth0" not in run.log


def test_unprivileged_read_only_and_no_new_privileges(docker_client: Any, builder_image: Any,
                                                     tmp_path: Path) -> None:
    code = ("const fs=require('fs');console.log('uid',process.getuid(),'gid',process.getgid());"
            "const st=fs.readFileSync('/proc/self/status','utf8');"
            "for(const k of ['CapEff','CapPrm','CapBnd','NoNewPrivs'])"
            "console.log(st.match(new RegExp(k+':\\\\s*(\\\\S+)'))[0]);"
            "for(const p of ['/opt/x','/src/x','/etc/x']){try{fs.writeFileSync(p,'x');console.log('WROTE',p)}"
            "catch(e){console.log('denied',p,e.code)}}"
            "fs.writeFileSync('/tmp/x.sh','#!/usr/bin/node\\n');fs.chmodSync('/tmp/x.sh',0o755);"
            "try{require('child_process').execFileSync('/tmp/x.sh');console.log('EXECUTED tmp')}"
            "catch(e){console.log('noexec',e.code)}")
    run = node(docker_client, builder_image, tmp_path, code)
    assert run.exit_code == 0, run.log
    assert f"uid {BUILDER_UID} gid {BUILDER_UID}" in run.log
    for cap in ("CapEff", "CapPrm", "CapBnd"):
        assert f"{cap}:\t0000000000000000" in run.log
    assert "NoNewPrivs:\t1" in run.log
    assert "WROTE" not in run.log and run.log.count("denied") == 3
    assert "EXECUTED" not in run.log and "noexec EACCES" in run.log


def test_cpus_are_capped_and_never_more_than_the_host_has(docker_client: Any, builder_image: Any,
                                                          tmp_path: Path) -> None:
    # The CFS quota as the container sees it (cgroup v2: "quota period"; v1: two files).
    code = ("const fs=require('fs');let q;try{q=fs.readFileSync('/sys/fs/cgroup/cpu.max','utf8')}"
            "catch(e){q=fs.readFileSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us','utf8').trim()+' '+"
            "fs.readFileSync('/sys/fs/cgroup/cpu/cpu.cfs_period_us','utf8')}console.log('quota',q.trim())")
    host = int(docker_client.info()["NCPU"])
    for asked, expected in ((0.5, 0.5), (256.0, float(host))):  # Docker refuses a quota over the host's CPUs
        run = node(docker_client, builder_image, tmp_path / str(asked), code, sandbox.Limits(cpus=asked, timeout_s=60))
        assert run.exit_code == 0, run.log
        quota, period = run.log.split("quota ")[1].split()[:2]
        assert int(quota) / int(period) == expected, run.log


def test_fork_bomb_hits_the_pids_limit(docker_client: Any, builder_image: Any, tmp_path: Path) -> None:
    # Every child is a sleeping node (a handful of threads, ~40 MB): the pids limit stops it long before memory.
    code = ("const cp=require('child_process');let n=0;"
            "const stop=e=>{console.log('refused',n,e.code);process.exit(4)};"
            f"function bomb(){{try{{cp.spawn('{builder_image.node}',['-e','setInterval(()=>{{}},1e6)'],"
            "{stdio:'ignore'}).on('error',stop)}catch(e){stop(e)}"
            "if(++n>10000){console.log('UNBOUNDED');process.exit(0)}setImmediate(bomb)}bomb()")
    run = node(docker_client, builder_image, tmp_path, code, sandbox.Limits(timeout_s=60, pids=64))
    assert "UNBOUNDED" not in run.log
    assert run.exit_code == 4 and "EAGAIN" in run.log and not run.oom_killed, run


def test_memory_hog_is_oom_killed(docker_client: Any, builder_image: Any, tmp_path: Path) -> None:
    run = node(docker_client, builder_image, tmp_path, "const a=[];for(;;){a.push(Buffer.alloc(64<<20,1))}")
    assert run.oom_killed and run.exit_code == 137


def test_log_excerpt_is_bounded(docker_client: Any, builder_image: Any, tmp_path: Path) -> None:
    run = node(docker_client, builder_image, tmp_path,
               "for(let i=0;i<20000;i++)console.log('x'.repeat(200)+i);console.log('LAST')")
    assert run.exit_code == 0 and len(run.log) <= HOSTILE_LIMITS.log_excerpt_bytes and run.log.rstrip().endswith("LAST")


def test_output_symlink_is_never_followed(tmp_path: Path) -> None:
    (tmp_path / "app.wasm").symlink_to("/etc/passwd")
    with pytest.raises(OSError):
        sandbox.hash_output(tmp_path / "app.wasm", 1 << 20)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="not a regular file"):
        sandbox.hash_output(tmp_path / "fifo", 1 << 20)
    (tmp_path / "big").write_bytes(b"x" * 2048)
    with pytest.raises(ValueError, match="limit"):
        sandbox.hash_output(tmp_path / "big", 1024)


def test_a_broken_image_is_unavailable_not_a_verdict(docker_client: Any, builder_image: Any, tmp_path: Path) -> None:
    import dataclasses

    broken = dataclasses.replace(builder_image, node="/usr/bin/no-such-node")
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox.build(docker_client, broken, EXAMPLES, "hello_mcp/main.mo", tmp_path / "out")


def test_a_build_killed_from_outside_is_unavailable_not_a_verdict(docker_client: Any, builder_image: Any,
                                                                   tmp_path: Path) -> None:
    import threading
    import time

    outcome: dict[str, Any] = {}

    def build() -> None:
        try:
            outcome["result"] = sandbox.build(docker_client, builder_image, EXAMPLES, "hello_mcp/main.mo",
                                              tmp_path / "out", owner="killed-test")
        except sandbox.SandboxUnavailable as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=build)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = docker_client.containers.list(filters={"label": "io.prometheus.owner=killed-test"})
        if running:
            running[0].kill()
            break
        time.sleep(0.05)
    thread.join(60)
    assert "stopped from outside" in str(outcome.get("error")), outcome


def test_docker_down_is_unavailable_not_a_verdict(builder_image: Any) -> None:
    import docker

    dead = docker.DockerClient(base_url=f"unix://{tempfile.gettempdir()}/no-such-docker.sock", timeout=5,
                                version="1.41")
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(sandbox.SandboxUnavailable):
        sandbox.build(dead, builder_image, EXAMPLES, "hello_mcp/main.mo", Path(tmp) / "out")
