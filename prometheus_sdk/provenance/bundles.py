"""Provenance bundles: one wasm's filings in one namespace -- signed statements included -- with the proof
that the registry holds them, checked with nothing but the IC root key and the registry's id
(docs/provenance.md).

A bundle is canonical JSON (RFC 8785) with exactly these members:

    {"certificate": b64, "filings": [...], "format": "prometheus-provenance/v1", "hash_tree": b64,
     "namespace": text, "registry": canister id, "wasm": hex}

and each filing `{"index", "namespace", "request_id", "time" (ns, decimal text), "verdict": "attested" |
"diverged", "verifier": principal}`, plus `"envelope": {...DSSE...}` and `"public_key": b64` when signed. Every
byte is covered: the certificate is signed by the root key (through a delegation when there is one), for the
expected registry; the witness hashes to its certified data; the leaf is the hash of the filings' records
(a signed one naming its envelope's hash); each envelope is signed by the key whose principal is the filing's
verifier, and each statement's subject is the wasm. Verification makes no network call.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import cbor2
import rfc8785

from prometheus_sdk import certificates
from prometheus_sdk.errors import SdkError
from prometheus_sdk.principal import Principal
from prometheus_sdk.provenance import envelopes, hashtree, strict
from prometheus_sdk.provenance.values import hash_value

FORMAT = "prometheus-provenance/v1"
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
_DER_PREFIX = bytes.fromhex("308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100")


class BundleError(SdkError, ValueError):
    """A bundle that is malformed or whose proof does not hold: nothing in it can be trusted."""


class Status(str, Enum):
    VERIFIED = "verified"  # at least `threshold` distinct trusted verifiers attest, none diverges
    INSUFFICIENT = "insufficient"  # the proof holds, too few trusted attestations
    DIVERGENT = "divergent"  # the proof holds and a trusted verifier filed a divergence (signed or not)
    TAMPERED = "tampered"  # the bundle or its proof does not verify


@dataclass
class FilingCheck:
    verifier: str
    verdict: str
    namespace: str
    request_id: int
    signature_valid: bool
    trusted: bool
    reason: str | None = None  # a divergence's, or why the signature did not verify


@dataclass
class Report:
    status: Status
    wasm: str | None = None
    namespace: str | None = None
    registry: str | None = None
    certified_at_ns: int | None = None
    filings: list[FilingCheck] = field(default_factory=list)
    agreeing: list[str] = field(default_factory=list)
    diverging: list[str] = field(default_factory=list)
    problem: str | None = None  # why the bundle is tampered

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "wasm": self.wasm, "namespace": self.namespace, "registry": self.registry,
                "certified_at_ns": self.certified_at_ns, "agreeing": self.agreeing, "diverging": self.diverging,
                "problem": self.problem,
                "filings": [vars(f) for f in self.filings]}


def root_key_from(data: bytes) -> bytes:
    """A root key as DER (133 bytes), from DER, the raw 96-byte BLS key, or either in hex."""
    text = data.strip()
    try:
        if text and all(c in b"0123456789abcdefABCDEF" for c in text):
            data = bytes.fromhex(text.decode())
    except ValueError:
        pass
    if len(data) == 96:
        data = _DER_PREFIX + data
    if len(data) != 133 or not data.startswith(_DER_PREFIX):
        raise BundleError("a root key is the IC's BLS key: 133 bytes of DER or 96 raw bytes (or their hex)")
    return data


# ---------------------------------------------------------------- export


def export(answer: dict[str, Any], registry: str, wasm: str) -> bytes:
    """The bundle for `wasm` from the registry's `get_provenance` answer."""
    filings: list[dict[str, Any]] = []
    for f in answer["filings"]:
        row: dict[str, Any] = {
            "index": int(f["index"]), "namespace": f["namespace"], "request_id": int(f["request_id"]),
            "time": str(int(f["time"])), "verdict": "attested" if f["attested"] else "diverged",
            "verifier": str(Principal.of(f["verifier"]))}
        statement = f["statement"]  # Candid `opt`: [] or [value] from the SDK's clients
        statement = (statement[0] if statement else None) if isinstance(statement, list) else statement
        if statement:
            signed = envelopes.from_parts(bytes(statement["payload"]), statement["payload_type"],
                                          bytes(statement["signature"]), bytes(statement["public_key"]))
            row["envelope"] = signed.envelope.to_dict()
            row["public_key"] = base64.b64encode(signed.public_key).decode()
        filings.append(row)
    bundle: dict[str, Any] = {
        "certificate": base64.b64encode(bytes(answer["certificate"])).decode(), "filings": filings, "format": FORMAT,
        "hash_tree": base64.b64encode(bytes(answer["hash_tree"])).decode(), "namespace": answer["namespace"],
        "registry": str(Principal.of(registry)), "wasm": wasm}
    return bytes(rfc8785.dumps(bundle))


# ---------------------------------------------------------------- verify


def _exact(obj: Any, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise BundleError(f"{what} has exactly {', '.join(sorted(keys))}")
    return obj


def _b64(text: Any, what: str) -> bytes:
    return strict.b64(text, BundleError, what)


def _nat(x: Any, what: str) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or x < 0:
        raise BundleError(f"{what} is a natural number")
    return x


def _decimal(x: Any, what: str) -> int:
    """A natural number written as decimal digits (JSON numbers stop being exact at 2^53: nanoseconds don't fit)."""
    if not isinstance(x, str) or not x.isdigit() or not x.isascii() or (len(x) > 1 and x[0] == "0") or len(x) > 30:
        raise BundleError(f"{what} is a natural number in decimal digits")
    return int(x)


def _cbor(data: bytes, what: str) -> Any:
    try:
        return certificates.untag(cbor2.loads(data))
    except Exception:
        raise BundleError(f"{what} is not CBOR") from None


def verify(data: bytes, root_key: bytes, registry: str, *, wasm: str | None = None, threshold: int = 1,
           trusted: set[str] | None = None, max_age_ns: int | None = None, now_ns: int | None = None) -> Report:
    """Check a bundle offline. `registry`: the registry canister the bundle must come from (a bundle certified
    by any other canister proves nothing); `wasm`: the local module's sha256 the bundle must be about;
    `trusted`: the verifiers whose verdicts count (every filer when None); `max_age_ns`: how old the
    certificate may be."""
    try:
        return _verify(data, root_key, registry, wasm, threshold, trusted, max_age_ns, now_ns)
    except Exception as exc:  # untrusted bytes: any failure to check them is a bundle that does not verify
        return Report(Status.TAMPERED, problem=str(exc) or type(exc).__name__)


_SIGNED = {"envelope", "index", "namespace", "public_key", "request_id", "time", "verdict", "verifier"}
_UNSIGNED = _SIGNED - {"envelope", "public_key"}
MAX_CLOCK_SKEW_NS = 5 * 60 * 10**9


def _verify(data: bytes, root_key: bytes, expected_registry: str, wasm: str | None, threshold: int,
            trusted: set[str] | None, max_age_ns: int | None, now_ns: int | None) -> Report:
    import time

    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError("a bundle of at most 4 MiB")
    try:
        bundle = json.loads(data.decode("utf-8"), object_pairs_hook=strict.no_duplicates(BundleError, "a repeated key"),
                            parse_float=lambda _: (_ for _ in ()).throw(BundleError("no floats")))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleError("a bundle is JSON") from None
    _exact(bundle, {"certificate", "filings", "format", "hash_tree", "namespace", "registry", "wasm"}, "a bundle")
    if bytes(rfc8785.dumps(bundle)) != data:
        raise BundleError("a bundle is canonical JSON (RFC 8785)")
    if bundle["format"] != FORMAT:
        raise BundleError(f"format is {FORMAT}")
    subject = bundle["wasm"]
    if not isinstance(subject, str) or len(subject) != 64 or any(c not in "0123456789abcdef" for c in subject):
        raise BundleError("wasm is 64 lowercase hex digits")
    wasm_hash = bytes.fromhex(subject)
    if wasm is not None and wasm != subject:
        raise BundleError(f"the bundle is about wasm {subject}, not {wasm}")
    namespace = bundle["namespace"]
    if not isinstance(namespace, str) or not namespace:
        raise BundleError("namespace is text")
    registry = Principal.from_text(bundle["registry"]) if isinstance(bundle["registry"], str) else None
    if registry is None or str(registry) != bundle["registry"]:
        raise BundleError("registry is a canister id in its canonical text form")
    if registry != Principal.from_text(expected_registry):
        raise BundleError(f"the bundle comes from canister {registry}, not the registry {expected_registry}")

    # The cheap checks first (the records, the witness), the certificate's signature last.
    tree = _cbor(_b64(bundle["hash_tree"], "hash_tree"), "hash_tree")
    root = hashtree.digest(tree)
    leaf = hashtree.lookup(tree, [b"provenance", wasm_hash[:1], wasm_hash + namespace.encode()])
    if leaf is None:
        raise BundleError("the witness does not reveal this wasm's provenance leaf in this namespace")

    # The records: their hash is the leaf; a signed one names its envelope by hash.
    filings = bundle["filings"]
    if not isinstance(filings, list) or not filings:
        raise BundleError("filings is a non-empty list")
    records, checks = [], []
    for i, f in enumerate(filings):
        if not isinstance(f, dict) or set(f) not in (_SIGNED, _UNSIGNED):
            raise BundleError(f"filing {i} has exactly {', '.join(sorted(_SIGNED))} (envelope and public_key "
                              "only when signed)")
        if f["verdict"] not in ("attested", "diverged") or f["namespace"] != namespace:
            raise BundleError(f"filing {i}: verdict is attested or diverged, in the bundle's namespace")
        verifier = Principal.from_text(f["verifier"]) if isinstance(f["verifier"], str) else None
        if verifier is None or str(verifier) != f["verifier"]:
            raise BundleError(f"filing {i}: verifier is a principal in its canonical text form")
        record: dict[str, Any] = {
            "index": _nat(f["index"], "index"), "request_id": _nat(f["request_id"], "request_id"),
            "namespace": namespace, "verifier": verifier.raw, "verdict": f["verdict"],
            "time": _decimal(f["time"], "time")}
        signed = None
        if "envelope" in f:
            key = _b64(f["public_key"], f"filing {i}'s public_key")
            if Principal.self_authenticating(key) != verifier:
                raise BundleError(f"filing {i}: the public key is not the verifier's")
            envelope_json = bytes(rfc8785.dumps(f["envelope"]))
            signed = envelopes.from_json(envelope_json, key)
            record["envelope"] = hashlib.sha256(envelope_json).digest()
        records.append(record)
        checks.append((f, verifier, signed))
    if hash_value(records) != leaf:
        raise BundleError("the filings are not the records the registry certified for this wasm")

    # The certificate: signed by the root key, for the registry, not from the future, recent enough,
    # certifying the witness's root.
    certificate = certificates.verify(_b64(bundle["certificate"], "certificate"), root_key, str(registry),
                                      max_age_ns if max_age_ns is not None else 1 << 80)
    certified = certificate.lookup([b"canister", registry.raw, b"certified_data"])
    if certified is None or bytes(certified) != root:
        raise BundleError("the witness does not hash to the registry's certified data")
    at = int(certificate.lookup_time())
    if at > (now_ns if now_ns is not None else time.time_ns()) + MAX_CLOCK_SKEW_NS:
        raise BundleError("the certificate's time is in the future: check this machine's clock")

    # Each filing: the registry saw who filed it (certified above). An attestation counts when its filer signed
    # a statement about this wasm saying so; a divergence counts whether or not it is signed. Only the latest
    # round's filings count (a correction round supersedes a rejected one, as on chain); earlier ones are listed.
    latest = max(int(f["request_id"]) for f, _, _ in checks)
    report = Report(Status.INSUFFICIENT, wasm=subject, namespace=namespace, registry=str(registry), certified_at_ns=at)
    agreeing: set[str] = set()
    diverging: set[str] = set()
    for f, verifier, signed in checks:
        who = str(verifier)
        is_trusted = trusted is None or who in trusted
        check = FilingCheck(who, f["verdict"], f["namespace"], f["request_id"], False, is_trusted)
        if signed is None:
            check.reason = "no signed statement"
        else:
            try:
                parsed = envelopes.verify(signed)
            except Exception as exc:  # on chain, but the filer's own statement is bad: it proves nothing more
                check.reason = f"invalid statement: {exc}"
            else:
                if parsed.wasm_id != subject or parsed.passed != (f["verdict"] == "attested"):
                    check.reason = "the statement's subject or verdict is not the filing's"
                else:
                    check.signature_valid = True
                    check.reason = parsed.reason
        current = int(f["request_id"]) == latest
        if is_trusted and current and f["verdict"] == "diverged":
            diverging.add(who)
        elif is_trusted and current and check.signature_valid:
            agreeing.add(who)
        report.filings.append(check)
    report.agreeing, report.diverging = sorted(agreeing), sorted(diverging)
    if diverging:
        report.status = Status.DIVERGENT
    elif len(agreeing) >= threshold:
        report.status = Status.VERIFIED
    return report
