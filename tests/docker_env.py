"""A Docker daemon and the builder image for the tests that build in the sandbox.

Uses `$DOCKER_HOST` when it answers; otherwise starts a private dockerd (root + `docker.io` needed, as on
CI). A machine without either fails these tests loudly instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prometheus_build.image import BuilderImage, ensure_image
from verifier_bot.dockerd import DockerdError, PrivateDockerd


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    import docker

    existing = os.environ.get("DOCKER_HOST")
    if existing:
        try:
            docker.DockerClient(base_url=existing, timeout=10).ping()
            yield existing
            return
        except Exception:
            pass
    root = Path(tempfile.mkdtemp(prefix="prometheus-dockerd-", dir="/tmp"))
    daemon = PrivateDockerd(root)
    try:
        daemon.start()
    except DockerdError as exc:
        pytest.fail(f"the sandbox tests need Docker: {exc}")
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = daemon.host  # for code under test that calls docker.from_env()
    try:
        yield daemon.host
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> Any:
    import docker

    return docker.DockerClient(base_url=docker_host, timeout=120)


@pytest.fixture(scope="session")
def builder_image(docker_client: Any) -> BuilderImage:
    return ensure_image(docker_client)
