"""Run the build recipe on untrusted source inside a locked-down container, and hash the result on the host.

The container has no network, runs as an unprivileged uid with a read-only root, no capabilities and
`no-new-privileges`, sees the source read-only at /src, a noexec tmpfs at /tmp and one writable /out;
memory (no swap), CPU, pids and log size are capped, and the caller's clock enforces the timeout (kill and
remove in `finally`). The sha256 comes from the file the build wrote, opened on the host with O_NOFOLLOW —
never from anything the build printed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_build.image import BUILDER_UID, BuilderImage

WASM_NAME = "app.wasm"
ROLE_LABEL = "io.prometheus.role"
OWNER_LABEL = "io.prometheus.owner"  # which worker started a build container (to clean up after a crash)
DID_NAME = "app.did"


class SandboxUnavailable(RuntimeError):
    """Docker could not run the build (daemon down, image missing): transient, try again later."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 3 * 1024**3  # a 23-package app peaks at 1.9–2.2 GiB while compiling
    # moc.js compiles on one thread while V8 compiles and collects garbage on others: under a 1-CPU quota a
    # small app took 7.3 s to build, under 2 CPUs 4.6 s (docs/benchmarks.md). Capped at the daemon's CPUs.
    cpus: float = 2.0
    pids: int = 128
    timeout_s: float = 600.0
    tmp_bytes: int = 512 * 1024**2
    max_wasm_bytes: int = 100 * 1024**2
    log_excerpt_bytes: int = 8 * 1024


@dataclass(frozen=True)
class ContainerRun:
    exit_code: int | None  # None when the timeout killed it
    timed_out: bool
    oom_killed: bool
    log: str  # the last `log_excerpt_bytes` of stdout+stderr
    seconds: float


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    sha256: str | None
    reason: str  # "" when ok; otherwise one line saying why the build failed
    log: str
    seconds: float


def _hardened(image: BuilderImage, argv: list[str], source: Path, out: Path, limits: Limits,
              owner: str, host_cpus: int) -> dict[str, Any]:
    from docker.types import LogConfig, Ulimit

    return {
        "image": image.image_id or image.tag,
        "command": argv,
        "user": f"{BUILDER_UID}:{BUILDER_UID}",
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(min(limits.cpus, host_cpus) * 1e9),  # Docker refuses more CPUs than it has
        "pids_limit": limits.pids,
        "ulimits": [Ulimit(name="fsize", soft=limits.tmp_bytes, hard=limits.tmp_bytes),  # /out is on the host disk
                    Ulimit(name="core", soft=0, hard=0)],
        "ipc_mode": "none",
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmp_bytes}"},
        "volumes": {str(source): {"bind": "/src", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}},
        "environment": {"HOME": "/tmp", "TMPDIR": "/tmp", "LC_ALL": "C", "TZ": "UTC"},
        "working_dir": "/tmp",
        "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        "labels": {ROLE_LABEL: "build", OWNER_LABEL: owner},
        "detach": True,
    }


def run_container(client: Any, image: BuilderImage, argv: list[str], source: Path, out: Path,
                  limits: Limits = Limits(), owner: str = "") -> ContainerRun:
    """Run `argv` in the hardened container; the container is always removed, a timeout always kills it."""
    import docker
    import requests

    started = time.monotonic()
    container = None
    try:
        host_cpus = int(client.info().get("NCPU") or 1)
        container = client.containers.create(**_hardened(image, argv, source, out, limits, owner, host_cpus))
        container.start()
        timed_out = False
        exit_code: int | None = None
        try:
            exit_code = int(container.wait(timeout=limits.timeout_s)["StatusCode"])
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            if time.monotonic() - started < limits.timeout_s:
                raise  # the daemon went away before the deadline: not the build's fault
            timed_out = True
            try:
                container.kill()
            except docker.errors.APIError:
                pass  # it exited between the timeout and the kill
        state = client.api.inspect_container(container.id)["State"]
        raw = container.logs(stdout=True, stderr=True, tail=200)
        log = raw[-limits.log_excerpt_bytes:].decode("utf-8", "replace")
        return ContainerRun(exit_code, timed_out, bool(state.get("OOMKilled")), log, time.monotonic() - started)
    except docker.errors.ImageNotFound as exc:
        raise SandboxUnavailable(f"builder image {image.tag} is missing: {exc}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise SandboxUnavailable(f"docker is unavailable: {exc}") from exc
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except Exception:
                pass  # the daemon went away; nothing left to clean here


def remove_leftovers(client: Any, owner: str) -> int:
    """Remove build containers a killed worker left running; returns how many."""
    containers = client.containers.list(all=True, filters={"label": [f"{ROLE_LABEL}=build", f"{OWNER_LABEL}={owner}"]})
    for container in containers:
        container.remove(force=True)
    return len(containers)


def hash_output(path: Path, max_bytes: int) -> str:
    """sha256 of a regular file the sandbox wrote, refusing symlinks, special files and oversized output."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{path.name} is {info.st_size} bytes, over the {max_bytes}-byte limit")
        h = hashlib.sha256()
        while block := os.read(fd, 1 << 20):
            h.update(block)
        return h.hexdigest()
    finally:
        os.close(fd)


def prepare_out(out: Path) -> None:
    """An empty output directory the container's unprivileged user can write to."""
    out.mkdir(parents=True, exist_ok=False)
    if os.geteuid() == 0:
        os.chown(out, BUILDER_UID, BUILDER_UID)
    else:
        out.chmod(0o777)  # its parent is a private 0700 directory


def build(client: Any, image: BuilderImage, source: Path, main_rel: str, out: Path,
          limits: Limits = Limits(), owner: str = "", *, root: str = "/src", plan: str | None = None) -> BuildResult:
    """The recipe (`compile.js`) on `source/main_rel` in the sandbox; deterministic failures are results.
    `source` is mounted read-only at /src; `root` is the app's source folder inside it and `plan` the
    package plan (`prometheus_build.recipe.plan_json` with in-container folders)."""
    prepare_out(out)
    argv = [image.node, image.compile_js, image.motoko_dir, image.ic_wasm, root, main_rel,
            f"/out/{WASM_NAME}", f"/out/{DID_NAME}", *([plan] if plan else [])]
    run = run_container(client, image, argv, source.resolve(), out.resolve(), limits, owner)
    if run.timed_out:
        return BuildResult(False, None, f"build timed out after {limits.timeout_s:.0f} s", run.log, run.seconds)
    if run.oom_killed:
        return BuildResult(False, None, f"build ran out of memory ({limits.memory_bytes >> 20} MiB)", run.log,
                           run.seconds)
    if run.exit_code in (125, 126, 127):  # the container could not run the recipe: our setup, not the source
        raise SandboxUnavailable(f"the builder image could not run the recipe (exit {run.exit_code}): {run.log[-300:]}")
    if run.exit_code in (137, 143):  # killed, not by the OOM killer nor by our timeout: someone stopped it
        raise SandboxUnavailable(f"the build container was stopped from outside (exit {run.exit_code})")
    if run.exit_code != 0:
        first = next((line for line in run.log.splitlines() if "error" in line), "")
        return BuildResult(False, None, f"build failed (exit {run.exit_code}){': ' + first if first else ''}",
                           run.log, run.seconds)
    try:
        digest = hash_output(out / WASM_NAME, limits.max_wasm_bytes)
    except (OSError, ValueError) as exc:
        return BuildResult(False, None, f"build produced no usable wasm: {exc}", run.log, run.seconds)
    return BuildResult(True, digest, "", run.log, run.seconds)
