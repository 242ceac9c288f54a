"""Worker configuration: environment variables, optionally on top of a TOML file with the same keys.

Every key can be set in the environment (upper case, as in seed 004) or in `--config verifier.toml`
(lower or upper case); the environment wins. Values are checked here, once, with one message per problem.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_sdk.urls import RepoPolicy

AUDIT_TYPE = "build_reproducibility_v1"


class ConfigError(ValueError):
    """The configuration is missing a value or holds an invalid one."""


@dataclass(frozen=True)
class Config:
    pem: str  # VERIFIER_PEM: a path to a PEM file, or the PEM text itself
    network: str  # VERIFIER_NETWORK (or IC_NETWORK): local, ic or a URL
    registry_id: str
    audit_hub_id: str
    state_dir: Path
    poll_interval_s: float = 60.0
    max_concurrent_jobs: int = 1
    build_timeout_s: float = 600.0
    build_memory_mb: int = 3072
    build_cpus: float = 2.0
    audit_type: str = AUDIT_TYPE
    metrics_addr: str = "127.0.0.1:9464"  # host:port for /metrics and /healthz; empty disables
    file_margin_s: float = 60.0  # never file when the lock expires sooner than this
    allow_local_repos: bool = False  # ALLOW_LOCAL_REPOS (test fleets): http:// and loopback/private hosts anywhere
    local_network: bool = False  # the network is this machine: loopback repositories are fine
    max_source_mb: int = 200
    source_retries: int = 5  # attempts before an unreachable repository is reported as a divergence

    @property
    def repo_policy(self) -> RepoPolicy:
        """The URL policy the CLI applies too (prometheus_sdk.urls): loopback only on a local network."""
        return RepoPolicy(local_network=self.local_network, allow_private=self.allow_local_repos)

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.sqlite3"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "work"


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "prometheus-verifier"


def _number(values: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low:g} and {high:g}, got {raw}")
    return value


def _flag(values: Mapping[str, str], key: str) -> bool:
    raw = values.get(key, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{key} must be true or false, got {raw!r}")


def _local_protocol_ids(values: dict[str, str]) -> None:
    """On `local`, the registry and hub default to what the CLI finds (nearest `.prometheus/canister_ids.json`,
    then the running localnet's record), so a worker started beside `prometheus localnet` needs no ids."""
    from prometheus_sdk import canister_ids

    for key, name in (("VERIFIER_REGISTRY_ID", "mcp_registry"), ("VERIFIER_AUDIT_HUB_ID", "audit_hub")):
        if not values.get(key):
            found = canister_ids.find(name, "local", env=values)
            if found is not None:
                values[key] = found.canister_id


def _is_local(network: str) -> bool:
    """Loopback repositories are fetched when the network is this machine's (the URL policy in
    `prometheus_sdk.urls`); a URL that fails to resolve is reported later, by the worker's connection."""
    from prometheus_sdk import ConfigError as NetworkError
    from prometheus_sdk import resolve

    try:
        return resolve(network).is_local
    except NetworkError:
        return False


def read_file(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return {str(k).upper(): str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()}


def load(env: Mapping[str, str] | None = None, file: Path | None = None) -> Config:
    """Build the configuration from `file` (if given) overlaid with `env` (default: os.environ)."""
    values: dict[str, str] = read_file(file) if file else {}
    values.update({k: v for k, v in (os.environ if env is None else env).items()})
    network = values.get("VERIFIER_NETWORK") or values.get("IC_NETWORK") or "local"
    if network == "local":
        _local_protocol_ids(values)
    missing = [k for k in ("VERIFIER_PEM", "VERIFIER_REGISTRY_ID", "VERIFIER_AUDIT_HUB_ID") if not values.get(k)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (set them in the environment or the config file)")
    return Config(
        pem=values["VERIFIER_PEM"],
        network=network,
        registry_id=values["VERIFIER_REGISTRY_ID"],
        audit_hub_id=values["VERIFIER_AUDIT_HUB_ID"],
        state_dir=Path(values.get("VERIFIER_STATE_DIR") or _default_state_dir()),
        poll_interval_s=_number(values, "POLL_INTERVAL_MS", 60_000, 100, 86_400_000) / 1000,
        max_concurrent_jobs=int(_number(values, "MAX_CONCURRENT_JOBS", 1, 1, 64)),
        build_timeout_s=_number(values, "BUILD_TIMEOUT_MS", 600_000, 100, 86_400_000) / 1000,
        build_memory_mb=int(_number(values, "BUILD_MEMORY_MB", 3072, 256, 1_048_576)),
        build_cpus=_number(values, "BUILD_CPUS", 2, 0.1, 256),
        audit_type=values.get("AUDIT_TYPE") or AUDIT_TYPE,
        metrics_addr=values.get("METRICS_ADDR", "127.0.0.1:9464"),
        file_margin_s=_number(values, "FILE_MARGIN_MS", 60_000, 0, 86_400_000) / 1000,
        allow_local_repos=_flag(values, "ALLOW_LOCAL_REPOS"),
        local_network=_is_local(network),
        max_source_mb=int(_number(values, "MAX_SOURCE_MB", 200, 1, 100_000)),
        source_retries=int(_number(values, "SOURCE_RETRIES", 5, 1, 1000)),
    )
