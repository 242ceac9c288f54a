"""A server's attestation configuration as a JSON file (`prometheus store serve|mcp --attestation FILE`):

    {
      "audience": "https://store.example.org/mcp",           this server, as tokens must name it (required)
      "issuers": {"https://issuer.example.com": null},       trusted issuers -> JWKS URL (null: the well-known one)
      "redis": "redis://127.0.0.1:6379/0",                   spent token ids shared by processes (default: memory)
      "leeway": 30, "max_lifetime": 600, "require_proof": false,
      "default": "required",                                 required | optional | none, for every tool ...
      "tools": {"get_verification": "none",                  ... unless named here, with a requirement or
                "search_servers": {"requirement": "required", "issuers": ["https://issuer.example.com"]}}
    }

Unknown members are refused, never ignored: a misspelt "defualt" must not leave every tool open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import errors
from .jwks import JWKSKeys
from .mcp import AttestationExtension, ServerPolicy
from .replay import RedisReplayCache
from .tokens import Policy
from .verifier import Verifier

KNOWN = {"audience", "issuers", "redis", "leeway", "max_lifetime", "require_proof", "default", "tools"}


def load(path: Path) -> AttestationExtension:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise errors.PolicyError(f"cannot read the attestation configuration {path}: {e}") from None
    return from_dict(data, str(path))


def from_dict(data: Any, where: str = "the attestation configuration") -> AttestationExtension:
    if not isinstance(data, dict):
        raise errors.PolicyError(f"{where}: a JSON object")
    unknown = set(data) - KNOWN
    if unknown:
        raise errors.PolicyError(f"{where}: unknown members {sorted(unknown)} (known: {sorted(KNOWN)})")
    issuers = data.get("issuers")
    if not isinstance(issuers, dict) or not issuers or \
            not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in issuers.items()):
        raise errors.PolicyError(f"{where}: issuers maps each trusted issuer to its JWKS URL (or null)")
    numbers = {k: data[k] for k in ("leeway", "max_lifetime") if k in data}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in numbers.values()):
        raise errors.PolicyError(f"{where}: leeway and max_lifetime are whole seconds")
    if not isinstance(data.get("require_proof", False), bool):
        raise errors.PolicyError(f"{where}: require_proof is true or false")
    policy = Policy(frozenset(issuers), str(data.get("audience") or ""), require_proof=data.get("require_proof", False),
                    **numbers)
    redis_url = data.get("redis")
    if redis_url is not None and not isinstance(redis_url, str):
        raise errors.PolicyError(f"{where}: redis is a redis:// URL")
    replay = RedisReplayCache.from_url(redis_url) if redis_url else None  # None: the verifier sizes a memory one
    rules = ServerPolicy.from_dict({k: data[k] for k in ("default", "tools") if k in data})
    return AttestationExtension(Verifier(policy, JWKSKeys(issuers), replay), rules)
