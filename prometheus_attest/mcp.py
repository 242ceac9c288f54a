"""Attestation on the official `mcp` SDK: the agent's token rides in `capabilities.experimental`, the server
checks it before any tool runs, and tools read the verified agent.

Wire format (the reference implementation's capability key, so either side interoperates):

    initialize.params.capabilities.experimental["security.attestation"] = {"version": "0.1.0", "token": "<JWS>"}
    tools/call params._meta["org.prometheus-protocol/attestation-proof"] = "<JWS>"   (key-bound tokens only)

- Client: `AttestingClientSession` is a `ClientSession` that adds that entry (the SDK builds capabilities in
  `_build_capabilities`, the one place both the handshake's and the stateless protocol's come from) and, for a
  token bound to the agent's key, a fresh proof of possession in every tool call's `_meta`.
- Server: `AttestationExtension` is an SDK `Extension` (`MCPServer(extensions=[...])`). Its `tools/call`
  interceptor applies the tool's rule (required / optional / none, allowed issuers) and runs the tool with
  `current_agent()` set. A refusal is a JSON-RPC error whose `data` carries the error `code` (errors.py).
- When a token is checked: once per session and token (the initialize handshake: stdio, stateful streamable
  HTTP), at the first tool call; concurrent first calls share that check, and a bearer token's `jti` is spent
  by it. Every call then re-checks expiry (a session does not outlive its token), and a key-bound token needs a
  fresh proof for that very call (tool and arguments), so a hijacked session id or a captured proof is useless
  without the agent's key. The stateless protocol (2026-07-28, a connection per request) has no session to
  remember a check in: it accepts key-bound tokens only (checked on first sight, then a proof per request)
  and refuses bearer tokens, which would be good for one request.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import hashlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from mcp import Client, types
from mcp.client.session import ClientSession
from mcp.server.extension import Extension
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from . import errors, tokens
from .keys import SigningKey
from .verifier import Verifier

CAPABILITY = "security.attestation"
PROOF_META = "org.prometheus-protocol/attestation-proof"
EXTENSION = "org.prometheus-protocol/attestation"
MAX_STATELESS_TOKENS = 10_000  # key-bound tokens remembered for the stateless protocol (oldest forgotten)

_current: contextvars.ContextVar[tokens.Verified | None] = contextvars.ContextVar("attested_agent", default=None)


def current_agent() -> tokens.Verified | None:
    """The verified agent of the tool call being handled (None: the tool's rule let an unattested call in)."""
    return _current.get()


# ---------------------------------------------------------------- client


@dataclass
class Credentials:
    """What an agent presents: a token for this server (`audience`), and the key it is bound to (if `cnf`).
    A callable `token` is asked once per session (each session presents a fresh token)."""

    token: str | Callable[[], str]
    audience: str = ""
    holder: SigningKey | None = None

    def fresh(self) -> str:
        return self.token() if callable(self.token) else self.token


class AttestingClientSession(ClientSession):
    """A `ClientSession` that presents `credentials` in `experimental` and proves possession on each tool call."""

    def __init__(self, *args: Any, credentials: Credentials, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._credentials = credentials
        self._token: str | None = None  # this session's token, made once

    def _session_token(self) -> str:
        if self._token is None:
            self._token = self._credentials.fresh()
        return self._token

    def _build_capabilities(self, version: str) -> types.ClientCapabilities:
        caps = super()._build_capabilities(version)
        entry = {"version": tokens.VERSION, "token": self._session_token()}
        return caps.model_copy(update={"experimental": {**(caps.experimental or {}), CAPABILITY: entry}})

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None,  # type: ignore[override]
                        *args: Any, meta: Any = None, **kwargs: Any) -> Any:
        holder = self._credentials.holder
        if holder is not None:  # a fresh proof for this very call
            proof = tokens.make_proof(holder, self._session_token(), self._credentials.audience,
                                      request=tokens.Request(name, arguments))
            meta = {**(meta or {}), PROOF_META: proof}
        return await super().call_tool(name, arguments, *args, meta=meta, **kwargs)


@dataclass
class AttestingClient(Client):
    """The SDK's high-level `mcp.Client` (any transport, either protocol) presenting `credentials`."""

    credentials: Credentials | None = None

    async def _build_session(self, exit_stack: AsyncExitStack) -> ClientSession:
        session = await super()._build_session(exit_stack)
        if self.credentials is None:
            raise errors.MissingToken("AttestingClient needs credentials=Credentials(token, audience, holder)")
        session.__class__ = AttestingClientSession  # the same session, with the methods above
        session._credentials = self.credentials  # type: ignore[attr-defined]
        session._token = None  # type: ignore[attr-defined]
        return session


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
        """{"default": "required", "tools": {"name": "optional" | {"requirement": ..., "issuers": [...]}}}; anything
        else is refused (a misspelt member must not silently drop a restriction)."""
        def rule(value: Any, where: str) -> ToolRule:
            if isinstance(value, str):
                return ToolRule(_requirement(value, where))
            if isinstance(value, Mapping):
                unknown = set(value) - {"requirement", "issuers"}
                if unknown:
                    raise errors.PolicyError(f"{where}: unknown members {sorted(unknown)} (requirement, issuers)")
                issuers = value.get("issuers")
                if issuers is not None and (not isinstance(issuers, list) or
                                            not all(isinstance(i, str) and i for i in issuers)):
                    raise errors.PolicyError(f"{where}: issuers is a list of issuer URLs")
                return ToolRule(_requirement(value.get("requirement", "required"), where),
                                frozenset(issuers) if issuers is not None else None)
            raise errors.PolicyError(f"{where}: a requirement name or an object, not {value!r}")

        tools = data.get("tools", {})
        if not isinstance(tools, Mapping) or not all(isinstance(k, str) for k in tools):
            raise errors.PolicyError("tools maps tool names to rules")
        return cls(rule(data.get("default", "required"), "default"),
                   {k: rule(v, f"tools.{k}") for k, v in tools.items()})


def _requirement(value: object, where: str) -> Requirement:
    try:
        return Requirement(value)
    except ValueError:
        raise errors.PolicyError(f"{where}: {value!r} is not one of required, optional, none") from None


class AttestationExtension(Extension):
    identifier = EXTENSION

    def __init__(self, verifier: Verifier, policy: ServerPolicy | None = None) -> None:
        self.verifier = verifier
        self.policy = policy or ServerPolicy()
        # token checks, shared by concurrent calls: per connection and token (a re-initialize may change the
        # token), and per token on the stateless protocol (key-bound tokens only; bounded, oldest forgotten)
        self._sessions: weakref.WeakKeyDictionary[Any, dict[str, asyncio.Task[tokens.Verified]]] = \
            weakref.WeakKeyDictionary()
        self._stateless: OrderedDict[str, asyncio.Task[tokens.Verified]] = OrderedDict()

    def settings(self) -> dict[str, Any]:
        return {"version": tokens.VERSION, "capability": CAPABILITY, "proof_meta": PROOF_META,
                "audience": self.verifier.policy.audience,
                "trusted_issuers": sorted(self.verifier.policy.trusted_issuers),
                "default": self.policy.default.requirement.value,
                "tools": {k: v.requirement.value for k, v in self.policy.tools.items()}}

    async def intercept_tool_call(self, params: Any, ctx: Any, call_next: Any) -> Any:
        rule = self.policy.rule(params.name)
        if rule.requirement is Requirement.NONE:
            return await call_next(ctx)
        started = time.perf_counter()
        observer = self.verifier.observer
        try:
            agent = await self._agent(ctx, tokens.Request(params.name, params.arguments))
            if rule.issuers is not None and agent.issuer not in rule.issuers:
                raise errors.UntrustedIssuer(f"tool {params.name!r} accepts agents vouched for by "
                                             f"{sorted(rule.issuers)}, not {agent.issuer!r}")
        except errors.MissingToken as e:
            if rule.requirement is Requirement.OPTIONAL:
                return await call_next(ctx)
            observer.refused(started, e.code, e.message)
            raise _refusal(e) from None
        except errors.AttestationError as e:  # every refusal counted once, whatever step made it
            observer.refused(started, e.code, e.message)
            raise _refusal(e) from None
        observer.verified(started, agent.issuer, agent.subject, agent.jti)
        reset = _current.set(agent)
        try:
            return await call_next(ctx)
        finally:
            _current.reset(reset)

    async def _agent(self, ctx: Any, request: tokens.Request) -> tokens.Verified:
        entry = _presented(ctx.session.client_capabilities)
        if entry is None:
            raise errors.MissingToken(f"no attestation in capabilities.experimental[{CAPABILITY!r}]")
        token = entry.get("token")
        if not isinstance(token, str) or not token:
            raise errors.MissingToken("the attestation entry carries no token")
        if len(token) > self.verifier.policy.max_token_bytes:
            raise errors.Oversized(f"a token of {len(token)} bytes (at most {self.verifier.policy.max_token_bytes})")
        meta = ctx.meta if isinstance(ctx.meta, Mapping) else {}
        proof = meta.get(PROOF_META)
        proof = proof if isinstance(proof, str) else None
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        connection = getattr(ctx.session, "_connection", None)
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS and connection is not None:
            table = self._sessions.setdefault(connection, {})
            agent = await _shared(table, digest, lambda: self.verifier.establish(token))
        else:
            agent = await _shared(self._stateless, digest, lambda: self._stateless_establish(token))
            if digest in self._stateless:
                self._stateless.move_to_end(digest)
            while len(self._stateless) > MAX_STATELESS_TOKENS:
                self._stateless.popitem(last=False)
        await self.verifier.use(agent, token, proof, request)
        return agent

    async def _stateless_establish(self, token: str) -> tokens.Verified:
        if "cnf" not in tokens.parse(token, self.verifier.policy.max_token_bytes).claims:  # before anything is spent
            raise errors.ProofRequired("the stateless MCP protocol keeps no session: present a token bound to the "
                                       "agent's key (cnf), with a proof in each request's _meta")
        return await self.verifier.establish(token)


async def _shared(table: Any, key: str, establish: Callable[[], Any]) -> tokens.Verified:
    """The one check of a token for `key`, run as its own task: concurrent callers share it, a caller that is
    cancelled does not cancel it for the others, and a refused one is forgotten (the next call tries again)."""
    task = table.get(key)
    if task is None:
        task = asyncio.ensure_future(establish())
        table[key] = task

        def forget(done: asyncio.Task[tokens.Verified]) -> None:
            if (done.cancelled() or done.exception() is not None) and table.get(key) is done:
                del table[key]

        task.add_done_callback(forget)
    return await asyncio.shield(task)  # type: ignore[no-any-return]


def _presented(caps: types.ClientCapabilities | None) -> dict[str, Any] | None:
    experimental = caps.experimental if caps is not None else None
    entry = experimental.get(CAPABILITY) if isinstance(experimental, dict) else None
    return entry if isinstance(entry, dict) else None


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _refusal(e: errors.AttestationError) -> MCPError:
    return MCPError(e.rpc_code, f"attestation refused: {e.message}", {"code": e.code})
