"""Signed provenance: verifiers' verdicts as in-toto statements in DSSE envelopes (both IC key types), checked
by the registry at filing (signer = filer, subject = the wasm, the verdict's predicate), certified in the
registry's provenance tree, exported as a bundle and verified offline with only the root key."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from icp_identity.identity import Identity  # type: ignore[import-not-found]

from prometheus_sdk.principal import Principal as SdkPrincipal
from prometheus_sdk.provenance import bundles, envelopes, statements
from testkit.protocol import DEV, GOV, IDENTITIES, STRANGER, VERIFIERS, Stack, identity_of

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REPO = "https://example.com/app.git"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build() -> statements.Build:
    return statements.Build(REPO, COMMIT, "com.example.app", "moc 1.10.1", {"toolchain": "ab" * 32},
                            "cd" * 32, {"canister": "app"})


def statement(identity: Any, wasm_id: str, attested: bool = True) -> dict[str, Any]:
    who = str(identity.sender())
    if attested:
        return statements.provenance(wasm_id, "app.wasm", build(), who, NOW, NOW, "bounty/1")
    return statements.divergence(wasm_id, "app.wasm", who, NOW, "rebuilt wasm differs", "00" * 32, REPO, COMMIT)


def signed_arg(identity: Any, wasm_id: str, attested: bool = True,
               statement_for: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    s = envelopes.sign(identity, statement_for or statement(identity, wasm_id, attested))
    return [{"payload_type": statements.PAYLOAD_TYPE, "payload": s.envelope.payload, "signature": s.signature,
             "public_key": s.public_key}]


# ---------------------------------------------------------------- statements and envelopes


@pytest.mark.parametrize("key_type", ["ed25519", "secp256k1"])
def test_statements_sign_and_verify_with_both_ic_key_types(key_type: str) -> None:
    identity = Identity(type=key_type)
    wasm_id = hashlib.sha256(b"app").hexdigest()
    for attested in (True, False):
        signed = envelopes.sign(identity, statement(identity, wasm_id, attested))
        assert signed.signer == SdkPrincipal.from_text(str(identity.sender()))
        parsed = envelopes.verify(envelopes.from_json(signed.to_json(), signed.public_key))
        assert parsed.wasm_id == wasm_id and parsed.passed is attested
        assert signed.digest == hashlib.sha256(signed.to_json()).hexdigest()
        other = Identity(type=key_type)  # the right signature under another key: refused
        forged = envelopes.from_parts(signed.envelope.payload, statements.PAYLOAD_TYPE, signed.signature,
                                      other.der_pubkey)
        with pytest.raises(envelopes.EnvelopeError):
            envelopes.verify(forged)


def test_only_canonical_statements_with_one_known_subject_parse() -> None:
    identity = IDENTITIES["verifier0"]
    good = statements.encode(statement(identity, "ab" * 32))
    assert statements.parse(good).wasm_id == "ab" * 32
    bad = [
        good.replace(b'{"_type"', b'{ "_type"'),  # not canonical
        good.replace(b"ab" * 32, b"AB" * 32),  # not lowercase hex
        good.replace(b'"subject":[{', b'"subject":[{"digest":{"sha256":"' + b"cd" * 32 + b'"},"name":"x"},{'),
        good.replace(statements.PROVENANCE_V1.encode(), b"https://example.com/other/v1"),
        b'{"_type":"https://in-toto.io/Statement/v1","_type":"x"}',
        good[:-1],
    ]
    for payload in bad:
        with pytest.raises(statements.StatementError):
            statements.parse(payload)
    with pytest.raises(statements.StatementError):
        statements.provenance("ab" * 32, "app wasm", build(), "aaaaa-aa", NOW, NOW, "x")  # a name with a space


# ---------------------------------------------------------------- the registry


def file_world(ic: Any, product: dict[str, Any]) -> tuple[Stack, str]:
    stack = Stack.deploy(ic, product)
    wasm_id = stack.submit(wasm=b"\x00asm" + os.urandom(3000))
    return stack, wasm_id


def reserved(stack: Stack, wasm_id: str, verifier: Any) -> int:
    bounty = stack.bounty(wasm_id)
    stack.stake(verifier)
    assert "ok" in stack.reserve(verifier, bounty)
    return bounty


def test_the_registry_takes_only_statements_by_the_filer_about_the_wasm(ic: Any, product: dict[str, Any]) -> None:
    stack, wasm_id = file_world(ic, product)
    v0, v1 = VERIFIERS[0], VERIFIERS[1]
    bounty = reserved(stack, wasm_id, v0)
    someone_else = identity_of(v1)
    refusals = {
        "the statement's key is not the filer's (its principal is not the caller)":
            signed_arg(someone_else, wasm_id, statement_for=statement(someone_else, wasm_id)),
        "an attestation signs SLSA provenance v1 whose one subject is this wasm":
            signed_arg(identity_of(v0), wasm_id, statement_for=statement(identity_of(v0), "cd" * 32)),
    }
    divergence_payload = signed_arg(identity_of(v0), wasm_id, attested=False)
    refusals["an attestation signs SLSA provenance v1 whose one subject is this wasm"] = divergence_payload
    for why, signed in refusals.items():
        assert stack.attest(v0, wasm_id, bounty, signed=signed) == {"err": {"FilingRefused": why}}
    wrong_type = signed_arg(identity_of(v0), wasm_id)
    wrong_type[0]["payload_type"] = "application/json"
    assert stack.attest(v0, wasm_id, bounty, signed=wrong_type) == {
        "err": {"FilingRefused": "payload_type is application/vnd.in-toto+json"}}

    signed = signed_arg(identity_of(v0), wasm_id)
    filed = stack.attest(v0, wasm_id, bounty, signed=signed)
    assert "ok" in filed, filed
    envelope = envelopes.from_parts(signed[0]["payload"], statements.PAYLOAD_TYPE, signed[0]["signature"],
                                    signed[0]["public_key"])
    block = stack.registry("icrc3_get_blocks", [{"start": filed["ok"], "length": 1}])["blocks"][0]["block"]
    assert dict(dict(block["Map"])["tx"]["Map"])["envelope_sha256"] == {"Blob": bytes.fromhex(envelope.digest)}
    (answer,) = stack.registry("get_provenance", bytes.fromhex(wasm_id), [])
    (record,) = answer["filings"]
    assert answer["namespace"] == "com.example.app" and record["verifier"] == v0 and record["attested"]
    assert record["envelope_hash"] == [bytes.fromhex(envelope.digest)]


def test_governance_can_require_signed_filings(ic: Any, product: dict[str, Any]) -> None:
    stack, wasm_id = file_world(ic, product)
    assert stack.registry("set_require_signed", True, sender=DEV) == {"err": {"NotAuthorized": None}}
    assert stack.registry("set_require_signed", True, sender=GOV) == {"ok": None}
    assert stack.registry("get_require_signed") is True
    v0 = VERIFIERS[0]
    bounty = reserved(stack, wasm_id, v0)
    refused = stack.attest(v0, wasm_id, bounty)
    assert "requires a signed statement" in refused["err"]["FilingRefused"]
    assert "ok" in stack.attest(v0, wasm_id, bounty, signed=signed_arg(identity_of(v0), wasm_id))


# ---------------------------------------------------------------- bundles


def bundle_world(ic: Any, product: dict[str, Any], verdicts: list[bool],
                 statements_for: list[list[Any] | None] | None = None) -> tuple[Stack, str, bytes]:
    """A wasm with a signed verdict from each of the first len(verdicts) verifiers (or what `statements_for`
    gives, [] for unsigned), and its exported bundle."""
    stack, wasm_id = file_world(ic, product)
    held = [reserved(stack, wasm_id, v) for v in VERIFIERS[:len(verdicts)]]  # before the round is decided
    for i, (verifier, attested, bounty) in enumerate(zip(VERIFIERS, verdicts, held, strict=False)):
        given = statements_for[i] if statements_for else None
        signed = given if given is not None else signed_arg(identity_of(verifier), wasm_id, attested)
        filed = (stack.attest if attested else stack.diverge)(verifier, wasm_id, bounty, signed=signed)
        assert "ok" in filed, filed
    (answer,) = stack.registry("get_provenance", bytes.fromhex(wasm_id), [])
    return stack, wasm_id, bundles.export(answer, str(stack.registry.canister_id), wasm_id)


def check(stack: Stack, bundle: bytes, **kwargs: Any) -> bundles.Report:
    """`verify --offline` against this replica's root key, for this stack's registry."""
    root = kwargs.pop("root", bundles.root_key_from(stack.ic.root_public_key))
    return bundles.verify(bundle, root, str(stack.registry.canister_id), **kwargs)


@pytest.mark.embedded_only
def test_a_bundle_verifies_offline_and_counts_trusted_verifiers(ic: Any, product: dict[str, Any]) -> None:
    stack, wasm_id, bundle = bundle_world(ic, product, [True, True, True])
    report = check(stack, bundle, wasm=wasm_id, threshold=3)
    assert report.status is bundles.Status.VERIFIED, report.problem
    assert report.agreeing == sorted(str(v) for v in VERIFIERS[:3])
    assert all(f.signature_valid for f in report.filings)
    assert check(stack, bundle, threshold=4).status is bundles.Status.INSUFFICIENT
    trusted = {str(VERIFIERS[0]), str(STRANGER)}
    two = check(stack, bundle, threshold=2, trusted=trusted)
    assert two.status is bundles.Status.INSUFFICIENT and two.agreeing == [str(VERIFIERS[0])]
    wrong_key = check(stack, bundle, root=bundles.root_key_from(os.urandom(96)))
    assert wrong_key.status is bundles.Status.TAMPERED and "certificate" in (wrong_key.problem or "")
    other = check(stack, bundle, wasm="ee" * 32)
    assert other.status is bundles.Status.TAMPERED and "not " + "ee" * 32 in (other.problem or "")
    # ICRC-3 clients still verify the tip: the provenance tree is a pruned node beside it
    import cbor2

    from prometheus_sdk import certificates
    from prometheus_sdk.provenance import hashtree
    (tip,) = stack.registry("icrc3_get_tip_certificate")
    cert = certificates.verify(tip["certificate"], bundles.root_key_from(ic.root_public_key),
                               str(stack.registry.canister_id), 1 << 80)
    tree = certificates.untag(cbor2.loads(tip["hash_tree"]))
    assert cert.lookup([b"canister", stack.registry.canister_id.raw, b"certified_data"]) == hashtree.digest(tree)
    length = stack.registry("icrc3_get_blocks", [{"start": 0, "length": 0}])["log_length"]
    assert hashtree.lookup(tree, [b"last_block_index"]) == bytes([length - 1])
    elsewhere = bundles.verify(bundle, bundles.root_key_from(ic.root_public_key), str(stack.hub.canister_id))
    assert elsewhere.status is bundles.Status.TAMPERED and "not the registry" in (elsewhere.problem or "")
    # a later filing on another wasm changes the certified root: an old bundle still verifies (its certificate
    # and witness are consistent with each other: a bundle says what the registry held when it was certified)
    other_wasm = stack.submit(wasm=b"\x00asm" + os.urandom(3000))
    bounty = reserved(stack, other_wasm, VERIFIERS[4])
    signed = signed_arg(identity_of(VERIFIERS[4]), other_wasm)
    assert "ok" in stack.attest(VERIFIERS[4], other_wasm, bounty, signed=signed)
    assert check(stack, bundle).status is bundles.Status.VERIFIED


def wasm_in_bucket(first: int) -> bytes:
    """A module whose sha256 starts with the byte `first` (the provenance tree's bucket)."""
    while True:
        wasm = b"\x00asm" + os.urandom(64)
        if hashlib.sha256(wasm).digest()[0] == first:
            return wasm


@pytest.mark.embedded_only
def test_every_bundle_verifies_after_filings_in_new_and_existing_buckets(ic: Any, product: dict[str, Any]) -> None:
    """A filing rehashes only its bucket's path to the root (the upper forks are kept between filings): after
    each filing, in a new bucket or one that holds other wasms, every wasm's freshly exported bundle still
    verifies against the certified root."""
    stack = Stack.deploy(ic, product)
    shared = [os.urandom(1)[0] for _ in range(2)]
    wasms = [wasm_in_bucket(shared[i % 2]) if i % 3 else b"\x00asm" + os.urandom(64) for i in range(10)]
    filed: list[str] = []
    for i, wasm in enumerate(wasms):
        wasm_id = stack.submit(wasm=wasm)
        verifier = VERIFIERS[i % len(VERIFIERS)]
        bounty = reserved(stack, wasm_id, verifier)
        assert "ok" in stack.attest(verifier, wasm_id, bounty, signed=signed_arg(identity_of(verifier), wasm_id))
        filed.append(wasm_id)
        for each in filed:
            (answer,) = stack.registry("get_provenance", bytes.fromhex(each), [])
            report = check(stack, bundles.export(answer, str(stack.registry.canister_id), each), wasm=each)
            assert report.status is bundles.Status.VERIFIED, (i, each, report.problem)


@pytest.mark.embedded_only
def test_a_divergence_signed_or_not_makes_a_bundle_divergent(ic: Any, product: dict[str, Any]) -> None:
    stack, _, bundle = bundle_world(ic, product, [True, False])
    report = check(stack, bundle)
    assert report.status is bundles.Status.DIVERGENT and report.diverging == [str(VERIFIERS[1])]
    assert [f.reason for f in report.filings] == [None, "rebuilt wasm differs"]
    # unsigned: the registry still saw who filed it, and certifies that
    stack, _, bundle = bundle_world(ic, product, [False, True], statements_for=[[], None])
    report = check(stack, bundle)
    assert report.status is bundles.Status.DIVERGENT and report.diverging == [str(VERIFIERS[0])]
    assert [(f.signature_valid, f.reason) for f in report.filings] == [(False, "no signed statement"), (True, None)]


@pytest.mark.embedded_only
@pytest.mark.parametrize("hostile", [b'"x":9007199254740993', b'"x":' + b"[" * 1500 + b"]" * 1500, b'"x":NaN',
                                     b'"x":1e400', b'"x":"\\ud800"'])
def test_a_filers_hostile_statement_counts_for_nothing_and_breaks_nothing(ic: Any, product: dict[str, Any],
                                                                          hostile: bytes) -> None:
    """The registry checks a statement's ends, not its middle: a verifier can file one no reader accepts. It is
    reported as invalid; the other filings' bundle still verifies, and `status` says so without a traceback."""
    stack, wasm_id = file_world(ic, product)
    v0, v1 = VERIFIERS[0], VERIFIERS[1]
    first, second = reserved(stack, wasm_id, v0), reserved(stack, wasm_id, v1)
    assert "ok" in stack.attest(v0, wasm_id, first, signed=signed_arg(identity_of(v0), wasm_id))
    good = statements.encode(statement(identity_of(v1), wasm_id))
    prefix = statements.STATEMENT_PREFIX
    payload = prefix + hostile + b"}" + good[good.index(b',"predicateType"'):]
    envelope = envelopes.Envelope(payload, statements.PAYLOAD_TYPE, {})
    der, sig = identity_of(v1).sign(envelope.pae())
    filed = stack.attest(v1, wasm_id, second, signed=[{"payload_type": statements.PAYLOAD_TYPE, "payload": payload,
                                                      "signature": sig, "public_key": der}])
    assert "ok" in filed, filed
    (answer,) = stack.registry("get_provenance", bytes.fromhex(wasm_id), [])
    report = check(stack, bundles.export(answer, str(stack.registry.canister_id), wasm_id))
    assert report.status is bundles.Status.VERIFIED and report.agreeing == [str(v0)], report.problem
    assert not report.filings[1].signature_valid and "invalid statement" in (report.filings[1].reason or "")


@pytest.mark.parametrize("key_type", ["ed25519", "secp256k1", "p256"])
def test_every_ic_identity_key_type_signs_statements_readers_accept(key_type: str) -> None:
    identity = Identity(type=key_type)
    signed = envelopes.sign(identity, statement(identity, "ab" * 32))
    assert envelopes.verify(envelopes.from_json(signed.to_json(), signed.public_key)).passed


@pytest.mark.embedded_only
def test_every_single_byte_change_to_a_bundle_is_rejected(ic: Any, product: dict[str, Any]) -> None:
    """Exhaustive over the bundle's bytes (two changes per byte), not sampled: payloads, subjects, signatures,
    keys, records, the witness and the certificate alike; an unsigned filing's record too."""
    stack, _, bundle = bundle_world(ic, product, [True, True, False], statements_for=[None, None, []])
    root = bundles.root_key_from(ic.root_public_key)
    registry = str(stack.registry.canister_id)
    assert bundles.verify(bundle, root, registry, threshold=2).status is bundles.Status.DIVERGENT
    accepted = []
    for i in range(len(bundle)):
        for flip in (0x01, 0x20):
            changed = bundle[:i] + bytes([bundle[i] ^ flip]) + bundle[i + 1:]
            if bundles.verify(changed, root, registry).status is not bundles.Status.TAMPERED:
                accepted.append((i, flip))
    assert accepted == [], f"{len(accepted)} of {2 * len(bundle)} changes were accepted, e.g. {accepted[:5]}"


@pytest.mark.embedded_only
def test_verifying_a_bundle_opens_no_socket(ic: Any, product: dict[str, Any]) -> None:
    """Zero network calls, checked by the interpreter's audit events (the CLI test also runs it with no network)."""
    import sys

    stack, _, bundle = bundle_world(ic, product, [True])
    root, registry = bundles.root_key_from(ic.root_public_key), str(stack.registry.canister_id)
    seen: list[str] = []
    watching = [True]

    def hook(event: str, _args: Any) -> None:
        if watching[0] and event.startswith("socket."):
            seen.append(event)

    sys.addaudithook(hook)
    try:
        assert bundles.verify(bundle, root, registry).status is bundles.Status.VERIFIED
    finally:
        watching[0] = False
    assert seen == []


@pytest.mark.embedded_only
def test_a_correction_round_supersedes_an_earlier_divergence(ic: Any, product: dict[str, Any]) -> None:
    """Offline as on chain: after a rejected round, a correction round that verifies is what counts; the
    earlier divergence is still listed."""
    stack, wasm_id = file_world(ic, product)
    v0, v1 = VERIFIERS[0], VERIFIERS[1]
    first = reserved(stack, wasm_id, v0)
    assert "ok" in stack.diverge(v0, wasm_id, first, signed=signed_arg(identity_of(v0), wasm_id, attested=False))
    assert "ok" in stack.request(wasm_id, commit="ab" * 20, namespace="com.example.app")  # the correction
    second = reserved(stack, wasm_id, v1)
    assert "ok" in stack.attest(v1, wasm_id, second, signed=signed_arg(identity_of(v1), wasm_id))
    (answer,) = stack.registry("get_provenance", bytes.fromhex(wasm_id), [])
    report = check(stack, bundles.export(answer, str(stack.registry.canister_id), wasm_id))
    assert report.status is bundles.Status.VERIFIED and report.agreeing == [str(v1)] and report.diverging == []
    assert [f.verdict for f in report.filings] == ["diverged", "attested"]


def test_a_verifiers_text_is_never_markup_in_status(capsys: pytest.CaptureFixture[str]) -> None:
    from prometheus_cli.developer import _render_status

    st = {"wasm_id": "ab" * 32, "namespace": "com.example.app", "outcome": [], "request": [], "audits": [],
          "filings": [{"verifier": "aaaaa-aa", "attested": False, "bounty_id": 1, "request_id": 0, "timestamp": 0,
                       "index": 0, "report": ["[/x] evil [bold]"]}],
          "bounties": [], "rounds": [], "versions": [], "signatures": {0: "invalid: [/y]"}}
    _render_status(st)
    out = capsys.readouterr().out
    assert "[/x] evil [bold]" in out and "invalid: [/y]" in out
