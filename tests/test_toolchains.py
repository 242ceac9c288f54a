"""Pinned Motoko toolchains: the moc-version table, clear refusals, two toolchains giving two different
hashes for one source (each reproducible), and the verifier rebuilding a monorepo's canister with packages
and a non-default toolchain in that toolchain's own builder image (real git on loopback, real dockerd)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prometheus_build import project, sandbox, source
from prometheus_build.toolchain import DEFAULT_MOC, TOOLCHAINS, find_toolchain, resolve_moc
from testkit.git_server import make_repo, serve
from tests.test_dependencies import COUNTER, GREET, TEXTUTIL, fetcher, write
from verifier_bot import rebuild

OTHER_MOC = "1.3.0"  # motoko@4.0.0, bundles core v2.3.1
APP = {"src/main.mo": 'import Nat "mo:core/Nat";\npersistent actor {\n  var n = 0;\n'
                      '  public func inc() : async Text { n += 1; Nat.toText(n) };\n};\n'}


def test_every_pinned_toolchain_is_installed_and_maps_to_its_npm_package() -> None:
    for moc, spec in TOOLCHAINS.items():
        toolchain = find_toolchain(moc=moc)
        assert (toolchain.moc_version, toolchain.motoko_version) == (moc, spec.npm)
        assert toolchain.bundled(), f"moc {moc} bundles no package"
    assert find_toolchain().motoko_version == "4.10.0" and DEFAULT_MOC == "1.10.1"  # existing hashes stay
    assert resolve_moc("v0.16.1").npm == resolve_moc("moc-0.16.1").npm == "3.14.3"


@pytest.mark.parametrize(("files", "manifest", "expected"), [
    ({"mops.toml": '[toolchain]\nmoc = "0.9.9"\n'}, {},
     "mops.toml: moc '0.9.9' is not a supported toolchain; supported: 0.14.11 (npm motoko@3.13.0), 0.16.1"),
    ({}, {"toolchain": "2.0.0"}, "prometheus.yml: moc '2.0.0' is not a supported toolchain"),
    ({"mops.toml": '[toolchain]\nmoc = "1.10.1"\n'}, {"toolchain": "1.3.0"},
     "prometheus.yml: toolchain 1.3.0 differs from mops.toml [toolchain] moc = \"1.10.1\"; keep one"),
    ({}, {"toolchain": 1.3}, "toolchain must be a moc version in quotes"),
])
def test_unknown_or_conflicting_toolchains_are_refused(tmp_path: Path, files: dict[str, str],
                                                       manifest: dict[str, Any], expected: str) -> None:
    write(tmp_path, {**APP, **files})
    with pytest.raises(project.ProjectError) as err:
        project.plan(tmp_path, manifest)
    assert expected in str(err.value)


def test_two_toolchains_give_two_hashes_each_reproducible(tmp_path: Path) -> None:
    hashes: dict[str, list[str]] = {}
    for moc, places in ((OTHER_MOC, ("one", "a/b/two")), (DEFAULT_MOC, ("three",))):
        for place in places:
            app = write(tmp_path / place, APP)
            plan = project.plan(app, {"toolchain": moc})
            result = project.build(plan, tmp_path / place / "out", tmp_path / f"cache-{place.replace('/', '-')}")
            assert not result.cached and result.toolchain == moc
            hashes.setdefault(moc, []).append(result.sha256)
            print(f"moc {moc} at {place}: {result.sha256} ({result.seconds:.1f} s)")
    assert hashes[OTHER_MOC][0] == hashes[OTHER_MOC][1]
    assert hashes[OTHER_MOC][0] != hashes[DEFAULT_MOC][0]


@pytest.fixture(scope="module")
def monorepo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two canisters in one repository; prometheus.yml picks `b`, pins moc 1.3.0; b uses a vendored and a
    git-pinned package (another repository on the same loopback server)."""
    root = tmp_path_factory.mktemp("mono")
    greet = make_repo(root, "greet", GREET)
    with serve(root) as url:
        b_main = ('import Greet "mo:greet";\nimport Counter "../../src/lib/Counter";\npersistent actor {\n'
                  '  var c = Counter.zero();\n  public func hi(n : Text) : async Text { c := Counter.next(c); '
                  'Greet.hello(n) };\n};\n')
        files: dict[str, bytes | str] = {
                 "canisters/a/main.mo": "persistent actor { public func a() : async Nat { 1 } };\n",
                 "canisters/b/main.mo": b_main, "src/lib/Counter.mo": COUNTER, **TEXTUTIL,
                 "mops.toml": f'[dependencies]\ntextutil = "./vendor/textutil"\n'
                              f'greet = "{url}/greet.git#main@{greet}"\n\n[toolchain]\nmoc = "{OTHER_MOC}"\n',
                 "prometheus.yml": "name: mono\ncanister: b\nmain: canisters/b/main.mo\n"}
        commit = make_repo(root, "mono", files)
        checkout = write(root / "host-checkout", {k: str(v) for k, v in files.items()})
        plan = project.plan(checkout, project.load_manifest(checkout), fetcher(root / "deps-cache"))
        host = project.build(plan, root / "out", root / "cache")
        yield {"url": f"{url}/mono.git", "commit": commit, "host": host, "plan": plan}


def test_host_plan_of_the_monorepo(monorepo: dict[str, Any]) -> None:
    plan = monorepo["plan"]
    assert (plan.canister, plan.main, plan.toolchain.moc_version, plan.toolchain_from) == (
        "b", "canisters/b/main.mo", OTHER_MOC, "mops.toml")
    assert {p.name: p.kind for p in plan.packages} == {"core": "bundled", "greet": "git", "textutil": "vendored"}
    did = monorepo["host"].did.read_text()
    assert "hi: (n: text) -> (text);" in did and " a: " not in did  # b, not canister a


def test_verifier_rebuilds_the_named_canister_with_its_toolchain_and_packages(
        docker_client: Any, builder_image: Any, monorepo: dict[str, Any], tmp_path: Path) -> None:
    expected = monorepo["host"].sha256
    verdict = rebuild.verify(docker_client, builder_image, monorepo["url"], monorepo["commit"], expected,
                             tmp_path / "work", sandbox.Limits(), source.Limits(), allow_local=True, owner="tc-test")
    assert verdict.attested, (verdict.report, verdict.log)
    assert verdict.found_hash == expected and verdict.canister == "b" and verdict.toolchain == OTHER_MOC
    assert verdict.image is not None and verdict.image.moc == OTHER_MOC
    assert verdict.image.rootfs_digest != builder_image.rootfs_digest  # one image per toolchain
    meta = rebuild.attestation_metadata(verdict)
    assert meta["126:toolchain"] == f"moc {OTHER_MOC} (motoko@4.0.0)"
    assert meta["126:image_digest"] == f"sha256:{verdict.image.rootfs_digest}"
    listed = {p["name"]: p for p in verdict.packages}
    assert listed["greet"]["commit"] and listed["textutil"]["path"] == "vendor/textutil"
    assert listed["greet"]["sha256"] in meta["126:packages"] and len(meta["126:packages_digest"]) == 64
    assert not (tmp_path / "work").exists()


def test_verifier_refuses_a_registry_dependency_with_the_reason(docker_client: Any, builder_image: Any,
                                                                tmp_path: Path) -> None:
    commit = make_repo(tmp_path, "reg", {**APP, "mops.toml": '[dependencies]\nmap = "9.0.1"\n'})
    with serve(tmp_path) as url:
        verdict = rebuild.verify(docker_client, builder_image, f"{url}/reg.git", commit, "00" * 32,
                                 tmp_path / "work", sandbox.Limits(), source.Limits(), allow_local=True)
    assert not verdict.attested and verdict.found_hash is None
    assert verdict.report.startswith("source: mops.toml: package 'map' = \"9.0.1\" comes from the mops registry")
