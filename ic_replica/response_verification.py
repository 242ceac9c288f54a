"""Response verification for the HTTP gateway (the HTTP Gateway Protocol Specification, "Response Verification"
and "Legacy Response Verification"): the `IC-Certificate` structured header, certificate validation against the
network's root key (directly or through a subnet delegation), the `IC-CertificateExpression` header
(`default_certification(ValidationArgs{...})`), expression paths (`http_expr` ... `<$>` / `<*>`, the most
specific one), request and response hashes, and the legacy (v1) `http_assets` tree.

Every failure raises `VerificationError` with a sentence naming what did not verify; nothing else escapes
`verify` for any input a canister can produce.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import cbor2

from ic_replica import hash_tree
from ic_replica.certification import BLS_DER_PREFIX, STATE_ROOT_SEPARATOR, bls_verify

MAX_CERT_TIME_OFFSET_NS = 5 * 60 * 1_000_000_000  # what the IC's gateways accept (ic-response-verification)
MAX_DECODED_BODY = 100 * 1024 * 1024  # a legacy body decoded for hashing (gzip/deflate) may not exceed this
MAX_HEADER_VALUE = 64 * 1024  # an IC-Certificate / IC-CertificateExpression header
EXACT, WILDCARD, PREFIX = b"<$>", b"<*>", b"http_expr"
CERT_HEADER, EXPR_HEADER = "ic-certificate", "ic-certificateexpression"
Headers = Sequence[tuple[str, str]]


class VerificationError(ValueError):
    """The response does not verify; the message says why."""


# ------------------------------------------------------------------------------------------- hash trees


def _flatten(tree: hash_tree.Tree) -> list[hash_tree.Tree]:
    out: list[hash_tree.Tree] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if node[0] == 1:
            stack.extend((node[2], node[1]))
        elif node[0] != 0:
            out.append(node)
    return out


def lookup_subtree(tree: hash_tree.Tree, path: Sequence[bytes]) -> tuple[str, hash_tree.Tree | None]:
    """("found", subtree) | ("absent", None) | ("unknown", None), as the spec's lookup on labeled subtrees."""
    for label in path:
        unknown = False
        found: hash_tree.Tree | None = None
        for node in _flatten(tree):
            if node[0] == 2:
                if node[1] == label:
                    found = node[2]
                    break
                if node[1] > label:
                    break
                unknown = False
            elif node[0] == 4:
                unknown = True
            else:  # a leaf among labeled nodes
                return "absent", None
        if found is None:
            return ("unknown", None) if unknown else ("absent", None)
        tree = found
    return "found", tree


def _tree_from_cbor(value: Any, depth: int = 0) -> hash_tree.Tree:
    """A hash tree from untrusted CBOR, every node checked (shape, types, depth)."""
    if depth > 200:
        raise VerificationError("the hash tree is nested too deeply")
    if not isinstance(value, list) or not value or not isinstance(value[0], int):
        raise VerificationError("a hash tree node is not a CBOR array starting with its kind")
    kind = value[0]
    if kind == 0 and len(value) == 1:
        return (0,)
    if kind == 1 and len(value) == 3:
        return (1, _tree_from_cbor(value[1], depth + 1), _tree_from_cbor(value[2], depth + 1))
    if kind == 2 and len(value) == 3 and isinstance(value[1], bytes):
        return (2, value[1], _tree_from_cbor(value[2], depth + 1))
    if kind == 3 and len(value) == 2 and isinstance(value[1], bytes):
        return (3, value[1])
    if kind == 4 and len(value) == 2 and isinstance(value[1], bytes) and len(value[1]) == 32:
        return (4, value[1])
    raise VerificationError(f"invalid hash tree node of kind {kind}")


def _cbor(data: bytes, what: str) -> Any:
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # noqa: BLE001 - any malformed CBOR
        raise VerificationError(f"the {what} is not valid CBOR: {exc}") from None
    return _plain(value, 0)


def _plain(value: Any, depth: int) -> Any:
    """Lists, dicts and bytes from whatever cbor2 produced (tuples, frozendicts; tag 55799 dropped)."""
    if depth > 300:
        raise VerificationError("CBOR nested too deeply")
    while isinstance(value, cbor2.CBORTag) and value.tag == 55799:
        value = value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------- the headers


def header_values(headers: Headers, name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def parse_certificate_header(value: str) -> dict[str, bytes | int | str]:
    """The RFC 8941 dictionary of `IC-Certificate`: `certificate=:b64:, tree=:b64:, version=2, expr_path=:b64:`."""
    if len(value) > MAX_HEADER_VALUE:
        raise VerificationError("the IC-Certificate header is too long")
    out: dict[str, bytes | int | str] = {}
    for item in value.split(","):
        item = item.strip(" \t")
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise VerificationError(f"malformed IC-Certificate header item {item[:40]!r}")
        if raw.startswith(":") and raw.endswith(":") and len(raw) >= 2:
            try:
                out[name] = base64.b64decode(raw[1:-1], validate=True)
            except (binascii.Error, ValueError):
                raise VerificationError(f"the IC-Certificate field {name!r} is not valid base64") from None
        elif raw.isdigit() and len(raw) <= 15:
            out[name] = int(raw)
        else:
            out[name] = raw.strip('"')
    return out


@dataclass
class Expression:
    """A parsed `default_certification(ValidationArgs{...})`."""

    no_certification: bool = False
    no_request_certification: bool = False
    request_headers: list[str] = field(default_factory=list)
    query_parameters: list[str] = field(default_factory=list)
    response_headers: list[str] = field(default_factory=list)
    response_headers_are_exclusions: bool = True


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c in "{}[]():,":
            out.append(c)
            i += 1
        elif c == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise VerificationError("unterminated string in the IC-CertificateExpression header")
            out.append(text[i : j + 1])
            i = j + 1
        elif c.isalnum() or c == "_":
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append(text[i:j])
            i = j
        else:
            raise VerificationError(f"unexpected character {c!r} in the IC-CertificateExpression header")
    return out


class _CelParser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0

    def take(self, expected: str | None = None) -> str:
        if self.pos >= len(self.toks):
            raise VerificationError("the IC-CertificateExpression header ends too early")
        tok = self.toks[self.pos]
        if expected is not None and tok != expected:
            raise VerificationError(f"the IC-CertificateExpression header has {tok!r} where {expected!r} belongs")
        self.pos += 1
        return tok

    def peek(self) -> str:
        return self.toks[self.pos] if self.pos < len(self.toks) else ""

    def value(self, depth: int = 0) -> Any:
        if depth > 10:
            raise VerificationError("the IC-CertificateExpression header is nested too deeply")
        tok = self.take()
        if tok == "[":
            items: list[str] = []
            while self.peek() != "]":
                s = self.take()
                if not (s.startswith('"') and s.endswith('"')):
                    raise VerificationError("a list in the IC-CertificateExpression header holds a non-string")
                items.append(s[1:-1])
                if self.peek() == ",":
                    self.take()
            self.take("]")
            return items
        if tok[:1].isalpha():
            self.take("{")
            fields: dict[str, Any] = {}
            while self.peek() != "}":
                name = self.take()
                self.take(":")
                if name in fields:
                    raise VerificationError(f"field {name!r} repeated in the IC-CertificateExpression header")
                fields[name] = self.value(depth + 1)
                if self.peek() == ",":
                    self.take()
            self.take("}")
            return (tok, fields)
        raise VerificationError(f"unexpected {tok!r} in the IC-CertificateExpression header")


def _obj(value: Any, type_name: str, allowed: set[str]) -> dict[str, Any]:
    if not (isinstance(value, tuple) and value[0] == type_name):
        raise VerificationError(f"the IC-CertificateExpression header needs a {type_name} here")
    fields: dict[str, Any] = value[1]
    extra = set(fields) - allowed
    if extra:
        raise VerificationError(f"unknown field {sorted(extra)[0]!r} in {type_name}")
    return fields


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list):
        raise VerificationError(f"{what} must be a list of strings")
    return value


def parse_expression(text: str) -> Expression:
    """Parse the `IC-CertificateExpression` header value by the grammar of the specification (whitespace and
    commas between list items tolerated, as the CEL the IC's libraries print has them)."""
    if len(text) > MAX_HEADER_VALUE:
        raise VerificationError("the IC-CertificateExpression header is too long")
    p = _CelParser(text)
    p.take("default_certification")
    p.take("(")
    args = _obj(p.value(), "ValidationArgs", {"no_certification", "certification"})
    p.take(")")
    if p.pos != len(p.toks):
        raise VerificationError("trailing text after the IC-CertificateExpression")
    if len(args) != 1:
        raise VerificationError("ValidationArgs needs exactly one of no_certification, certification")
    if "no_certification" in args:
        _obj(args["no_certification"], "Empty", set())
        return Expression(no_certification=True)
    cert = _obj(args["certification"], "Certification",
                {"no_request_certification", "request_certification", "response_certification"})
    expr = Expression()
    if ("no_request_certification" in cert) == ("request_certification" in cert):
        raise VerificationError("Certification needs exactly one of no_request_certification, request_certification")
    if "no_request_certification" in cert:
        _obj(cert["no_request_certification"], "Empty", set())
        expr.no_request_certification = True
    else:
        req = _obj(cert["request_certification"], "RequestCertification",
                   {"certified_request_headers", "certified_query_parameters"})
        expr.request_headers = _strings(req.get("certified_request_headers", []), "certified_request_headers")
        expr.query_parameters = _strings(req.get("certified_query_parameters", []), "certified_query_parameters")
    if "response_certification" not in cert:
        raise VerificationError("Certification needs response_certification")
    resp = _obj(cert["response_certification"], "ResponseCertification",
                {"certified_response_headers", "response_header_exclusions"})
    if len(resp) != 1:
        raise VerificationError("ResponseCertification needs exactly one of certified_response_headers, "
                                "response_header_exclusions")
    kind, lst = next(iter(resp.items()))
    expr.response_headers_are_exclusions = kind == "response_header_exclusions"
    expr.response_headers = [h.lower() for h in _strings(
        _obj(lst, "ResponseHeaderList", {"headers"}).get("headers", []), "headers")]
    return expr


# ------------------------------------------------------------------------------------------- hashes


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash_pairs(pairs: Sequence[tuple[str, str | bytes | int]]) -> bytes:
    """The representation-independent hash of a map whose keys may repeat (every repetition included)."""
    parts = []
    for key, value in pairs:
        if isinstance(value, int):
            v = _sha(_leb(value))
        elif isinstance(value, bytes):
            v = _sha(value)
        else:
            v = _sha(value.encode())
        parts.append(_sha(key.encode()) + v)
    return _sha(b"".join(sorted(parts)))


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def request_hash(method: str, url: str, headers: Headers, body: bytes, expr: Expression) -> bytes:
    wanted = {h.lower() for h in expr.request_headers}
    pairs: list[tuple[str, str | bytes | int]] = [(k.lower(), v) for k, v in headers if k.lower() in wanted]
    pairs.append((":ic-cert-method", method))
    # `:ic-cert-query` (only when the URL has a query): the certified parameters, `name=value` as sent, in
    # their order, joined by `&` -- a text value, hashed as text (ic-http-certification's request_hash)
    without_fragment = url.partition("#")[0]
    if "?" in without_fragment:
        query = without_fragment.partition("?")[2]
        names = {q.lower() for q in expr.query_parameters}
        kept = [p for p in query.split("&") if p.split("=", 1)[0].lower() in names]
        pairs.append((":ic-cert-query", "&".join(kept)))
    return _sha(hash_pairs(pairs) + _sha(body))


def response_hash(status: int, headers: Headers, body: bytes, expr: Expression) -> bytes:
    pairs: list[tuple[str, str | bytes | int]] = []
    for name, value in headers:
        low = name.lower()
        if low == CERT_HEADER:
            continue
        listed = low in expr.response_headers
        if low == EXPR_HEADER or (listed != expr.response_headers_are_exclusions):
            pairs.append((low, value))
    pairs.append((":ic-cert-status", status))
    return _sha(hash_pairs(pairs) + _sha(body))


# ------------------------------------------------------------------------------------------- paths


def request_path(url: str) -> str:
    """The URL's path, percent-decoded (as ic-http-certification's `HttpRequest::get_path`)."""
    return unquote(urlsplit(url).path or "/")


def request_path_segments(url: str) -> list[bytes]:
    """`/a/b` -> [a, b]; `/` -> [""]; `/a/` -> [a, ""]; empty segments dropped (as ic-response-verification's
    `validate_expr_path` splits the path)."""
    path = request_path(url)
    segments = [s.encode() for s in path.split("/") if s]
    return [*segments, b""] if path.endswith("/") else segments


def candidate_expr_paths(segments: list[bytes]) -> list[list[bytes]]:
    """Every expression path that may certify a request for `segments`, the most specific first: the exact
    path, then the wildcards from the longest prefix down to the root (directory forms `""` included), as
    ic-http-certification orders them."""
    out = [[PREFIX, *segments, EXACT]]
    path = list(segments)
    while path:
        out.append([PREFIX, *path, WILDCARD])
        if path[-1] == b"":
            path.pop()
        else:
            path[-1] = b""
    return out


# ------------------------------------------------------------------------------------------- verification


@dataclass
class Verified:
    version: int
    detail: str


def _signed_tree(cert: Any, public_key: bytes, who: str) -> hash_tree.Tree:
    """The tree of a certificate map whose signature `public_key` (raw BLS) made."""
    if not isinstance(cert, dict) or not isinstance(cert.get("tree"), list) or not isinstance(
            cert.get("signature"), bytes):
        raise VerificationError(f"the {who} is not a CBOR map with a tree and a signature")
    tree = _tree_from_cbor(cert["tree"])
    if not bls_verify(public_key, cert["signature"], STATE_ROOT_SEPARATOR + hash_tree.reconstruct(tree)):
        raise VerificationError(f"the {who}'s signature does not verify")
    return tree


def _delegated_key(delegation: Any, canister_id: bytes, root_public_key: bytes) -> bytes:
    """The subnet key a delegation vouches for (spec, "Delegation"): its certificate is the root key's, has no
    delegation itself, and its `/canister_ranges/<subnet id>` include the canister."""
    if not isinstance(delegation, dict) or not isinstance(delegation.get("subnet_id"), bytes) or not isinstance(
            delegation.get("certificate"), bytes):
        raise VerificationError("the certificate's delegation is not a map with a subnet_id and a certificate")
    inner = _cbor(delegation["certificate"], "delegation's certificate")
    if isinstance(inner, dict) and inner.get("delegation") is not None:
        raise VerificationError("the delegation's certificate carries a delegation itself")
    tree = _signed_tree(inner, root_public_key, "delegation's certificate (by the network's root key)")
    subnet_id = delegation["subnet_id"]
    status, shards = lookup_subtree(tree, [b"canister_ranges", subnet_id])
    if status != "found" or shards is None or not _in_ranges(shards, canister_id):
        raise VerificationError("the canister is not in the canister ranges of the subnet that certified it")
    status, key = lookup_subtree(tree, [b"subnet", subnet_id, b"public_key"])
    if status != "found" or key is None or key[0] != 3 or not key[1].startswith(BLS_DER_PREFIX):
        raise VerificationError("the delegation's certificate does not reveal the subnet's BLS public key")
    return bytes(key[1][len(BLS_DER_PREFIX):])


def _in_ranges(shards: hash_tree.Tree, canister_id: bytes) -> bool:
    """Whether a `/canister_ranges/<subnet id>` subtree (shards of CBOR `[[start, end], ...]`) holds the id."""
    for shard in _flatten(shards):
        if shard[0] != 2 or shard[2][0] != 3:
            continue
        ranges = _cbor(shard[2][1], "canister ranges")
        if isinstance(ranges, list) and any(
                isinstance(r, list) and len(r) == 2 and all(isinstance(b, bytes) for b in r)
                and r[0] <= canister_id <= r[1] for r in ranges):
            return True
    return False


def validate_certificate(cert_bytes: bytes, canister_id: bytes, root_public_key: bytes, now_ns: int) -> bytes:
    """Check a certificate (signature by the root key, or by a subnet key delegated for the canister; recent
    `/time`) and return the canister's certified data it reveals."""
    cert = _cbor(cert_bytes, "certificate")
    delegation = cert.get("delegation") if isinstance(cert, dict) else None
    key = root_public_key if delegation is None else _delegated_key(delegation, canister_id, root_public_key)
    tree = _signed_tree(cert, key, "certificate (by the network's root key or a delegated subnet key)")
    status, time_tree = lookup_subtree(tree, [b"time"])
    if status != "found" or time_tree is None or time_tree[0] != 3:
        raise VerificationError("the certificate has no /time")
    cert_time = _read_leb(time_tree[1])
    if cert_time < now_ns - MAX_CERT_TIME_OFFSET_NS:
        raise VerificationError(f"the certificate is stale: its /time is {(now_ns - cert_time) / 1e9:.0f} s behind "
                                f"the replica's clock (at most {MAX_CERT_TIME_OFFSET_NS // 10**9} s)")
    if cert_time > now_ns + MAX_CERT_TIME_OFFSET_NS:
        raise VerificationError(f"the certificate's /time is {(cert_time - now_ns) / 1e9:.0f} s ahead of the "
                                f"replica's clock")
    status, data = lookup_subtree(tree, [b"canister", canister_id, b"certified_data"])
    if status != "found" or data is None or data[0] != 3:
        raise VerificationError("the certificate does not reveal the canister's certified_data")
    return bytes(data[1])


def _read_leb(data: bytes) -> int:
    result = 0
    for i, b in enumerate(data[:10]):
        result |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return result
    raise VerificationError("the certificate's /time is not a LEB128 number")


def _decoded_body(headers: Headers, body: bytes) -> bytes:
    encodings = [v.strip().lower() for v in header_values(headers, "content-encoding")]
    if not encodings or encodings[-1] in ("", "identity"):
        return body
    try:
        if encodings[-1] == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encodings[-1] == "deflate":
            d = zlib.decompressobj()
        else:
            return body
        out = d.decompress(body, MAX_DECODED_BODY + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise VerificationError(f"the body does not decode as {encodings[-1]}: {exc}") from None
    if len(out) > MAX_DECODED_BODY:
        raise VerificationError("the decoded body is too large to verify")
    return out


def verify(*, canister_id: bytes, root_public_key: bytes, now_ns: int, method: str, url: str,
           request_headers: Headers, request_body: bytes, status: int, headers: Headers,
           body: bytes, supported_versions: str | None = None) -> Verified:
    """Verify one response (its body fully assembled) for one request; raises `VerificationError`.
    `supported_versions`: the canister's `supported_certificate_versions` public metadata, if it has it (a
    canister listing 2 may not be served a v1 response: the spec's version assertion against downgrades)."""
    values = header_values(headers, CERT_HEADER)
    if not values:
        raise VerificationError("the response has no IC-Certificate header")
    if len(values) > 1:
        raise VerificationError("the response has more than one IC-Certificate header")
    fields = parse_certificate_header(values[0])
    cert, tree_bytes = fields.get("certificate"), fields.get("tree")
    if not isinstance(cert, bytes) or not isinstance(tree_bytes, bytes):
        raise VerificationError("the IC-Certificate header lacks a certificate or a tree")
    certified_data = validate_certificate(cert, canister_id, root_public_key, now_ns)
    tree = _tree_from_cbor(_cbor(tree_bytes, "tree"))
    if hash_tree.reconstruct(tree) != certified_data:
        raise VerificationError("the root hash of the tree is not the canister's certified data")
    version = fields.get("version", 1)
    if version == 1:
        listed = {v.strip() for v in (supported_versions or "").split(",")}
        if "2" in listed:
            raise VerificationError("the response uses the legacy version 1 but the canister's "
                                    "supported_certificate_versions metadata lists 2")
        return _verify_v1(tree, url, headers, body)
    if version != 2:
        raise VerificationError(f"unsupported response verification version {version!r}")
    return _verify_v2(tree, fields, method, url, request_headers, request_body, status, headers, body)


def _verify_v1(tree: hash_tree.Tree, url: str, headers: Headers, body: bytes) -> Verified:
    path = request_path(url)
    for candidate in (path, "/index.html"):
        status, leaf = lookup_subtree(tree, [b"http_assets", candidate.encode()])
        if status == "found" and leaf is not None and leaf[0] == 3:
            if bytes(leaf[1]) != _sha(_decoded_body(headers, body)):
                raise VerificationError(f"the body's sha256 is not the one certified at http_assets {candidate}")
            return Verified(1, f"http_assets {candidate}")
        if status == "unknown":
            raise VerificationError(f"the tree prunes http_assets {candidate}: it neither proves nor refutes it")
    raise VerificationError(f"the tree certifies neither http_assets {path} nor /index.html")


def _verify_v2(tree: hash_tree.Tree, fields: dict[str, bytes | int | str], method: str, url: str,
               request_headers: Headers, request_body: bytes, status: int, headers: Headers,
               body: bytes) -> Verified:
    raw_path = fields.get("expr_path")
    if not isinstance(raw_path, bytes):
        raise VerificationError("the IC-Certificate header lacks expr_path (required for version 2)")
    decoded = _cbor(raw_path, "expr_path")
    if not isinstance(decoded, list) or not all(isinstance(s, str) for s in decoded):
        raise VerificationError("expr_path is not an array of strings")
    expr_path = [s.encode() for s in decoded]
    candidates = candidate_expr_paths(request_path_segments(url))
    if expr_path not in candidates:
        raise VerificationError(f"expr_path {decoded!r} does not match the request URL")
    for more_specific in candidates[: candidates.index(expr_path)]:
        if lookup_subtree(tree, more_specific)[0] != "absent":
            shown = [s.decode(errors="replace") for s in more_specific]
            raise VerificationError(f"expr_path {decoded!r} is not the most specific: the tree may hold {shown!r}")
    exprs = header_values(headers, EXPR_HEADER)
    if len(exprs) != 1:
        raise VerificationError("the response needs exactly one IC-CertificateExpression header")
    expr = parse_expression(exprs[0])
    found, _ = lookup_subtree(tree, [*expr_path, _sha(exprs[0].encode())])
    if found != "found":
        raise VerificationError("the IC-CertificateExpression header is not the one certified at expr_path")
    if expr.no_certification:
        return Verified(2, "no_certification")
    resp = response_hash(status, headers, body, expr)
    req_label = b"" if expr.no_request_certification else request_hash(method, url, request_headers,
                                                                       request_body, expr)
    found, leaf = lookup_subtree(tree, [*expr_path, _sha(exprs[0].encode()), req_label, resp])
    if found != "found" or leaf is None or leaf != (3, b""):
        what = "response" if expr.no_request_certification else "request and response"
        raise VerificationError(f"the {what} (status, certified headers, body) are not the ones certified")
    return Verified(2, "certified")
