"""The three product canisters deployed and wired on the embedded replica, with the steps of the protocol
as helpers (developer submits, sponsor funds, verifier reserves and files)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from ic_replica.principal import ANONYMOUS, Principal
from prometheus_sdk.icrc16 import to_icrc16, to_map
from testkit.typed import HttpTransport, Typed


def _identity(role: str) -> Any:
    """A fixed Ed25519 identity per role, so the same principals work in process and over HTTP."""
    from icp_identity.identity import Identity  # type: ignore[import-not-found]

    return Identity(privkey=hashlib.sha256(b"prometheus test role " + role.encode()).hexdigest())


ROLES = ["gov", "minter", "dev", "sponsor", "stranger"] + [f"verifier{i}" for i in range(6)]
IDENTITIES = {role: _identity(role) for role in ROLES}
PRINCIPALS = {role: Principal.from_text(str(identity.sender())) for role, identity in IDENTITIES.items()}
GOV, MINTER, DEV, SPONSOR, STRANGER = (PRINCIPALS[r] for r in ("gov", "minter", "dev", "sponsor", "stranger"))
VERIFIERS = [PRINCIPALS[f"verifier{i}"] for i in range(6)]
AUDIT = "build_reproducibility_v1"
FEE = 10_000
REWARD = 250_000
STAKE = 100
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def identity_of(principal: Principal) -> Any:
    """The test identity (Ed25519) of a role's principal."""
    return next(IDENTITIES[role] for role, p in PRINCIPALS.items() if p == principal)


def account(owner: Principal) -> dict[str, Any]:
    return {"owner": owner, "subaccount": []}


@dataclass
class Stack:
    ic: Any
    ledger: Typed
    hub: Typed
    registry: Typed
    namespaces: set[str] = field(default_factory=set)

    @classmethod
    def deploy(cls, ic: Any, product: dict[str, Any], http_url: str | None = None) -> Stack:
        ids = {name: ic.create_canister(controllers=[GOV], sender=GOV)
               for name in ("ledger", "audit_hub", "mcp_registry")}
        http = None
        if http_url is not None:
            from icp_identity.identity import Identity

            http = HttpTransport(http_url, {PRINCIPALS[r]: IDENTITIES[r] for r in ROLES}
                                 | {ANONYMOUS: Identity(anonymous=True)})
        ledger = Typed(ic, ids["ledger"], "ledger", http)
        hub = Typed(ic, ids["audit_hub"], "audit_hub", http)
        registry = Typed(ic, ids["mcp_registry"], "mcp_registry", http)
        ledger_init = {"name": "Test USD", "symbol": "TUSD", "decimals": 6, "fee": FEE,
                       "minting_account": account(MINTER),
                       "initial_balances": [(account(SPONSOR), 100_000_000), (account(DEV), 10_000_000)]}
        ic.install_code(ids["ledger"], product["ledger"].wasm.read_bytes(), ledger.interface.encode_init(ledger_init),
                        sender=GOV)
        ic.install_code(ids["audit_hub"], product["audit_hub"].wasm.read_bytes(),
                        hub.interface.encode_init({"governance": GOV, "registry": [ids["mcp_registry"]]}), sender=GOV)
        ic.install_code(ids["mcp_registry"], product["mcp_registry"].wasm.read_bytes(),
                        registry.interface.encode_init({"governance": GOV, "audit_hub": ids["audit_hub"],
                                                        "ledgers": [ids["ledger"]]}), sender=GOV)
        return cls(ic, ledger, hub, registry)

    # ------------------------------------------------------------ developer

    def upload(self, wasm: bytes, namespace: str = "com.example.app", sender: Principal = DEV,
               chunk_size: int = 64 * 1024) -> str:
        if namespace not in self.namespaces:
            result = self.registry("icrc118_create_canister_type", {"namespace": namespace, "description": "test"},
                                   sender=sender)
            assert "ok" in result or result == {"err": {"NamespaceExists": None}}, result
            self.namespaces.add(namespace)
        chunks = [wasm[i : i + chunk_size] for i in range(0, len(wasm), chunk_size)]
        digest = hashlib.sha256(wasm).digest()
        for index, chunk in enumerate(chunks):
            result = self.registry("icrc118_upload_wasm_chunk", {
                "namespace": namespace, "wasm_hash": digest, "total_chunks": len(chunks), "chunk_index": index,
                "chunk": chunk, "chunk_hash": hashlib.sha256(chunk).digest()}, sender=sender)
            assert "ok" in result, result
        return digest.hex()

    def request(self, wasm_id: str, sender: Principal = DEV, commit: str = COMMIT,
                namespace: str | None = None, repo: str = "https://example.com/app.git") -> Any:
        return self.registry("icrc126_verification_request", {
            "wasm_hash": bytes.fromhex(wasm_id), "repo": repo, "commit_hash": commit,
            "metadata": to_map({"canister_name": "app"}), "namespace": [namespace] if namespace else []},
            sender=sender)

    def submit(self, wasm: bytes | None = None, namespace: str = "com.example.app") -> str:
        wasm = wasm or os.urandom(3000)
        wasm_id = self.upload(wasm, namespace)
        assert "ok" in self.request(wasm_id, namespace=namespace)
        return wasm_id

    def request_id(self, wasm_id: str, namespace: str | None = None) -> int:
        return int(self.status(wasm_id, namespace)["request"][0]["id"])

    # ------------------------------------------------------------ governance

    def set_policy(self, quorum: int = 1, mode: str = "Auto", required: tuple[str, ...] = (AUDIT,),
                   min_reward: int = 100_000) -> Any:
        return self.registry("set_policy", {"quorum": quorum, "mode": {mode: None},
                                            "required_audit_types": list(required),
                                            "min_bounty_reward": min_reward}, sender=GOV)

    # ------------------------------------------------------------ sponsor

    def approve(self, amount: int, sponsor: Principal = SPONSOR) -> None:
        """Let the registry pull `amount` + its escrow fee (ICRC-2 approve; the approval itself costs a fee)."""
        approve = {"from_subaccount": [], "spender": account(self.registry.canister_id), "amount": amount + 2 * FEE,
                   "expected_allowance": [], "expires_at": [], "fee": [], "memo": [], "created_at_time": []}
        assert "Ok" in self.ledger("icrc2_approve", approve, sender=sponsor)

    def bounty_arg(self, wasm_id: str, amount: int = REWARD, audit: str = AUDIT,
                   timeout_ns: int = 7 * 24 * 3600 * 10**9, **challenge: Any) -> dict[str, Any]:
        return {
            "challenge_parameters": to_icrc16({"wasm_hash": bytes.fromhex(wasm_id), "audit_type": audit, **challenge}),
            "bounty_metadata": to_map({"icrc127:reward_canister": self.ledger.canister_id,
                                       "icrc127:reward_amount": amount}),
            "timeout_date": self.ic.get_time() + timeout_ns}

    def fund(self, wasm_id: str, amount: int = REWARD, sponsor: Principal = SPONSOR, audit: str = AUDIT,
             timeout_ns: int = 7 * 24 * 3600 * 10**9, **challenge: Any) -> Any:
        self.approve(amount, sponsor)
        return self.registry("icrc127_create_bounty", self.bounty_arg(wasm_id, amount, audit, timeout_ns, **challenge),
                             sender=sponsor)

    def bounty(self, wasm_id: str, **kwargs: Any) -> int:
        result = self.fund(wasm_id, **kwargs)
        assert "ok" in result, result
        return int(result["ok"])

    # ------------------------------------------------------------ verifier

    def stake(self, verifier: Principal, amount: int = 10 * STAKE, audit: str = AUDIT) -> None:
        assert "ok" in self.hub("mint_tokens", verifier, audit, amount, sender=GOV)

    def reserve(self, verifier: Principal, bounty_id: int, audit: str = AUDIT) -> Any:
        return self.hub("reserve_bounty", bounty_id, audit, sender=verifier)

    def metadata(self, bounty_id: int, audit: str = AUDIT, **extra: Any) -> list[Any]:
        return to_map({"bounty_id": bounty_id, "126:audit_type": audit, **extra})

    def attest(self, verifier: Principal, wasm_id: str, bounty_id: int, audit: str = AUDIT,
               signed: list[Any] | None = None) -> Any:
        return self.registry("icrc126_file_attestation", {
            "wasm_id": wasm_id, "metadata": self.metadata(bounty_id, audit, **{"126hash": wasm_id}),
            "signed": signed or []}, sender=verifier)

    def diverge(self, verifier: Principal, wasm_id: str, bounty_id: int, audit: str = AUDIT,
                signed: list[Any] | None = None) -> Any:
        return self.registry("icrc126_file_divergence", {
            "wasm_id": wasm_id, "divergence_report": "rebuilt wasm differs",
            "metadata": self.metadata(bounty_id, audit, **{"126found_hash": "00" * 32}),
            "signed": signed or []}, sender=verifier)

    # ------------------------------------------------------------ reading

    def balance(self, who: Principal) -> int:
        return int(self.ledger("icrc1_balance_of", account(who)))

    def status(self, wasm_id: str, namespace: str | None = None) -> dict[str, Any]:
        (status,) = self.registry("get_wasm_status", wasm_id, [namespace] if namespace else [])
        return status  # type: ignore[no-any-return]

    def bounty_state(self, bounty_id: int) -> str:
        (bounty,) = self.registry("icrc127_get_bounty", bounty_id)
        return next(iter(bounty["state"]))

    def profile(self, verifier: Principal) -> dict[str, Any]:
        return self.hub("get_auditor_profile", verifier)  # type: ignore[no-any-return]

    def escrow(self) -> int:
        """The escrow the registry holds on the test ledger (confirmed in, not on its way out)."""
        return sum(t["held"] for t in self.registry("escrow_summary") if t["ledger"] == self.ledger.canister_id)

    def escrow_totals(self) -> dict[str, int]:
        totals = {"held": 0, "incoming": 0, "outgoing": 0}
        for t in self.registry("escrow_summary"):
            if t["ledger"] == self.ledger.canister_id:
                totals = {k: totals[k] + int(t[k]) for k in totals}
        return totals

    def block_types(self) -> list[str]:
        result = self.registry("icrc3_get_blocks", [{"start": 0, "length": 10_000}])
        types = []
        for entry in result["blocks"]:
            fields = dict(entry["block"]["Map"])
            types.append(fields["btype"]["Text"])
        return types
