"""Attestation on the official `mcp` SDK: the agent's token rides in `capabilities.experimental` at initialize,
the server checks it before any tool runs, and tools read the verified agent.

Wire format (the reference implementation's key, so either side interoperates):

    initialize.params.capabilities.experimental["security.attestation"] =
        {"version": "0.1.0", "token": "<JWS>", "proof": "<JWS, only for key-bound tokens>"}

- Client: `AttestingClientSession` is a `ClientSession` that adds that entry (the SDK builds capabilities in
  `_build_capabilities`, the one place both handshake and per-request capabilities come from).
- Server: `AttestationExtension` is an SDK `Extension` (`MCPServer(extensions=[...])`). Its `tools/call`
  interceptor applies the tool's rule (required / optional / none, allowed issuers), verifies the session's
  token once per connection (its `jti` is spent then; the connection keeps the result), and runs the tool with
  `current_agent()` set. A refusal is a JSON-RPC error whose `data` carries the error `code` (errors.py).
- Sessions are needed: a stateless streamable-HTTP server sees no initialize on a tool call, so it has no
  token; run attested servers stateful (`prometheus store serve` does so when a policy is configured).
"""

from __future__ import annotations

import contextvars
import enum
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp import types
from mcp.client.session import ClientSession
from mcp.server.extension import Extension
from mcp.shared.exceptions import MCPError

from . import errors, tokens
from .keys import SigningKey
from .verifier import Verifier

CAPABILITY = "security.attestation"
EXTENSION = "org.prometheus-protocol/attestation"

_current: contextvars.ContextVar[tokens.Verified | None] = contextvars.ContextVar("attested_agent", default=None)


def current_agent() -> tokens.Verified | None:
    """The verified agent of the tool call being handled (None: the tool's rule let an unattested call in)."""
    return _current.get()


# ---------------------------------------------------------------- client


@dataclass
class Credentials:
    """What an agent presents: a token for this server, and the key it is bound to (if `cnf`)."""

    token: str | Callable[[], str]
    audience: str = ""
    holder: SigningKey | None = None

    def capability(self) -> dict[str, Any]:
        token = self.token() if callable(self.token) else self.token
        entry: dict[str, Any] = {"version": tokens.VERSION, "token": token}
        if self.holder is not None:
            entry["proof"] = tokens.make_proof(self.holder, token, self.audience)
        return entry


class AttestingClientSession(ClientSession):
    """A `ClientSession` that presents `credentials` in `experimental` (made once per session)."""

    def __init__(self, *args: Any, credentials: Credentials, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._credentials = credentials
        self._presented: dict[str, Any] | None = None

    def _build_capabilities(self, version: str) -> types.ClientCapabilities:
        caps = super()._build_capabilities(version)
        if self._presented is None:
            self._presented = self._credentials.capability()
        return caps.model_copy(update={"experimental": {**(caps.experimental or {}), CAPABILITY: self._presented}})


# ---------------------------------------------------------------- server


class Requirement(enum.Enum):
    REQUIRED = "required"  # no valid token, no call
    OPTIONAL = "optional"  # unattested calls run; a token that is presented must verify
    NONE = "none"  # the tool ignores attestation


@dataclass(frozen=True)
class ToolRule:
    requirement: Requirement = Requirement.REQUIRED
    issuers: frozenset[str] | None = None  # None: every issuer the verifier trusts


@dataclass(frozen=True)
class ServerPolicy:
    default: ToolRule = ToolRule()
    tools: Mapping[str, ToolRule] = field(default_factory=dict)

    def rule(self, tool: str) -> ToolRule:
        return self.tools.get(tool, self.default)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerPolicy:
        """{"default": "required", "tools": {"name": "optional" | {"requirement": ..., "issuers": [...]}}}"""
        def rule(value: Any) -> ToolRule:
            if isinstance(value, str):
                return ToolRule(Requirement(value))
            if isinstance(value, Mapping):
                issuers = value.get("issuers")
                return ToolRule(Requirement(value.get("requirement", "required")),
                                frozenset(issuers) if issuers is not None else None)
            raise errors.PolicyError(f"a tool rule is a requirement name or an object, not {value!r}")
        try:
            return cls(rule(data.get("default", "required")), {k: rule(v) for k, v in data.get("tools", {}).items()})
        except ValueError as e:
            raise errors.PolicyError(f"unknown requirement: {e}") from None


@dataclass
class _Outcome:
    agent: tokens.Verified | None = None
    error: errors.AttestationError | None = None


class AttestationExtension(Extension):
    identifier = EXTENSION

    def __init__(self, verifier: Verifier, policy: ServerPolicy | None = None) -> None:
        self.verifier = verifier
        self.policy = policy or ServerPolicy()
        self._sessions: weakref.WeakKeyDictionary[Any, _Outcome] = weakref.WeakKeyDictionary()

    def settings(self) -> dict[str, Any]:
        return {"version": tokens.VERSION, "capability": CAPABILITY, "audience": self.verifier.policy.audience,
                "trusted_issuers": sorted(self.verifier.policy.trusted_issuers),
                "default": self.policy.default.requirement.value,
                "tools": {k: v.requirement.value for k, v in self.policy.tools.items()}}

    async def intercept_tool_call(self, params: Any, ctx: Any, call_next: Any) -> Any:
        rule = self.policy.rule(params.name)
        if rule.requirement is Requirement.NONE:
            return await call_next(ctx)
        outcome = await self._outcome(ctx)
        if outcome.error is not None:
            if isinstance(outcome.error, errors.MissingToken) and rule.requirement is Requirement.OPTIONAL:
                return await call_next(ctx)
            raise _refusal(outcome.error)
        agent = outcome.agent
        assert agent is not None
        if rule.issuers is not None and agent.issuer not in rule.issuers:
            raise _refusal(errors.UntrustedIssuer(f"tool {params.name!r} accepts agents vouched for by "
                                                  f"{sorted(rule.issuers)}, not {agent.issuer!r}"))
        reset = _current.set(agent)
        try:
            return await call_next(ctx)
        finally:
            _current.reset(reset)

    async def _outcome(self, ctx: Any) -> _Outcome:
        connection = getattr(ctx.session, "_connection", None)
        if connection is not None and connection in self._sessions:
            return self._sessions[connection]
        entry = _presented(ctx.session.client_capabilities)
        outcome = _Outcome()
        try:
            if entry is None:
                raise errors.MissingToken(f"no attestation in capabilities.experimental[{CAPABILITY!r}]")
            outcome.agent = await self.verifier.verify(entry.get("token"), _text_or_none(entry.get("proof")))
        except errors.AttestationError as e:
            outcome.error = e
        if connection is not None:  # a result per connection: the token's jti is spent on its first use
            self._sessions[connection] = outcome
        return outcome


def _presented(caps: types.ClientCapabilities | None) -> dict[str, Any] | None:
    experimental = caps.experimental if caps is not None else None
    entry = experimental.get(CAPABILITY) if isinstance(experimental, dict) else None
    return entry if isinstance(entry, dict) else None


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _refusal(e: errors.AttestationError) -> MCPError:
    return MCPError(e.rpc_code, f"attestation refused: {e.message}", {"code": e.code})
