"""App packages in the build recipe: mops.toml [dependencies] (vendored, git-pinned, registry), prometheus.yml
`packages:`, canonical package paths, digests, and one clear error per bad declaration.

Real parts: a git repository served on loopback for the git dependency, fetched with the verifier's hardened
fetch; the real compiler for the builds (two compiles, shared through the module-scoped fixture).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prometheus_build import project, source
from prometheus_build.packages import GitFetcher, tree_digest
from testkit.git_server import make_repo, serve

# A git dependency; its own mops.toml asks for textutil too (the root's declaration wins).
GREET: dict[str, bytes | str] = {
    "mops.toml": '[package]\nname = "greet"\nversion = "0.2.0"\n\n[dependencies]\ntextutil = "1.0.0"\n',
    "src/lib.mo": 'import T "mo:textutil";\nmodule {\n'
                  '  public func hello(n : Text) : Text { T.shout("hello " # n) };\n};\n',
}
TEXTUTIL = {"vendor/textutil/src/lib.mo": 'import Text "mo:core/Text";\nmodule {\n'
            '  public func shout(t : Text) : Text { t # "!" };\n'
            '  public func size(t : Text) : Nat { Text.size(t) };\n};\n'}
MAIN = ('import Greet "mo:greet";\nimport T "mo:textutil";\nimport Counter "lib/Counter";\n'
        'persistent actor {\n  var c = Counter.zero();\n'
        '  public func hi(n : Text) : async Text { c := Counter.next(c); Greet.hello(n) # T.shout("") };\n'
        '  public query func count() : async Nat { c };\n};\n')
COUNTER = 'module {\n  public func zero() : Nat { 0 };\n  public func next(n : Nat) : Nat { n + 1 };\n};\n'


def app_files(greet_url: str, greet_commit: str, moc: str | None = None) -> dict[str, str]:
    """A small real-world-shaped app: main actor, a module in src/lib/, a vendored and a git dependency."""
    toolchain = f'\n[toolchain]\nmoc = "{moc}"\n' if moc else ""
    return {"src/main.mo": MAIN, "src/lib/Counter.mo": COUNTER, **TEXTUTIL,
            "mops.toml": f'[dependencies]\ncore = "2.5.0"\ntextutil = "./vendor/textutil"\n'
                         f'greet = "{greet_url}/greet.git#main@{greet_commit}"\n{toolchain}'}


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture(scope="module")
def greet_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("repos")
    commit = make_repo(root, "greet", GREET)
    with serve(root) as url:
        yield url, commit


def fetcher(cache: Path) -> GitFetcher:
    return lambda name, url, commit: source.fetch_cached(url, commit, cache, allow_local=True)


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory, greet_repo: tuple[str, str]) -> dict[str, Any]:
    url, commit = greet_repo
    tmp = tmp_path_factory.mktemp("app")
    app = write(tmp / "checkout", app_files(url, commit))
    plan = project.plan(app, {"main": "src/main.mo"}, fetcher(tmp / "deps"))
    result = project.build(plan, tmp / "out", tmp / "cache")
    return {"plan": plan, "result": result, "tmp": tmp, "url": url, "commit": commit}


def test_vendored_and_git_dependencies_build(built_app: dict[str, Any]) -> None:
    plan, result = built_app["plan"], built_app["result"]
    by_name = {p["name"]: p for p in result.packages}
    assert set(by_name) == {"core", "greet", "textutil"}
    assert by_name["textutil"]["kind"] == "vendored" and by_name["textutil"]["path"] == "vendor/textutil"
    assert by_name["textutil"]["virtual"] == ".mops/textutil@local/src"
    assert by_name["greet"] == {**by_name["greet"], "kind": "git", "commit": built_app["commit"], "version": "main",
                                "virtual": f".mops/_github/greet#main@{built_app['commit']}/src",
                                "repo": f"{built_app['url']}/greet.git"}
    assert by_name["core"]["kind"] == "bundled" and by_name["core"]["version"] == "v2.5.0"
    assert by_name["textutil"]["sha256"] == tree_digest(plan.root / "vendor/textutil/src")
    assert len(result.sha256) == 64 and "hi: (n: text) -> (text);" in result.did.read_text()
    assert plan.warnings == []  # core = "2.5.0" is the bundled version


def test_package_location_on_disk_does_not_change_the_hash(built_app: dict[str, Any], tmp_path: Path) -> None:
    """Another checkout path, the vendored package in another folder, the git one in another cache: the
    compiler sees every package at its canonical path, so the bytes are the same (a fresh compile)."""
    files = app_files(built_app["url"], built_app["commit"])
    files = {k.replace("vendor/textutil", "third_party/tu"): v.replace("./vendor/textutil", "./third_party/tu")
             for k, v in files.items()}
    app = write(tmp_path / "elsewhere" / "deeper", files)
    plan = project.plan(app, {"main": "src/main.mo"}, fetcher(tmp_path / "other-cache"))
    again = project.build(plan, tmp_path / "out", tmp_path / "cache")
    assert not again.cached
    assert again.sha256 == built_app["result"].sha256


def test_a_changed_dependency_changes_digest_and_cache_key(built_app: dict[str, Any], tmp_path: Path) -> None:
    from prometheus_build.recipe import source_digest

    app = tmp_path / "app"
    shutil.copytree(built_app["plan"].root, app)
    before = project.plan(app, {}, fetcher(built_app["tmp"] / "deps"))
    lib = app / "vendor/textutil/src/lib.mo"
    lib.write_text(lib.read_text() + "// changed\n")
    after = project.plan(app, {}, fetcher(built_app["tmp"] / "deps"))
    digests = [{p.name: p.sha256 for p in x.packages} for x in (before, after)]
    assert digests[0]["textutil"] != digests[1]["textutil"] and digests[0]["greet"] == digests[1]["greet"]
    keys = [source_digest(x.source, x.main, x.toolchain, x.packages) for x in (before, after)]
    assert keys[0] != keys[1]


def test_prometheus_yml_names_packages_without_mops_toml(tmp_path: Path) -> None:
    app = write(tmp_path, {"src/main.mo": "persistent actor {};\n", **TEXTUTIL})
    plan = project.plan(app, {"packages": {"textutil": "vendor/textutil"}})
    textutil = next(p for p in plan.packages if p.name == "textutil")
    assert (textutil.kind, textutil.declared_in, textutil.virtual) == ("vendored", "prometheus.yml",
                                                                        ".mops/textutil@local/src")


def test_vendored_registry_version_from_dot_mops(tmp_path: Path) -> None:
    """`mops install` then committing .mops/<name>@<version>/ vendors a registry package."""
    app = write(tmp_path, {"src/main.mo": "persistent actor {};\n", "mops.toml": '[dependencies]\nmap = "9.0.1"\n',
                           ".mops/map@9.0.1/src/lib.mo": "module { public let x = 1 };\n"})
    (package,) = [p for p in project.plan(app, {}).packages if p.name == "map"]
    assert (package.kind, package.version, package.virtual, package.path) == (
        "vendored", "9.0.1", ".mops/map@9.0.1/src", ".mops/map@9.0.1")


def test_the_highest_version_packages_request_wins_unless_the_root_pins_one(tmp_path: Path) -> None:
    """mops: the root's declaration wins; otherwise the highest version any package asks for (1.10.0 > 1.2.0)."""
    lib = "module { public let x = 1 };\n"
    files = {"src/main.mo": "persistent actor {};\n",
             "mops.toml": '[dependencies]\na = "./vendor/a"\nb = "./vendor/b"\n',
             "vendor/a/mops.toml": '[dependencies]\nmap = "1.2.0"\n', "vendor/a/src/lib.mo": lib,
             "vendor/a/.mops/map@1.2.0/src/lib.mo": lib,
             "vendor/b/mops.toml": '[dependencies]\nmap = "1.10.0"\n', "vendor/b/src/lib.mo": lib,
             "vendor/b/.mops/map@1.10.0/src/lib.mo": lib}
    app = write(tmp_path / "free", files)
    (chosen,) = [p for p in project.plan(app, {}).packages if p.name == "map"]
    assert (chosen.version, chosen.path) == ("1.10.0", "vendor/b/.mops/map@1.10.0")
    pinned = write(tmp_path / "pinned", {**files, "mops.toml": files["mops.toml"] + 'map = "1.2.0"\n',
                                          ".mops/map@1.2.0/src/lib.mo": lib})
    (root_pin,) = [p for p in project.plan(pinned, {}).packages if p.name == "map"]
    assert (root_pin.version, root_pin.path) == ("1.2.0", ".mops/map@1.2.0")
    # resolving again with the higher version pinned fetches each git package once (a verifier's fetch of
    # the same commit twice would fail, and count twice against its size budget)
    fetched: list[str] = []
    gitpkg = write(tmp_path / "gitpkg", {"src/lib.mo": lib})

    def fetch(name: str, url: str, commit: str) -> Path:
        fetched.append(name)
        return gitpkg

    with_git = write(tmp_path / "with-git", {**files, "mops.toml": files["mops.toml"]
                                             + f'g = "https://example.com/g.git#main@{"a" * 40}"\n'})
    names = [p.name for p in project.plan(with_git, {}, fetch).packages]
    assert "g" in names and fetched == ["g"]


@pytest.mark.parametrize(("mops", "expected"), [
    ('map = "9.0.1"', "mops.toml: package 'map' = \"9.0.1\" comes from the mops registry, which verifiers cannot "
                      "reach: vendor it"),
    ('base = "0.14.0"', "mops.toml: package 'base' = \"0.14.0\" comes from the mops registry"),
    ('lib = "https://github.com/o/lib#main"', "mops.toml: package 'lib': 'https://github.com/o/lib#main' is not "
                                              "pinned to a commit"),
    ('lib = "https://github.com/o/lib#main@abc123"', "is not pinned to a commit"),
    ('lib = "../outside"', "mops.toml: package 'lib': '../outside' is outside the repository"),
    ('lib = "./missing"', "mops.toml: package 'lib': folder './missing' does not exist"),
    ('lib = 3', "mops.toml: package 'lib': the value must be a version, a path or a git URL"),
    ('lib = "not a version!"', "is neither a version"),
])
def test_bad_dependencies_are_one_clear_line(tmp_path: Path, mops: str, expected: str) -> None:
    app = write(tmp_path / "repo", {"src/main.mo": "persistent actor {};\n", "mops.toml": f"[dependencies]\n{mops}\n"})
    (tmp_path / "outside").mkdir()
    with pytest.raises(project.ProjectError) as err:
        project.plan(app, {})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_core_registry_version_uses_the_bundled_core_with_a_warning(tmp_path: Path) -> None:
    app = write(tmp_path, {"src/main.mo": "persistent actor {};\n", "mops.toml": '[dependencies]\ncore = "1.0.0"\n'})
    plan = project.plan(app, {})
    assert [p.kind for p in plan.packages if p.name == "core"] == ["bundled"]
    assert plan.warnings == ["mops.toml: package 'core' = \"1.0.0\": using core v2.5.0 bundled with the pinned "
                             "compiler (vendor 1.0.0 to build with it)"]


def test_an_app_package_named_core_replaces_the_bundled_one(tmp_path: Path) -> None:
    app = write(tmp_path, {"src/main.mo": "persistent actor {};\n", "mops.toml": '[dependencies]\ncore = "./mycore"\n',
                           "mycore/src/Nat.mo": "module {};\n"})
    (core,) = [p for p in project.plan(app, {}).packages if p.name == "core"]
    assert core.kind == "vendored" and core.virtual == ".mops/core@local/src"


def test_unreachable_git_dependency_names_the_package(tmp_path: Path) -> None:
    app = write(tmp_path, {"src/main.mo": "persistent actor {};\n",
                           "mops.toml": f'[dependencies]\nlib = "http://127.0.0.1:9/lib.git#main@{"a" * 40}"\n'})
    with pytest.raises(project.ProjectError, match=r"^mops.toml: package 'lib': cannot reach http://127.0.0.1:9/"):
        project.plan(app, {}, fetcher(tmp_path / "cache"))


def test_an_undeclared_package_says_where_to_declare_it(tmp_path: Path) -> None:
    from prometheus_build.recipe import BuildError, build_canister

    main = 'import T "mo:textutil";\npersistent actor { public func f() : async () {} };\n'
    app = write(tmp_path, {"src/main.mo": main})
    with pytest.raises(BuildError) as err:
        build_canister("app", app / "src", "main.mo", tmp_path / "out", tmp_path / "cache")
    assert 'package "textutil" not defined' in str(err.value)
    assert err.value.hint is not None and "declare textutil under [dependencies] in mops.toml" in err.value.hint
