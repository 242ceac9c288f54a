"""Agent attestation end to end, every part a real process (`make demo-attest`, docs/attest.md):

1. an issuer: `prometheus attest keygen`, then `prometheus attest jwks --serve` publishes its key on loopback;
2. a private `redis-server` (spent token ids, shared by the servers);
3. two MCP servers (examples/attest/server.py, streamable HTTP) that require attested agents;
4. an agent (examples/attest/agent.py) with a token from `prometheus attest generate`: its tools run on the
   first server; the same token on the second server is a replay; an agent without a token gets only the
   open tools; a token bound to the agent's key needs the agent's proof;
5. the attack suite (`prometheus attest attack`).

Exit code 0 when every step behaved as described.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
PROMETHEUS = shutil.which("prometheus", path=str(Path(sys.executable).parent)) or "prometheus"
AUDIENCE = "urn:example:attested-tools"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, what: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port}")


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def prometheus(*args: str) -> str:
    out = subprocess.run([PROMETHEUS, *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"prometheus {' '.join(args)} failed: {out.stderr or out.stdout}")
    return out.stdout.strip()


def agent(token: str | None, url: str, holder: Path | None = None) -> dict[str, Any]:
    args = [PY, str(HERE / "agent.py"), "--audience", AUDIENCE, "--url", url]
    args += ["--token", token] if token else []
    args += ["--holder", str(holder)] if holder else []
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"the agent failed: {out.stderr}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def outcome(answer: dict[str, Any]) -> str:
    if "refused" in answer:
        return f"refused ({(answer['refused'].get('data') or {}).get('code')})"
    return f"ok: {json.dumps(answer['result'])}"


def main() -> int:
    procs: list[subprocess.Popen[Any]] = []
    failures: list[str] = []

    def expect(condition: bool, what: str) -> None:
        print(("  [ok] " if condition else "  [FAILED] ") + what, flush=True)
        if not condition:
            failures.append(what)

    with tempfile.TemporaryDirectory(prefix="prometheus-attest-demo-") as tmp:
        work = Path(tmp)
        try:
            step("an issuer makes a key and publishes it (JWKS over HTTP on loopback)")
            print(prometheus("attest", "keygen", "--out", str(work / "issuer.json")))
            jwks_port = free_port()
            procs.append(subprocess.Popen([PROMETHEUS, "attest", "jwks", "--key", str(work / "issuer.json"), "--serve",
                                           "--port", str(jwks_port)], stdout=subprocess.PIPE, text=True))
            wait_for(jwks_port, "the JWKS server", procs[-1])
            issuer = f"http://127.0.0.1:{jwks_port}"
            print(f"  {issuer}/.well-known/jwks.json")

            step("a private redis-server for spent token ids")
            redis_port = free_port()
            redis = shutil.which("redis-server")
            if redis is None:
                raise SystemExit("redis-server is missing: `make setup` installs it (Debian's redis-server)")
            procs.append(subprocess.Popen([redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL))
            wait_for(redis_port, "redis-server", procs[-1])

            step("two MCP servers that require attested agents, sharing the replay cache")
            urls = []
            for _ in range(2):
                port = free_port()
                procs.append(subprocess.Popen(
                    [PY, str(HERE / "server.py"), "--issuer", issuer, "--jwks-url", f"{issuer}/.well-known/jwks.json",
                     "--audience", AUDIENCE, "--redis", f"redis://127.0.0.1:{redis_port}/0", "--transport", "http",
                     "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_for(port, "an MCP server", procs[-1])
                urls.append(f"http://127.0.0.1:{port}/mcp")
                print(f"  {urls[-1]}")

            step("the issuer vouches for an agent: a token for these servers")
            token = prometheus("attest", "generate", "--key", str(work / "issuer.json"), "--issuer", issuer,
                               "--audience", AUDIENCE, "--provider", "anthropic", "--model-family", "claude-4",
                               "--model-version", "claude-sonnet-4")
            print("  " + token[:60] + "...")

            step("the attested agent calls the first server's tools")
            first = agent(token, urls[0])
            for tool, answer in first.items():
                print(f"  {tool}: {outcome(answer)}")
            expect("result" in first["whoami"], "whoami runs and sees the verified agent")

            step("someone replays the same token at the second server")
            second = agent(token, urls[1])
            print(f"  whoami: {outcome(second['whoami'])}")
            expect(second["whoami"].get("refused", {}).get("data") == {"code": "replay"}, "refused as a replay")

            step("an agent without a token")
            anonymous = agent(None, urls[1])
            for tool, answer in anonymous.items():
                print(f"  {tool}: {outcome(answer)}")
            expect("result" in anonymous["health"] and "refused" in anonymous["whoami"],
                   "only the tools the policy leaves open run")

            step("a token bound to the agent's key (cnf): useless without the key")
            prometheus("attest", "keygen", "--out", str(work / "agent.json"))
            bound = prometheus("attest", "generate", "--key", str(work / "issuer.json"), "--issuer", issuer,
                               "--audience", AUDIENCE, "--holder", str(work / "agent.json"))
            stolen = agent(bound, urls[0])
            print(f"  without the key: {outcome(stolen['whoami'])}")
            expect(stolen["whoami"].get("refused", {}).get("data") == {"code": "proof_required"},
                   "a thief without the key is refused")
            bound = prometheus("attest", "generate", "--key", str(work / "issuer.json"), "--issuer", issuer,
                               "--audience", AUDIENCE, "--holder", str(work / "agent.json"))
            owner = agent(bound, urls[0], work / "agent.json")
            print(f"  with its proof: {outcome(owner['whoami'])}")
            expect(owner["whoami"].get("result", {}).get("key_bound") is True, "the holder is accepted, key-bound")

            step("the attack suite")
            report = json.loads(prometheus("attest", "attack", "--json"))
            print(f"  detected {report['detected']}/{report['attacks']} "
                  f"({report['detection_rate']:.0%}), each for the expected reason: {report['as_expected']}")
            expect(report["as_expected"] == report["attacks"], "every attack caught")
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print("\n" + ("demo finished: every step behaved as described" if not failures
                  else f"demo FAILED: {failures}"), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
