"""Whether a filing's signed statement (as `get_provenance` returns it) is really that filing's: the signature
verifies with the key whose principal filed it, and the statement is about this wasm with this verdict. Used
by `prometheus status` and the store, which show the result, never the registry's word for it."""

from __future__ import annotations

from typing import Any

from prometheus_sdk.principal import Principal
from prometheus_sdk.provenance import envelopes

VALID = "valid"


def signature_state(statement: dict[str, Any], wasm_id: str, attested: bool, verifier: Any) -> tuple[str, str | None]:
    """(`valid` or `invalid: why`, the envelope's sha256 in hex when it could be read): what the registry's
    filing block certifies (`envelope_sha256`), for the caller to compare."""
    try:
        signed = envelopes.from_parts(bytes(statement["payload"]), statement["payload_type"],
                                      bytes(statement["signature"]), bytes(statement["public_key"]))
    except Exception as exc:  # a filer's hostile statement is a finding, never a traceback
        return f"invalid: {str(exc)[:200]}", None
    try:
        parsed = envelopes.verify(signed)
    except Exception as exc:
        return f"invalid: {str(exc)[:200]}", signed.digest
    if parsed.wasm_id != wasm_id or parsed.passed != attested or signed.signer != Principal.of(verifier):
        return "invalid: the statement is not the filing's", signed.digest
    return VALID, signed.digest
