"""The in-toto Statement v1 a verifier signs for each verdict.

- A match (the rebuild has the wasm's sha256): predicate SLSA provenance v1 -- the source repository and
  commit, the toolchain and builder image digests, the build parameters, and who rebuilt it.
- A divergence: predicate SLSA verification summary (VSA) v1 with `verificationResult = FAILED`, the digest
  the verifier's rebuild produced instead, and the reason (`divergence`, an extension field).

Statements are serialized as RFC 8785 canonical JSON (JCS): one byte string per statement, so the registry can
check the subject and predicate type by position (see `SUBJECT_SUFFIX`) and anyone re-serializing gets the same
bytes. in-toto-attestation's builders go through protobuf `Struct`, which turns integers into doubles; the
statement layer is four fields, so it is built here as plain data and validated by `parse`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

from prometheus_sdk.errors import SdkError
from prometheus_sdk.provenance import strict

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
VSA_V1 = "https://slsa.dev/verification_summary/v1"
BUILD_TYPE = "https://prometheus-protocol.dev/build/motoko-recipe/v1"
VERIFIER_URI = "https://prometheus-protocol.dev/verifier/"  # + the verifier's principal
POLICY_URI = "https://prometheus-protocol.dev/policy/build_reproducibility_v1"
MAX_PAYLOAD_BYTES = 16 * 1024  # the registry's limit too

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class StatementError(SdkError, ValueError):
    """Bytes that are not a statement this protocol signs (wrong type, subject, shape or encoding)."""


@dataclass(frozen=True)
class Build:
    """What a verifier rebuilt and how: the inputs a provenance predicate records."""

    repository: str
    commit: str
    namespace: str | None
    toolchain: str  # e.g. "moc 1.10.1"
    dependencies: dict[str, str]  # name -> sha256 hex (compiler, ic-wasm, packages, ...)
    builder_image: str | None = None  # sha256 hex of the sandbox image (None: built without the sandbox)
    parameters: dict[str, str] | None = None  # anything else that selects the build (canister name, flags)


def _time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _subject(wasm_id: str, name: str) -> list[dict[str, Any]]:
    if not _HEX64.match(wasm_id):
        raise StatementError(f"a wasm id is 64 lowercase hex digits, not {wasm_id!r}")
    if not _NAME.match(name):
        raise StatementError(f"a subject name is 1-64 of A-Z a-z 0-9 . _ -, not {name!r}")
    return [{"name": name, "digest": {"sha256": wasm_id}}]


def _verifier_id(principal: str) -> str:
    return VERIFIER_URI + principal


def provenance(wasm_id: str, name: str, build: Build, verifier: str, started: datetime, finished: datetime,
               invocation: str) -> dict[str, Any]:
    """SLSA provenance v1 for a rebuild that produced `wasm_id`."""
    dependencies = [{"uri": f"git+{build.repository}@{build.commit}", "digest": {"gitCommit": build.commit}}]
    dependencies += [{"name": n, "digest": {"sha256": d}} for n, d in sorted(build.dependencies.items())]
    if build.builder_image:
        dependencies.append({"name": "builder-image", "digest": {"sha256": build.builder_image}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": _subject(wasm_id, name),
        "predicateType": PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"repository": build.repository, "commit": build.commit,
                                       **({"namespace": build.namespace} if build.namespace else {}),
                                       **(build.parameters or {})},
                "internalParameters": {"toolchain": build.toolchain, "sandboxed": build.builder_image is not None},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": _verifier_id(verifier)},
                "metadata": {"invocationId": invocation, "startedOn": _time(started), "finishedOn": _time(finished)},
            },
        },
    }


def divergence(wasm_id: str, name: str, verifier: str, verified: datetime, reason: str, rebuilt: str | None,
               repository: str, commit: str) -> dict[str, Any]:
    """A verification summary saying the rebuild of `repository@commit` did not produce `wasm_id`."""
    if rebuilt is not None and not _HEX64.match(rebuilt):
        raise StatementError(f"the rebuilt digest is 64 lowercase hex digits, not {rebuilt!r}")
    found: dict[str, Any] = {"reason": reason[:4096]}
    if rebuilt is not None:
        found["rebuilt"] = {"sha256": rebuilt}
    return {
        "_type": STATEMENT_TYPE,
        "subject": _subject(wasm_id, name),
        "predicateType": VSA_V1,
        "predicate": {
            "verifier": {"id": _verifier_id(verifier)},
            "timeVerified": _time(verified),
            "resourceUri": f"git+{repository}@{commit}",
            "policy": {"uri": POLICY_URI},
            "verificationResult": "FAILED",
            "verifiedLevels": [],
            "divergence": found,
        },
    }


def encode(statement: dict[str, Any]) -> bytes:
    """The statement's canonical bytes (RFC 8785), checked to be a statement this protocol signs."""
    payload = bytes(rfc8785.dumps(statement))
    parse(payload)
    return payload


@dataclass(frozen=True)
class Parsed:
    """A statement's parts a verifier acts on."""

    wasm_id: str
    name: str
    predicate_type: str
    passed: bool  # provenance (a match), or a VSA that says FAILED
    verifier_id: str
    reason: str | None  # a divergence's
    statement: dict[str, Any]


MAX_DEPTH = 32


def _refuse(token: str) -> Any:
    raise StatementError(f"no floating-point or non-finite numbers ({token[:20]})")


def _depth(payload: bytes) -> int:
    """How deep arrays and objects nest (strings skipped), without parsing: bounds the parser's recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest



def parse(payload: bytes) -> Parsed:
    """Parse and check a payload: canonical JSON (re-encoding gives the same bytes), a v1 statement with one
    subject (the wasm), and a predicate this protocol knows."""
    import json

    if len(payload) > MAX_PAYLOAD_BYTES:
        raise StatementError(f"a statement of at most {MAX_PAYLOAD_BYTES} bytes")
    if _depth(payload) > MAX_DEPTH:
        raise StatementError(f"a statement nested at most {MAX_DEPTH} deep")
    try:
        repeated = strict.no_duplicates(StatementError, "a statement with a repeated key")
        statement = json.loads(payload.decode("utf-8"), object_pairs_hook=repeated, parse_float=_refuse,
                               parse_constant=_refuse)
        canonical = bytes(rfc8785.dumps(statement))
    except StatementError:
        raise
    except Exception as exc:  # not UTF-8, not JSON, numbers JCS cannot represent, ...
        raise StatementError(f"not canonical JSON: {exc}") from None
    if not isinstance(statement, dict) or set(statement) != {"_type", "subject", "predicateType", "predicate"}:
        raise StatementError("a statement has exactly _type, subject, predicateType and predicate")
    if canonical != payload:
        raise StatementError("not canonical JSON (RFC 8785)")
    if statement["_type"] != STATEMENT_TYPE:
        raise StatementError(f"_type is not {STATEMENT_TYPE}")
    subject = statement["subject"]
    if (not isinstance(subject, list) or len(subject) != 1 or not isinstance(subject[0], dict)
            or set(subject[0]) != {"name", "digest"} or not isinstance(subject[0]["digest"], dict)
            or set(subject[0]["digest"]) != {"sha256"}):
        raise StatementError("one subject: {name, digest: {sha256}}")
    wasm_id, name = subject[0]["digest"]["sha256"], subject[0]["name"]
    if not isinstance(wasm_id, str) or not _HEX64.match(wasm_id) or not isinstance(name, str) or not _NAME.match(name):
        raise StatementError("the subject's digest or name is malformed")
    predicate = statement["predicate"]
    if not isinstance(predicate, dict):
        raise StatementError("the predicate is an object")
    kind = statement["predicateType"]
    try:
        if kind == PROVENANCE_V1:
            verifier = predicate["runDetails"]["builder"]["id"]
            passed, reason = True, None
        elif kind == VSA_V1:
            verifier = predicate["verifier"]["id"]
            if predicate["verificationResult"] != "FAILED":
                raise StatementError("a verification summary is filed for a divergence: FAILED")
            passed, reason = False, str(predicate["divergence"]["reason"])
        else:
            raise StatementError(f"unknown predicate type {kind!r}")
    except (KeyError, TypeError):
        raise StatementError(f"a {kind} predicate without its required fields") from None
    if not isinstance(verifier, str) or not verifier.startswith(VERIFIER_URI):
        raise StatementError("the predicate does not name a Prometheus verifier")
    return Parsed(wasm_id, name, kind, passed, verifier, reason, statement)


# What the registry checks by position (docs/provenance.md): a canonical statement starts with this prefix and
# ends with `,"predicateType":"<type>","subject":[{"digest":{"sha256":"<wasm>"},"name":"<name>"}]}`.
STATEMENT_PREFIX = b'{"_type":"https://in-toto.io/Statement/v1","predicate":{'
