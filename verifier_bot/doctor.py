"""`prometheus-verifier doctor`: every part the worker needs, checked in order, one line each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SELF_TEST = 'persistent actor { public query func ping() : async Text { "pong" } };\n'


def _sandbox_self_test(client: Any, image: Any, memory_mb: int) -> tuple[str, bool, str]:
    """Build a one-line actor in the sandbox with the configured limits: a broken image, a daemon that
    cannot apply the limits or too little memory shows up here, not as a wrong divergence later."""
    import tempfile

    from prometheus_build import sandbox

    with tempfile.TemporaryDirectory(prefix="prometheus-doctor-") as tmp:
        (Path(tmp) / "src").mkdir(mode=0o755)
        (Path(tmp) / "src" / "main.mo").write_text(SELF_TEST)
        (Path(tmp) / "src" / "main.mo").chmod(0o644)
        try:
            result = sandbox.build(client, image, Path(tmp) / "src", "main.mo", Path(tmp) / "out",
                                   sandbox.Limits(memory_bytes=memory_mb << 20, timeout_s=300))
        except sandbox.SandboxUnavailable as exc:
            return "sandbox", False, str(exc)
    if not result.ok:
        return "sandbox", False, f"self-test build failed: {result.reason}"
    return "sandbox", True, f"self-test build in {result.seconds:.1f} s (no network, read-only, uid 10001)"


def run_checks(config_file: Path | None) -> list[dict[str, Any]]:
    from prometheus_build.image import ImageError, ensure_image
    from prometheus_build.toolchain import ToolchainMissing
    from prometheus_sdk import SdkError, connect, resolve
    from prometheus_sdk.clients.audit_hub import AuditHubClient
    from prometheus_sdk.clients.mcp_registry import RegistryClient
    from prometheus_sdk.principal import Principal
    from verifier_bot import config as configuration
    from verifier_bot.cli import SetupError, docker_client, load_identity
    from verifier_bot.journal import Journal

    checks: list[dict[str, Any]] = []

    def record(check: str, ok: bool, detail: str) -> bool:
        checks.append({"check": check, "ok": ok, "detail": detail})
        return ok

    try:
        cfg = configuration.load(file=config_file)
        record("config", True, f"network {cfg.network}, state {cfg.state_dir}, {cfg.max_concurrent_jobs} job(s)")
    except configuration.ConfigError as exc:
        record("config", False, str(exc))
        return checks
    try:
        Journal(cfg.journal_path).close()
        record("journal", True, str(cfg.journal_path))
    except Exception as exc:
        record("journal", False, f"{cfg.journal_path}: {exc}")
    identity = None
    try:
        identity = load_identity(cfg.pem)
        record("identity", True, f"principal {identity.sender().to_str()}")
    except SetupError as exc:
        record("identity", False, str(exc))
    if identity is not None:
        try:
            conn = connect(resolve(cfg.network), identity)
            record("network", True, conn.network.url)
            registry = RegistryClient(conn, cfg.registry_id)
            hub = AuditHubClient(conn, cfg.audit_hub_id)
            names = [s["name"] for s in registry.icrc10_supported_standards()]
            record("registry", "ICRC-126" in names, f"{cfg.registry_id} supports {', '.join(names)}")
            policy = hub.get_policy()
            profile = hub.get_auditor_profile(Principal.from_text(conn.principal))
            free = dict(profile["available"]).get(cfg.audit_type, 0)
            need = policy["stake_per_reservation"]
            record("stake", free >= need, f"{free} {cfg.audit_type} stake available, {need} per reservation")
        except SdkError as exc:
            record("network", False, f"{cfg.network}: {exc}")
    try:
        client = docker_client(config_file)
        record("docker", True, f"Docker {client.version().get('Version', '?')}")
        try:
            image = ensure_image(client)
            record("image", True, f"{image.tag} rootfs sha256:{image.rootfs_digest[:16]}… "
                   f"toolchain {image.toolchain_digest[:16]}…")
            record(*_sandbox_self_test(client, image, cfg.build_memory_mb))
        except ImageError as exc:
            record("image", False, str(exc))
        except ToolchainMissing as exc:
            record("image", False, f"{exc}; {exc.hint}")
    except SetupError as exc:
        record("docker", False, str(exc))
    return checks

