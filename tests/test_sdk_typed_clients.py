"""The SDK's generated clients against the real canisters on a localnet, over HTTP only: every example in
docs/sdk.md, typed calls and typed errors of each client, the management canister, and the clients being
current with the checked-in interfaces."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from prometheus_sdk import CallRejectedError, connect, identity, resolve
from prometheus_sdk.clients.audit_hub import AuditHubError
from prometheus_sdk.clients.ledger import LedgerError
from prometheus_sdk.clients.management import ManagementCanister
from prometheus_sdk.clients.mcp_registry import RegistryError
from prometheus_sdk.principal import Principal
from prometheus_sdk.protocol import Protocol
from tests.conftest import ROOT
from tests.test_localnet_cli import cli, free_port  # noqa: F401 - fixture


@pytest.fixture
def localnet(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:  # noqa: F811
    """A localnet with the protocol deployed by the real CLI; this process sees it as a user's tools would."""
    cli("localnet", "start", "--background", "--port", str(free_port()), "--json")
    deployed = json.loads(cli("localnet", "deploy-protocol", "--json").stdout)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PROMETHEUS_LOCALNET_DIR", str(tmp_path / "ln"))
    monkeypatch.chdir(tmp_path)
    return {n: r["id"] for n, r in deployed["canisters"].items()}


def test_the_generated_clients_are_current() -> None:
    from prometheus_sdk import codegen

    assert codegen.run(ROOT / "candid", ROOT / "prometheus_sdk" / "clients", check=True) == [], \
        "run `python -m prometheus_sdk.codegen`"


def test_every_sdk_doc_example_runs(localnet: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), re.S)
    assert len(blocks) >= 6
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/sdk.md", "exec"), namespace)  # noqa: S102 - the docs' own examples
    out = capsys.readouterr().out
    assert "refused: InsufficientFunds" in out and "running module" in out and "PUSD" in out


def test_typed_calls_and_errors_of_each_protocol_client(localnet: dict[str, str]) -> None:
    conn = connect(resolve("local"), identity.load())
    p = Protocol.find(conn)
    assert p.registry.canister_id == localnet["mcp_registry"]
    me = Principal.from_text(conn.principal)
    account = {"owner": me, "subaccount": []}
    carol = {"owner": Principal.self_authenticating(b"\x30" + bytes(43)), "subaccount": []}

    before = p.ledger.icrc1_balance_of(account)
    block = p.ledger.icrc1_transfer({"to": carol, "amount": 5_000, "fee": [], "memo": [b"sdk"],
                                     "from_subaccount": [], "created_at_time": []})
    assert isinstance(block, int)
    assert p.ledger.icrc1_balance_of(carol) == 5_000
    assert p.ledger.icrc1_balance_of(account) == before - 5_000 - p.ledger.icrc1_fee()
    with pytest.raises(LedgerError) as refused:
        p.ledger.icrc1_transfer({"to": carol, "amount": 1, "fee": [1], "memo": [], "from_subaccount": [],
                                 "created_at_time": []})
    assert refused.value.kind == "BadFee" and refused.value.detail == {"expected_fee": p.ledger.icrc1_fee()}
    assert "BadFee (expected_fee" in str(refused.value)

    assert p.audit_hub.get_policy()["stake_per_reservation"] > 0
    assert p.audit_hub.get_auditor_profile(me)["principal"] == me
    with pytest.raises(AuditHubError) as no_bounty:
        p.audit_hub.reserve_bounty(999, "build_reproducibility_v1")
    assert no_bounty.value.kind in {"BountyNotFound", "InsufficientStake", "RegistryUnavailable"}

    created = p.registry.icrc118_create_canister_type({"namespace": "org.example.sdk", "description": "sdk test"})
    assert created
    with pytest.raises(RegistryError) as taken:
        p.registry.icrc118_create_canister_type({"namespace": "org.example.sdk", "description": "again"})
    assert taken.value.kind is not None and taken.value.method == "icrc118_create_canister_type"
    (namespace,) = p.registry.icrc118_get_canister_type("org.example.sdk")
    assert namespace["namespace"] == "org.example.sdk"
    assert p.registry.get_wasm_status("00" * 32, []) == []
    raw = p.registry.invoke("icrc118_create_canister_type", {"namespace": "org.example.sdk", "description": "x"})
    assert set(raw) == {"err"}


def test_the_management_client_creates_installs_and_deletes(localnet: dict[str, str]) -> None:
    conn = connect(resolve("local"), identity.load())
    mgmt = ManagementCanister(conn, effective_canister_id=localnet["ledger"])
    created = mgmt.provisional_create_canister_with_cycles({"amount": [10**12], "settings": [], "specified_id": [],
                                                            "sender_canister_version": []})
    cid = created["canister_id"]
    assert isinstance(cid, Principal)
    wasm = (ROOT / "build" / "canisters" / "ledger.wasm")
    wasm_bytes = wasm.read_bytes() if wasm.is_file() else _minimal_wasm()
    chunk = mgmt.upload_chunk({"canister_id": cid, "chunk": wasm_bytes[:1000]})
    assert len(chunk["hash"]) == 32
    assert mgmt.stored_chunks({"canister_id": cid}) == [chunk]
    mgmt.clear_chunk_store({"canister_id": cid})
    mgmt.install_code({"mode": {"install": None}, "canister_id": cid, "wasm_module": _minimal_wasm(), "arg": b"",
                       "sender_canister_version": []})
    status = mgmt.canister_status({"canister_id": cid})
    assert status["status"] == {"running": None} and status["settings"]["controllers"] == [Principal.from_text(
        conn.principal)]
    assert len(status["module_hash"][0]) == 32
    with pytest.raises(CallRejectedError, match="Only canisters"):  # as on the IC: not from ingress
        mgmt.raw_rand()
    mgmt.stop_canister({"canister_id": cid})
    assert mgmt.canister_status({"canister_id": cid})["status"] == {"stopped": None}
    mgmt.delete_canister({"canister_id": cid})
    with pytest.raises(CallRejectedError):
        mgmt.canister_status({"canister_id": cid})


def _minimal_wasm() -> bytes:
    """The smallest module the IC installs: magic and version only."""
    return b"\x00asm\x01\x00\x00\x00"
