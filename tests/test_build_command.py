"""`prometheus build` through the real CLI (a subprocess): an app with a vendored and a git-pinned package
(served on loopback), the predictable output path, --json, the cache, and one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from testkit.git_server import make_repo, serve
from tests.conftest import ROOT
from tests.test_dependencies import GREET, app_files, write

MANIFEST = ("name: Hello App\nnamespace: com.example.hello\nrepo_url: https://example.com/hello.git\n"
            f"commit: {'a' * 40}\nwasm_path: dist/hello.wasm.gz\n")


def prometheus(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "prometheus_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False, timeout=300)


def test_build_writes_the_canister_and_prints_its_sha256(tmp_path: Path) -> None:
    commit = make_repo(tmp_path / "repos", "greet", GREET)
    with serve(tmp_path / "repos") as url:
        app = write(tmp_path / "app", {**app_files(url, commit), "prometheus.yml": MANIFEST + "canister: hello\n"})
        first = prometheus("build", "--json", cwd=app, cache=tmp_path / "cache")
        assert first.returncode == 0, first.stderr
        result = json.loads(first.stdout)
        wasm = app / ".prometheus" / "build" / "hello.wasm"
        assert result["wasm"] == str(wasm) and result["sha256"] == hashlib.sha256(wasm.read_bytes()).hexdigest()
        assert {p["name"]: p["kind"] for p in result["packages"]} == {"core": "bundled", "greet": "git",
                                                                        "textutil": "vendored"}
        assert result["toolchain"]["moc"] == "1.10.1" and not result["cached"]
        again = prometheus("build", cwd=app, cache=tmp_path / "cache")  # cached: no compile, git cache reused
    assert again.returncode == 0, again.stderr
    assert f"{result['sha256']}  {wasm}  (cached; moc 1.10.1" in again.stdout


def test_build_refuses_a_registry_dependency_in_one_line(tmp_path: Path) -> None:
    app = write(tmp_path, {"src/main.mo": "persistent actor {};\n", "mops.toml": '[dependencies]\nmap = "9.0.1"\n',
                           "prometheus.yml": MANIFEST})
    proc = prometheus("build", cwd=app, cache=tmp_path / "cache")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: mops.toml: package 'map' = \"9.0.1\" comes from the mops registry")
    assert "hint: see docs/build.md" in proc.stderr
