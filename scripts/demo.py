"""`make demo`: the Prometheus lifecycle the way a user types it, every step a `prometheus` or
`prometheus-verifier` command run as a subprocess (each printed before it runs).

A developer takes the sample app in `examples/greeter` (a main actor, a module of its own, a package
vendored under `vendor/` and one from a git repository pinned to a commit), pushes it to a git server,
builds and verifies it locally and submits it with a bounty; a verifier operator runs the worker, which
rebuilds the exact commit in the locked-down sandbox and attests; the developer checks the status and
publishes 1.0.0. Then version 1.1.0 is submitted with a stale commit in prometheus.yml: rejected, `verify`
shows why, the corrected request opens a new round, verified, published. Last, an AI agent's MCP client finds
the app through the store's discovery server and reads its verification. `--timings` lists every command's
time (docs/quickstart.md records them). Everything runs against `prometheus localnet start --background`
(the embedded IC behind the IC HTTP interface on loopback). The git server is a real `git http-backend` on 127.0.0.1
(`testkit/git_server.py`), standing in for GitHub. Identities, the local IC, the verifier's state and (when
`$DOCKER_HOST` is unset) a private Docker daemon live in a temporary directory removed at the end.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.git_server import GIT_ENV, make_repo, serve  # noqa: E402 - git on loopback, standing in for GitHub

APP = "greeter"
NAMESPACE = "io.prometheus.demo.greeter"
BOUNTY = 5_000_000  # 5 PUSD (the local ledger has 6 decimals)
PROGRAMS = {"prometheus": "prometheus_cli", "prometheus-verifier": "verifier_bot"}


class DemoFailed(SystemExit):
    """A command the demo needs failed: its output is already printed above."""


class Shell:
    """Runs commands as a user would type them in one terminal: a working directory, exported variables."""

    def __init__(self, work: Path) -> None:
        self.cwd = work
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "VERIFIER_"))}
        # The demo's own identities, local IC and verifier state: nothing of the user's is touched. The user's
        # cache is shared: it holds build outputs, fetched packages and compiled modules by content, so a demo
        # after `prometheus localnet deploy-protocol` (or a second demo) builds no canister twice.
        self.env.update({"XDG_CONFIG_HOME": str(work / "config"), "XDG_DATA_HOME": str(work / "data"),
                         "XDG_STATE_HOME": str(work / "state"), "COLUMNS": "160", **GIT_ENV})
        self.timings: list[tuple[str, float]] = []
        self.started: list[list[str]] = []  # commands that stop what this shell started, run at the end

    def cd(self, path: Path) -> None:
        print(f"$ cd {os.path.relpath(path, self.cwd)}")
        self.cwd = path

    def export(self, name: str, value: str) -> None:
        print(f"$ export {name}={shlex.quote(value)}")
        self.env[name] = value

    def run(self, *argv: str, check: bool = True, quiet: bool = False, shown: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Print `$ argv`, run it, print its output indented; fail the demo on a non-zero exit when `check`."""
        line = shown or shlex.join(argv)
        print(f"$ {line}", flush=True)
        real = [sys.executable, "-m", PROGRAMS[argv[0]], *argv[1:]] if argv[0] in PROGRAMS else list(argv)
        started = time.perf_counter()
        proc = subprocess.run(real, cwd=self.cwd, env=self.env, capture_output=True, text=True, check=False)
        self.timings.append((line, time.perf_counter() - started))
        if not quiet or proc.returncode != 0:
            for text in (proc.stdout, proc.stderr if proc.returncode != 0 or argv[0] == "git" else ""):
                for out in text.rstrip().splitlines():
                    print(f"  {out}")
        if check and proc.returncode != 0:
            raise DemoFailed(f"demo failed: `{line}` exited with {proc.returncode}")
        return proc


def say(text: str) -> None:
    print(f"\n# {text}", flush=True)


def free_port(preferred: int = 4943) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free loopback port")


def docker_answers(host: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=10)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextmanager
def git_server(root: Path) -> Iterator[str]:
    """A git server on loopback holding the dependency `strutil` (someone else's library) and an empty
    `greeter.git` the developer pushes to."""
    files = {str(p.relative_to(ROOT / "examples" / "packages" / "strutil")): p.read_text()
             for p in sorted((ROOT / "examples" / "packages" / "strutil").rglob("*")) if p.is_file()}
    make_repo(root, "strutil", files)
    bare = root / f"{APP}.git"
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "--quiet", "--bare", "-b", "main", str(bare)],
                 ["-C", str(bare), "config", "http.receivepack", "true"],
                 ["-C", str(bare), "config", "uploadpack.allowAnySHA1InWant", "true"]):
        subprocess.run(["git", *args], check=True, env=env, capture_output=True)
    with serve(root) as url:
        yield url


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="prometheus-demo-", dir="/tmp"))
    shell = Shell(work)
    started = time.perf_counter()
    try:
        with git_server(work / "git-server") as git_url:
            print(f"# The demo works in {work}; a git server on loopback ({git_url}) stands in for GitHub.")
            try:
                lifecycle(shell, work, git_url)
            finally:
                shell.cwd = work
                if shell.started:
                    say("Clean up")
                for stop in reversed(shell.started):
                    shell.run(*stop, check=False)
    except DemoFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    every = "--timings" in sys.argv[1:]  # every command's time, for docs/quickstart.md
    print(f"\nDone in {time.perf_counter() - started:.1f} s. {'Every step' if every else 'Slowest steps'}:")
    for line, seconds in shell.timings if every else sorted(shell.timings, key=lambda t: -t[1])[:6]:
        print(f"  {seconds:6.1f} s  {line}")
    return 0


def lifecycle(sh: Shell, work: Path, git_url: str) -> None:
    """The commands of docs/quickstart.md, in order."""
    say("Start the local IC in the background and deploy the protocol (ledger, audit_hub, mcp_registry)")
    port = free_port()
    sh.run("prometheus", "localnet", "start", "--background", *([] if port == 4943 else ["--port", str(port)]))
    sh.started.append(["prometheus", "localnet", "stop"])
    sh.run("prometheus", "localnet", "deploy-protocol")  # the `default` identity becomes governance

    say("One identity per role: a developer (who also pays the bounty) and a verifier operator")
    sh.run("prometheus", "identity", "new", "developer")
    sh.run("prometheus", "identity", "new", "verifier")
    sh.run("prometheus", "localnet", "fund", "developer", "20000000")
    sh.run("prometheus", "localnet", "stake", "verifier", "1000")
    sh.run("prometheus", "identity", "use", "developer")

    say("The developer pushes the app (with a vendored package and a git-pinned one) to its git server")
    app = work / APP
    shutil.copytree(ROOT / "examples" / APP, app)
    print(f"$ cp -r examples/{APP} {APP}")
    sh.cd(app)
    dependency = f"{git_url}/strutil.git"
    dep_commit = sh.run("git", "ls-remote", dependency, "main").stdout.split()[0]
    _pin_dependency(app / "mops.toml", f"{dependency}#main@{dep_commit}")
    print(f'$ # pin it in mops.toml: strutil = "{dependency}#main@{dep_commit}"')
    sh.run("git", "init", "--quiet", "-b", "main")
    sh.run("git", "add", "-A")
    sh.run("git", "commit", "--quiet", "-m", "greeter 0.1.0")
    repo = f"{git_url}/{APP}.git"
    sh.run("git", "remote", "add", "origin", repo)
    sh.run("git", "push", "--quiet", "origin", "main")
    commit = sh.run("git", "rev-parse", "HEAD").stdout.strip()

    say("Describe it, build it and check it before paying anyone")
    sh.run("prometheus", "init", "--yes", "--name", APP, "--namespace", NAMESPACE, "--repo-url", repo,
           "--commit", commit, "--wasm-path", f".prometheus/build/{APP}.wasm",
           "--description", "Greets, with two dependencies")
    if not os.environ.get("DOCKER_HOST") or not docker_answers(os.environ["DOCKER_HOST"]):
        print("  (no Docker daemon here: start a private one; it leaves host networking alone)")
        started = sh.run("prometheus-verifier", "dockerd", "start", shown='eval "$(prometheus-verifier dockerd start)"')
        sh.started.append(["prometheus-verifier", "dockerd", "stop", "--purge"])
        sh.env["DOCKER_HOST"] = started.stdout.strip().removeprefix("export DOCKER_HOST=")
    else:
        sh.env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    sh.run("prometheus", "build")
    sh.run("prometheus", "verify")

    say("Submit it for verification with a bounty")
    sh.run("prometheus", "submit", "--bounty", str(BOUNTY))

    say("The verifier operator checks the setup and runs one pass of the worker")
    pem = work / "config" / "prometheus" / "identity" / "verifier" / "identity.pem"
    sh.export("VERIFIER_PEM", str(pem))
    sh.export("VERIFIER_NETWORK", "local")  # the running localnet: its URL and protocol ids come from its record
    sh.run("prometheus-verifier", "doctor")
    sh.run("prometheus-verifier", "once")

    say("The developer sees the outcome and publishes the verified wasm")
    sh.run("prometheus", "status")
    sh.run("prometheus", "publish", "1.0.0")
    sh.run("prometheus", "token", "balance", "verifier")

    say("Anyone checks the verdict offline: the verifier's signed statement and the proof that it is on chain, "
        "in one file, against the root key only")
    sh.run("prometheus", "attestation", "export", "-o", "../greeter.provenance.json")  # outside the source tree
    key = sh.run("prometheus", "localnet", "root-key", quiet=True, shown="prometheus localnet root-key > ../local.key")
    (Path(sh.cwd).parent / "local.key").write_text(key.stdout)
    sh.run("prometheus", "verify", "--offline", "../greeter.provenance.json", "--root-key", "../local.key")

    fix_a_rejection(sh)
    an_agent_finds_it(sh)


def an_agent_finds_it(sh: Shell) -> None:
    """The consumer side: the store indexes the registry's certified log; an agent's MCP client finds the app
    through the discovery server (`prometheus store mcp`, on stdio) and reads its verification."""
    say("An AI agent looks for a tool: the store indexes the registry's certified log, the agent's MCP client "
        "asks the discovery server")
    sh.run("prometheus", "store", "search", "greets")
    sh.run(sys.executable, str(ROOT / "examples" / "agent" / "find_tool.py"), "greets",
           shown="python examples/agent/find_tool.py greets")


def fix_a_rejection(sh: Shell) -> None:
    """The trap of issue 11: new code committed and pushed, but prometheus.yml still names the old commit.
    Verifiers rebuild that commit, get another hash and reject; a corrected request opens a new round."""
    say("Version 1.1.0: the developer changes the code, commits, pushes, builds and submits, but forgets to "
        "update the commit in prometheus.yml")
    sh.run("sed", "-i", "s/Hello, /Welcome, /", "src/lib/Greeting.mo")
    sh.run("git", "commit", "--quiet", "-am", "greeter 0.1.1: a warmer greeting")
    sh.run("git", "push", "--quiet", "origin", "main")
    sh.run("prometheus", "build")
    refused = sh.run("prometheus", "submit", "--bounty", str(BOUNTY), check=False)
    print(f"  (exit status {refused.returncode}: submit saw that prometheus.yml names an older commit)")
    say("The developer insists (--force): verifiers rebuild the commit prometheus.yml names")
    sh.run("prometheus", "submit", "--force", "--bounty", str(BOUNTY))
    sh.run("prometheus-verifier", "once")
    rejected = sh.run("prometheus", "status", check=False)
    print(f"  (exit status {rejected.returncode})")

    say("The developer finds why (verify rebuilds the manifest's commit), fixes the commit and resubmits: a new "
        "round")
    sh.run("prometheus", "verify", check=False)
    new_commit = sh.run("git", "rev-parse", "HEAD").stdout.strip()
    sh.run("sed", "-i", f"s/^commit: .*/commit: {new_commit}/", "prometheus.yml",
           shown='sed -i "s/^commit: .*/commit: $(git rev-parse HEAD)/" prometheus.yml')
    sh.run("prometheus", "verify")
    sh.run("prometheus", "submit", "--bounty", str(BOUNTY))
    sh.run("prometheus-verifier", "once")
    sh.run("prometheus", "status")
    sh.run("prometheus", "publish", "1.1.0")


def _pin_dependency(mops: Path, spec: str) -> None:
    lines = [f'strutil = "{spec}"' if line.startswith("strutil =") else line for line in mops.read_text().splitlines()]
    mops.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
