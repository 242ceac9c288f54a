"""The localnet's HTTP gateway (`ic_replica.http_gateway`): routing, upgrade to update, streaming, and response
verification v2 / v1 against certification trees computed here, in Python, and uploaded to the `web` test
canister (which only stores them, certifies their root and hands out `CertifiedData.getCertificate()`)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cbor2
import httpx
import pytest

from ic_replica import Replica, candid, hash_tree
from ic_replica import response_verification as rv
from ic_replica.candid import BLOB, BOOL, NAT16, TEXT, Opt, Record, Tuple, Vec
from ic_replica.http_gateway import MAX_REQUEST_BODY, HttpGateway, serve
from ic_replica.http_server import IcHttpServer
from ic_replica.principal import Principal
from ic_replica.request_auth import hash_of_map
from tests.conftest import ALICE

HEADER = Tuple(TEXT, TEXT)
ROUTE = Record.of(status=NAT16, headers=Vec(HEADER), body=BLOB, certRest=Opt(TEXT), fixedCert=Opt(BLOB),
                  upgrade=BOOL, chunks=Vec(BLOB))
FULL = ("default_certification(ValidationArgs{certification:Certification{request_certification:"
        "RequestCertification{certified_request_headers:[\"accept\"],certified_query_parameters:[\"lang\"]},"
        "response_certification:ResponseCertification{certified_response_headers:ResponseHeaderList{"
        "headers:[\"content-type\"]}}}})")
NO_REQUEST = ("default_certification(ValidationArgs{certification:Certification{no_request_certification: Empty{},"
              "response_certification:ResponseCertification{response_header_exclusions:ResponseHeaderList{"
              "headers:[]}}}})")
NO_CERT = "default_certification(ValidationArgs{no_certification: Empty{}})"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Site:
    """The web canister and the certification tree the test keeps for it."""

    def __init__(self, replica: Replica, cid: Principal) -> None:
        self.replica, self.cid = replica, cid
        self.state: dict[bytes, Any] = {}

    def put(self, path: list[bytes], leaf: bytes = b"") -> None:
        node = self.state
        for label in path[:-1]:
            node = node.setdefault(label, {})
        node[path[-1]] = leaf

    def tree(self) -> hash_tree.Tree:
        return hash_tree.full_tree(self.state)

    def certify(self) -> None:
        root = hash_tree.reconstruct(self.tree())
        self.replica.update_call(self.cid, "set_certified", candid.encode([BLOB], [root]), sender=ALICE)

    def route(self, url: str, *, status: int = 200, headers: list[tuple[str, str]] | None = None,
              body: bytes = b"", cert_rest: str | None = None, fixed_cert: bytes | None = None,
              upgrade: bool = False, chunks: list[bytes] | None = None) -> None:
        value = {"status": status, "headers": headers or [], "body": body,
                 "certRest": [] if cert_rest is None else [cert_rest],
                 "fixedCert": [] if fixed_cert is None else [fixed_cert], "upgrade": upgrade, "chunks": chunks or []}
        self.replica.update_call(self.cid, "set_route", candid.encode([TEXT, ROUTE], [url, value]), sender=ALICE)

    def v2_rest(self, expr_path: list[str]) -> str:
        tree = cbor2.dumps(cbor2.CBORTag(55799, hash_tree.to_cbor(self.tree())))
        return f"tree=:{b64(tree)}:, version=2, expr_path=:{b64(cbor2.dumps(expr_path))}:"


# Request and response hashes, written from the specification with `request_auth.hash_of_map` (the IC's
# representation-independent hash, as request ids use it), separately from the gateway's own code.
def req_hash(method: str, headers: dict[str, str], query: str | None, body: bytes = b"") -> bytes:
    fields: dict[str, Any] = {k.lower(): v for k, v in headers.items()}
    fields[":ic-cert-method"] = method
    if query is not None:
        fields[":ic-cert-query"] = query
    return sha(hash_of_map(fields) + sha(body))


def resp_hash(status: int, headers: dict[str, str], body: bytes) -> bytes:
    fields: dict[str, Any] = {k.lower(): v for k, v in headers.items()}
    fields[":ic-cert-status"] = status
    return sha(hash_of_map(fields) + sha(body))


# Vectors of dfinity/response-verification (ic-http-certification's request_hash.rs / response_hash.rs tests).
VECTOR_HEADERS = [("Accept-Language", "en"), ("Accept-Language", "en-US"), ("Host", "https://ic0.app")]
VECTOR_CEL = """
    default_certification (
      ValidationArgs {
        certification: Certification {
          no_request_certification: Empty {},
          response_certification: ResponseCertification {
            certified_response_headers: ResponseHeaderList {
              headers: ["Accept-Encoding", "Cache-Control"]
            }
          }
        }
      }
    )
"""


def vector_response(cel: str) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("IC-Certificate", "certificate=:SGVsbG8gQ2VydGlmaWNhdGUh:,tree=:SGVsbG8gVHJlZSE=:"),
               ("IC-CertificateExpression", "".join(cel.split())), ("Accept-Encoding", "gzip"),
               ("Cache-Control", "no-cache"), ("Cache-Control", "no-store"),
               ("Content-Security-Policy", "default-src 'self'")]
    return 200, headers, b"Hello World!"


def test_hashes_match_the_ic_libraries_vectors() -> None:
    expr = rv.Expression(request_headers=["host"], query_parameters=["q", "name"])
    body = bytes(range(7))
    assert rv.request_hash("POST", "https://ic0.app", VECTOR_HEADERS, body, expr).hex() == (
        "10796453466efb3e333891136b8a5931269f77e40ead9d437fcee94a02fa833c")
    url = "https://ic0.app?q=hello+world&name=foo&name=bar&color=purple"
    assert rv.request_hash("POST", url, VECTOR_HEADERS, body, expr).hex() == (
        "3ade1c9054f05bc8bcebd3fd7b884078a6e67c63e5ac4a639fa46a47f5a955c9")
    assert rv.request_hash("POST", url + "#index.html", VECTOR_HEADERS, body, expr).hex().startswith("3ade1c90")
    parsed = rv.parse_expression(VECTOR_CEL)
    assert parsed.no_request_certification and not parsed.response_headers_are_exclusions
    assert parsed.response_headers == ["accept-encoding", "cache-control"]
    assert rv.response_hash(*vector_response(VECTOR_CEL), parsed).hex() == (
        "3393250e3cedc30408dcb7e8963898c3d7549b8a0b76496b82fdfeae99c2ac78")
    exclusions = VECTOR_CEL.replace("certified_response_headers", "response_header_exclusions").replace(
        '"Accept-Encoding", "Cache-Control"', '"Content-Security-Policy"')
    excluding = rv.Expression(no_request_certification=True, response_headers=["accept-encoding", "cache-control"])
    assert rv.response_hash(*vector_response(exclusions), excluding).hex() == (
        "a2ffb50ef8971650c2fb46c0a2788b7d5ac5a027d635175e8e06b419ce6c4cda")
    fields = rv.parse_certificate_header(vector_response(VECTOR_CEL)[1][0][1])
    assert fields == {"certificate": b"Hello Certificate!", "tree": b"Hello Tree!"}
    for bad in ("default_certification(ValidationArgs{})", "default_certification(ValidationArgs{no_certification:"
                "Empty{}, certification: Certification{}})", "default_certification(x)", "rm -rf /", ""):
        with pytest.raises(rv.VerificationError):
            rv.parse_expression(bad)


@pytest.fixture(scope="module")
def env(wasms: dict[str, bytes]) -> Iterator[tuple[Replica, Site, HttpGateway]]:
    replica = Replica()
    cid = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(cid, wasms["web"], candid.encode([], []), sender=ALICE)
    site = Site(replica, cid)
    yield replica, site, HttpGateway(replica, allow_raw=True)
    replica.close()


def host(site: Site, raw: bool = False) -> str:
    return f"{site.cid}.{'raw.' if raw else ''}localhost:4943"


def certified_page(site: Site, url: str, body: bytes, *, served_body: bytes | None = None, status: int = 200,
                   served_status: int | None = None, served_type: str | None = None,
                   expr_path: list[str] | None = None) -> None:
    """Certify (GET url, accept: text/html, 200, content-type text/html, body) with FULL and register a route that
    serves the possibly tampered `served_*` response."""
    path = url.split("?")[0]
    segments = path.split("/")[1:]
    certified_path = ["http_expr", *segments, "<$>"]
    query = url.partition("?")[2]
    lang = "&".join(p for p in query.split("&") if p.split("=")[0] == "lang")
    headers = {"content-type": "text/html", "IC-CertificateExpression": FULL}
    request = req_hash("GET", {"accept": "text/html"}, lang if "?" in url else None)
    response = resp_hash(status, headers, body)
    site.put([p.encode() for p in certified_path] + [sha(FULL.encode()), request, response])
    site.certify()
    served = [("content-type", served_type or "text/html"), ("x-uncertified", "1"), ("IC-CertificateExpression", FULL)]
    site.route(url, status=served_status or status, headers=served,
               body=served_body if served_body is not None else body,
               cert_rest=site.v2_rest(expr_path or certified_path))


def get(gw: HttpGateway, site: Site, url: str, *, raw: bool = False, body: bytes = b"",
        method: str = "GET") -> tuple[int, list[tuple[str, str]], bytes]:
    return gw.handle(method, host(site, raw), url, [("accept", "text/html"), ("host", host(site, raw))], body)


def test_certified_v2_response_is_served(env: Any) -> None:
    _, site, gw = env
    certified_page(site, "/hello?lang=en&x=1", b"<h1>hello</h1>")
    status, headers, body = get(gw, site, "/hello?lang=en&x=1")
    assert (status, body) == (200, b"<h1>hello</h1>"), body
    assert ("content-type", "text/html") in headers
    # an uncertified query parameter may change; a certified one may not
    certified_page(site, "/hello?lang=en&x=2", b"<h1>hello</h1>")
    assert get(gw, site, "/hello?lang=en&x=2")[0] == 200


@pytest.mark.parametrize("tamper", ["body", "status", "header", "expr_path", "not_most_specific"])
def test_tampered_responses_are_refused(env: Any, tamper: str) -> None:
    _, site, gw = env
    url = f"/t/{tamper}"
    cases: dict[str, dict[str, Any]] = {
        "body": {"served_body": b"evil"}, "status": {"served_status": 302},
        "header": {"served_type": "application/javascript"},
        "expr_path": {"expr_path": ["http_expr", "t", "other", "<$>"]},
        "not_most_specific": {"expr_path": ["http_expr", "t", "<*>"]},
    }
    kwargs = cases[tamper]
    if tamper == "not_most_specific":  # the wildcard is certified too, but the exact path exists
        site.put([b"http_expr", b"t", b"<*>", sha(NO_CERT.encode())])
    certified_page(site, url, b"good", **kwargs)
    status, _, body = get(gw, site, url)
    assert status == 503, body
    assert b"response verification failed" in body
    # the raw host serves the same response without verification
    assert get(gw, site, url, raw=True)[0] in (200, 302)


def test_stale_and_forged_certificates_are_refused(env: Any) -> None:
    replica, site, gw = env
    certified_page(site, "/stale", b"old news")
    cert = candid.decode(replica.query_call(site.cid, "certificate", candid.encode([], [])), [Opt(BLOB)])[0][0]
    assert get(gw, site, "/stale")[0] == 200
    replica.advance_time(10 * 60 * 1_000_000_000)
    rest = site.v2_rest(["http_expr", "stale", "<$>"])
    headers = [("content-type", "text/html"), ("IC-CertificateExpression", FULL)]
    site.route("/stale", headers=headers, body=b"old news", cert_rest=rest, fixed_cert=cert)
    status, _, body = get(gw, site, "/stale")
    assert status == 503 and b"stale" in body, body
    forged = bytearray(cert)
    forged[-5] ^= 1  # inside the signature (the last field of the CBOR map)
    site.route("/stale", headers=headers, body=b"old news", cert_rest=rest, fixed_cert=bytes(forged))
    status, _, body = get(gw, site, "/stale")
    assert status == 503 and b"signature does not verify" in body, body
    site.route("/stale", headers=headers, body=b"old news")  # no IC-Certificate at all
    status, _, body = get(gw, site, "/stale")
    assert status == 503 and b"no IC-Certificate" in body


def test_no_certification_and_no_request_certification(env: Any) -> None:
    _, site, gw = env
    site.put([b"http_expr", b"dyn", b"<*>", sha(NO_CERT.encode())])
    headers = {"x-anything": "yes", "IC-CertificateExpression": NO_REQUEST}
    site.put([b"http_expr", b"any", b"<$>", sha(NO_REQUEST.encode()), b"", resp_hash(201, headers, b"same")])
    site.certify()
    site.route("/dyn/whatever", body=b"dynamic", headers=[("IC-CertificateExpression", NO_CERT)],
               cert_rest=site.v2_rest(["http_expr", "dyn", "<*>"]))
    assert get(gw, site, "/dyn/whatever")[2] == b"dynamic"
    site.route("/any", status=201, body=b"same", headers=list(headers.items()),
               cert_rest=site.v2_rest(["http_expr", "any", "<$>"]))
    assert get(gw, site, "/any", method="POST")[:3:2] == (201, b"same")


def test_upgrade_to_update(env: Any) -> None:
    replica, site, gw = env
    site.route("/counter", upgrade=True)
    before = candid.decode(replica.query_call(site.cid, "count", candid.encode([], [])))[0]
    status, headers, body = get(gw, site, "/counter", method="POST")
    assert status == 200 and ("x-method", "POST") in headers
    after = candid.decode(replica.query_call(site.cid, "count", candid.encode([], [])))[0]
    assert after == before + 1 and body == str(after % 10).encode()


def test_streaming_three_chunks_certified(env: Any) -> None:
    _, site, gw = env
    chunks = [b"first|", b"second|", b"third"]
    whole = b"head|" + b"".join(chunks)
    headers = {"IC-CertificateExpression": NO_REQUEST}
    site.put([b"http_expr", b"big", b"<$>", sha(NO_REQUEST.encode()), b"", resp_hash(200, headers, whole)])
    site.certify()
    site.route("/big", body=b"head|", chunks=chunks, headers=list(headers.items()),
               cert_rest=site.v2_rest(["http_expr", "big", "<$>"]))
    status, _, body = get(gw, site, "/big")
    assert (status, body) == (200, whole)
    site.route("/big", body=b"head|", chunks=[b"first|", b"evil|", b"third"], headers=list(headers.items()),
               cert_rest=site.v2_rest(["http_expr", "big", "<$>"]))
    status, _, body = get(gw, site, "/big")
    assert status == 503, body  # a tampered chunk is never passed on


def test_wildcards_and_the_root(env: Any) -> None:
    """An SPA: `/` and every path under it certified by the root wildcard; a more specific exact path wins."""
    _, site, gw = env
    headers = {"IC-CertificateExpression": NO_REQUEST}
    site.put([b"http_expr", b"", b"<*>", sha(NO_REQUEST.encode()), b"", resp_hash(200, headers, b"app")])
    site.put([b"http_expr", b"big", b"<$>", sha(NO_CERT.encode())])
    site.certify()
    for url in ("/", "/deep/link/x", "/caf%C3%A9"):
        site.route(url, body=b"app", headers=list(headers.items()),
                   cert_rest=site.v2_rest(["http_expr", "", "<*>"]))
        assert get(gw, site, url)[:3:2] == (200, b"app"), url
    site.route("/big", body=b"app", headers=list(headers.items()), cert_rest=site.v2_rest(["http_expr", "", "<*>"]))
    status, _, body = get(gw, site, "/big")  # /big has its own exact certification
    assert status == 503 and b"not the most specific" in body


def test_legacy_v1_http_assets(env: Any) -> None:
    replica, site, gw = env
    page = b"<html>legacy</html>"
    site.put([b"http_assets", b"/legacy.html"], sha(page))
    site.put([b"http_assets", b"/index.html"], sha(b"index"))
    site.certify()
    tree = cbor2.dumps(hash_tree.to_cbor(site.tree()))
    zipped = gzip.compress(page)
    site.route("/legacy.html", body=zipped, headers=[("content-encoding", "gzip")], cert_rest=f"tree=:{b64(tree)}:")
    assert get(gw, site, "/legacy.html")[2] == zipped
    site.route("/spa/route", body=b"index", cert_rest=f"tree=:{b64(tree)}:")  # falls back to /index.html
    assert get(gw, site, "/spa/route")[:3:2] == (200, b"index")
    site.route("/legacy.html", body=gzip.compress(b"other"), headers=[("content-encoding", "gzip")],
               cert_rest=f"tree=:{b64(tree)}:")
    assert get(gw, site, "/legacy.html")[0] == 503
    # a canister that declares v2 support may not be downgraded to v1
    module = replica.canisters[site.cid.raw].module
    module.public_metadata["supported_certificate_versions"] = b"1,2"
    try:
        status, _, body = get(gw, site, "/spa/route")
        assert status == 503 and b"supported_certificate_versions" in body
    finally:
        del module.public_metadata["supported_certificate_versions"]


def test_raw_host_and_canister_id_query(env: Any) -> None:
    replica, site, gw = env
    site.route("/plain", body=b"uncertified")
    assert get(gw, site, "/plain")[0] == 503
    assert get(gw, site, "/plain", raw=True)[:3:2] == (200, b"uncertified")
    url = f"/plain?canisterId={site.cid}"
    site.route(url, body=b"by query")
    assert gw.handle("GET", "raw.localhost:4943", url, [], b"")[:3:2] == (200, b"by query")
    assert gw.handle("GET", "localhost:4943", url, [], b"")[0] == 503
    strict = HttpGateway(replica, allow_raw=False)
    assert strict.handle("GET", host(site, raw=True), "/plain", [], b"")[0] == 403
    assert HttpGateway(replica, verify=False).handle("GET", host(site), "/plain", [], b"")[2] == b"uncertified"


def test_errors(env: Any, wasms: dict[str, bytes]) -> None:
    replica, site, gw = env
    missing = "rrkah-fqaaa-aaaaa-aaaaq-cai"
    status, _, body = gw.handle("GET", f"{missing}.localhost", "/", [], b"")
    assert status in (400, 404) and missing.encode() in body
    status, _, body = gw.handle("GET", "localhost", "/", [], b"")
    assert status == 400 and b"canisterId" in body
    assert gw.handle("GET", "localhost", "/?canisterId=nonsense", [], b"")[0] == 400
    counter = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(counter, wasms["counter"], candid.encode([candid.NAT], [0]), sender=ALICE)
    status, _, body = gw.handle("GET", f"{counter}.localhost", "/", [], b"")
    assert status == 502 and b"http_request" in body, body
    status, _, body = get(gw, site, "/", body=b"x" * (MAX_REQUEST_BODY + 1), method="POST")
    assert status == 413
    assert gw.handle("GET", host(site), "/", [("bad name", "v")], b"")[0] == 400
    assert gw.handle("GET", host(site), "/", [("x", "a\r\nb")], b"")[0] == 400
    assert gw.handle("get me", host(site), "/", [], b"")[0] == 400
    site.route("/badheader", headers=[("x", "a\nb")])
    assert get(gw, site, "/badheader", raw=True)[0] == 502


def test_serve_over_a_socket(env: Any) -> None:
    """`http_gateway.serve`, the function the localnet's server hands requests to, behind a plain stdlib server."""
    replica, site, _ = env
    site.route("/plain", body=b"uncertified", headers=[("content-type", "text/plain"), ("content-length", "999")])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            serve(self, replica)

        do_POST = do_HEAD = do_GET  # noqa: N815

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with httpx.Client(timeout=30) as client:
            r = client.get(f"{base}/plain", headers={"Host": f"{site.cid}.raw.localhost"})
            assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"uncertified", "11")
            r = client.get(f"{base}/plain", headers={"Host": f"{site.cid}.localhost"})
            assert r.status_code == 503 and b"response verification failed" in r.content
            r = client.head(f"{base}/plain", headers={"Host": f"{site.cid}.raw.localhost"})
            assert r.status_code == 200 and r.content == b""
            r = client.post(f"{base}/x", content=b"x" * (MAX_REQUEST_BODY + 1),
                            headers={"Host": f"{site.cid}.localhost"})
            assert r.status_code == 413
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_verify_survives_garbage(env: Any) -> None:
    """Mutated certificate headers, expressions and trees fail with VerificationError, never anything else."""
    replica, site, _ = env
    certified_page(site, "/fuzz", b"fuzz")
    status, headers, body = get(HttpGateway(replica), site, "/fuzz", raw=True)
    args = {"canister_id": site.cid.raw, "root_public_key": replica.keys.root_public_key,
            "now_ns": replica.get_time(), "method": "GET", "url": "/fuzz",
            "request_headers": [("accept", "text/html")], "request_body": b"", "status": status, "body": body}
    assert rv.verify(headers=headers, **args).version == 2
    rng = random.Random(7)
    refused = 0
    for i in range(300):
        mutated = list(headers)
        j = rng.randrange(len(mutated))
        name, value = mutated[j]
        if i % 3 == 0 and "," in value:  # decode a field, damage its bytes, encode it again
            parts = value.split(", ")
            k = rng.randrange(len(parts))
            key, _, raw = parts[k].partition("=")
            if raw.startswith(":"):
                data = bytearray(base64.b64decode(raw[1:-1]))
                if data:
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
                    cut = bytes(data[: rng.randrange(len(data) + 1)]) if i % 2 else bytes(data)
                    parts[k] = f"{key}=:{b64(cut)}:"
            value = ", ".join(parts)
        else:
            pos = rng.randrange(len(value) + 1)
            value = value[:pos] + rng.choice(["", ",", "=", ":", "{", "]", '"', "x", " "]) + value[pos + 1:]
        mutated[j] = (name, value)
        if mutated == headers:
            continue
        try:
            rv.verify(headers=mutated, **args)
        except rv.VerificationError:
            refused += 1
        else:  # only a change to the uncertified header verifies
            assert name == "x-uncertified", (name, value)
    assert refused > 150


def test_through_the_localnet_server(wasms: dict[str, bytes]) -> None:
    """The hook in `http_server`: every request that is not `/api/...` reaches the gateway."""
    replica = Replica()
    cid = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(cid, wasms["web"], candid.encode([], []), sender=ALICE)
    server = IcHttpServer(replica).start()
    try:
        site = Site(replica, cid)
        certified_page(site, "/hello", b"<h1>hello</h1>")
        site.route(f"/plain?canisterId={cid}", body=b"by query")
        with httpx.Client(timeout=30) as client:
            r = client.get(f"{server.url}/hello", headers={"Host": f"{cid}.localhost", "accept": "text/html"})
            assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"<h1>hello</h1>", "text/html")
            r = client.get(f"{server.url}/hello", headers={"Host": f"{cid}.localhost", "accept": "*/*"})
            assert r.status_code == 503  # the certified request header differs
            r = client.get(f"{server.url}/plain", params={"canisterId": str(cid)}, headers={"Host": "raw.localhost"})
            assert (r.status_code, r.content) == (200, b"by query")
            r = client.post(f"{server.url}/hello", content=b"x" * (MAX_REQUEST_BODY + 1),
                            headers={"Host": f"{cid}.localhost"})
            assert r.status_code == 413
            assert client.get(f"{server.url}/api/v2/status").status_code == 200  # the IC interface is untouched
            assert client.post(f"{server.url}/api/v9/nothing", content=b"").status_code == 404
    finally:
        server.stop()
        replica.close()
