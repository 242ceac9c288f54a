"""The builder image: the pinned toolchain and the recipe's own `compile.js` in a minimal root filesystem.

No registry and no Dockerfile: the root filesystem is the host's `node` with the shared libraries it links,
the node_modules `find_toolchain` finds (motoko, ic-wasm, pinned by the lockfile; a checkout's or the
per-user cache's, the same bytes either way) and `prometheus_build/compile.js` — the
very file `make build` runs, so the sandbox and the host share one implementation of the recipe. It is
written as a tar with sorted entries, mtime 0 and root ownership, so the same inputs give the same bytes;
`docker import` turns it into a one-layer image whose diff_id is the tar's sha256, which we check after the
import and record in every attestation together with the toolchain digest.

One image per pinned toolchain: the image holds only that toolchain's `motoko` package (always at
`node_modules/motoko` inside), so images for different moc versions differ and each is reproducible.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_build.recipe import RECIPE_VERSION
from prometheus_build.toolchain import Toolchain, find_toolchain

Progress = Callable[[str], None]  # one line per step while an image is made (the CLIs print them)

REPOSITORY = "prometheus-builder"
IN_IMAGE = "/opt/prometheus"
BUILDER_UID = 10001
LABEL_TOOLCHAIN = "io.prometheus.toolchain-digest"
LABEL_ROOTFS = "io.prometheus.rootfs-digest"
LABEL_RECIPE = "io.prometheus.recipe"
LABEL_MOTOKO = "io.prometheus.motoko"


class ImageError(RuntimeError):
    """The builder image could not be made or does not match what was built."""


@dataclass(frozen=True)
class BuilderImage:
    tag: str
    rootfs_digest: str  # sha256 of the imported tar == the image layer's diff_id
    toolchain_digest: str  # sha256 over node's version and every toolchain/recipe file
    image_id: str = ""  # containers are created from this id, checked once: a retag cannot swap the image
    node: str = "/usr/bin/node"
    compile_js: str = f"{IN_IMAGE}/compile.js"
    motoko_dir: str = f"{IN_IMAGE}/toolchain/node_modules/motoko"
    ic_wasm: str = f"{IN_IMAGE}/toolchain/node_modules/@icp-sdk/ic-wasm-linux-x64/bin/ic-wasm"
    moc: str = ""  # the toolchain it carries: moc version and npm motoko version
    motoko: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"tag": self.tag, "image_id": self.image_id, "rootfs_digest": self.rootfs_digest,
                "toolchain_digest": self.toolchain_digest, "moc": self.moc, "motoko": self.motoko}


def _shared_libraries(binary: Path) -> list[Path]:
    """The libraries `binary` loads (from `ldd`), including the dynamic loader."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=30).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def _files(toolchain: Toolchain) -> tuple[dict[str, Path], dict[str, Path]]:
    """(system files, toolchain files): path in the image -> path on the host."""
    node = toolchain.node.resolve()
    system = {"usr/bin/node": node}
    for lib in _shared_libraries(node):
        system[lib.as_posix().lstrip("/")] = lib.resolve()
    modules = toolchain.motoko_dir.parent
    tools = {"opt/prometheus/compile.js": toolchain.compile_js}
    for path in sorted(modules.rglob("*")):
        rel = path.relative_to(modules)
        top = rel.parts[0]
        if not path.is_file() or path.is_symlink() or top == ".package-lock.json":
            continue
        if top == toolchain.motoko_dir.name:  # this image's toolchain, always at node_modules/motoko inside
            rel = Path("motoko", *rel.parts[1:])
        elif top == "motoko" or top.startswith("motoko-"):
            continue  # the other pinned toolchains have images of their own
        tools[f"opt/prometheus/toolchain/node_modules/{rel.as_posix()}"] = path
    return system, tools


def toolchain_digest(toolchain: Toolchain) -> str:
    _, tools = _files(toolchain)
    node_version = subprocess.run([str(toolchain.node), "--version"], capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip()
    h = hashlib.sha256(f"{RECIPE_VERSION}\0node {node_version}\0{toolchain.digest_input()}\0".encode())
    for name in sorted(tools):
        h.update(f"{name}\0{hashlib.sha256(tools[name].read_bytes()).hexdigest()}\0".encode())
    return h.hexdigest()


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, mode: int = 0o755,
         directory: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = mode
    if directory:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        assert data is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def write_rootfs(toolchain: Toolchain, out: Path) -> str:
    """Write the reproducible root filesystem tar to `out`; return its sha256 (the layer's diff_id)."""
    system, tools = _files(toolchain)
    files = {**system, **tools}
    passwd = f"root:x:0:0::/:/nonexistent\nbuilder:x:{BUILDER_UID}:{BUILDER_UID}::/tmp:/nonexistent\n".encode()
    entries: dict[str, tuple[bytes | None, int]] = {"etc/passwd": (passwd, 0o644)}
    for name, host in files.items():
        entries[name] = (None, 0o755 if os.access(host, os.X_OK) else 0o644)
    dirs = {"tmp", "src", "out", "etc"}
    for name in entries:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(dirs | set(entries)):
            if name in dirs:
                _add(tar, name, directory=True, mode=0o1777 if name == "tmp" else 0o755)
            else:
                data, mode = entries[name]
                _add(tar, name, data=data if data is not None else files[name].read_bytes(), mode=mode)
    h = hashlib.sha256()
    with open(out, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure_image(client: Any, toolchain: Toolchain | None = None, progress: Progress | None = None) -> BuilderImage:
    """Import the builder image for `toolchain` (default: the recipe's) unless an image with the same root
    filesystem digest is already there. `progress` gets one line per step (a first import takes seconds)."""
    import docker

    say = progress or (lambda _line: None)
    started = time.monotonic()
    toolchain = toolchain or find_toolchain()
    what = f"builder image for moc {toolchain.moc_version} (motoko@{toolchain.motoko_version})"
    say(f"{what}: hashing the toolchain")
    tool_digest = toolchain_digest(toolchain)
    with tempfile.TemporaryDirectory(prefix="prometheus-rootfs-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        say(f"{what}: writing the root filesystem")
        rootfs = write_rootfs(toolchain, tar_path)
        tag = f"{REPOSITORY}:{rootfs[:16]}"
        image = BuilderImage(tag=tag, rootfs_digest=rootfs, toolchain_digest=tool_digest,
                             moc=toolchain.moc_version, motoko=toolchain.motoko_version)
        try:
            existing = client.images.get(tag)
        except docker.errors.ImageNotFound:
            existing = None
        if existing is None:
            size = tar_path.stat().st_size
            say(f"{what}: importing {size / 2**20:.0f} MiB into Docker as {tag}")
            changes = [f"LABEL {LABEL_TOOLCHAIN}={tool_digest} {LABEL_ROOTFS}={rootfs} {LABEL_RECIPE}={RECIPE_VERSION} "
                       f"{LABEL_MOTOKO}={toolchain.motoko_version}",
                       f"USER {BUILDER_UID}:{BUILDER_UID}", "WORKDIR /tmp", "ENV HOME=/tmp TMPDIR=/tmp LC_ALL=C TZ=UTC"]
            with open(tar_path, "rb") as f:
                client.api.import_image(src=f, repository=REPOSITORY, tag=rootfs[:16], changes=changes)
    checked = check_image(client, image)
    say(f"{what}: ready, {tag} ({time.monotonic() - started:.1f} s)")
    return checked


_IMAGES: dict[tuple[str, str], BuilderImage] = {}
_IMAGES_LOCK = threading.Lock()


def image_for(client: Any, moc: str | None, progress: Progress | None = None) -> BuilderImage:
    """The builder image for a pinned moc version (None: the default), made once per process and checked
    on every use (a removed or retagged image is made again)."""
    toolchain = find_toolchain(moc=moc)
    key = (str(getattr(getattr(client, "api", None), "base_url", "")), toolchain.motoko_version)
    with _IMAGES_LOCK:
        known = _IMAGES.get(key)
        if known is not None:
            try:
                return check_image(client, known)
            except ImageError:
                pass
        image = ensure_image(client, toolchain, progress)
        _IMAGES[key] = image
        return image


def check_image(client: Any, image: BuilderImage) -> BuilderImage:
    """Refuse an image whose layer or labels differ from what we built (e.g. retagged by someone else);
    returns it with the id builds must use."""
    import dataclasses

    import docker

    try:
        attrs = client.images.get(image.tag).attrs
    except docker.errors.ImageNotFound as exc:
        raise ImageError(f"builder image {image.tag} is missing") from exc
    layers = attrs.get("RootFS", {}).get("Layers", [])
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    if layers != [f"sha256:{image.rootfs_digest}"] or labels.get(LABEL_TOOLCHAIN) != image.toolchain_digest:
        raise ImageError(f"builder image {image.tag} does not match its root filesystem digest; remove it and retry")
    return dataclasses.replace(image, image_id=str(attrs["Id"]))
