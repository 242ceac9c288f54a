"""HTTPS outcalls (the management canister's `http_request`): a canister reaches a real HTTPS server on the
loopback (a throwaway CA the replica is told to trust), with the limits, reject codes and transform semantics of
the IC's acceptance tests; and, in manual mode, requests answered by the test as PocketIC's mocks answer them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from ic_replica import Replica, candid, http_outcalls
from ic_replica.candid import NAT, TEXT, Tuple, Variant
from ic_replica.errors import Reject, RejectCode
from ic_replica.principal import Principal
from testkit.http_helpers import serve_https_on_loopback
from tests.conftest import ALICE, decode1, no_args

FETCH_RESULT = Variant.of(ok=http_outcalls.RESULT, err=Tuple(TEXT, TEXT))
PLENTY = 30_000_000_000  # cycles: more than any request here costs (2 MB allowed for the response: 20.8 B)
RELEASE = threading.Event()  # the /slow handler waits for this (or its timeout)
HITS: list[str] = []  # every path the server was asked for


class Remote(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the handler's API
        path, _, rest = self.path.partition("?")
        HITS.append(path)
        if path == "/hello":
            self._send(200, b"Hello world!", [("Content-Type", "text/plain"), ("X-Varies", str(id(self)))])
        elif path.startswith("/bytes/"):
            self._send(200, b"x" * int(path.removeprefix("/bytes/")))
        elif path.startswith("/headers/"):
            self._send(200, b"", [(f"X-H{i}", "v") for i in range(int(path.removeprefix("/headers/")))])
        elif path == "/redirect":
            self._send(302, b"", [("Location", "/hello")])
        elif path == "/slow":
            RELEASE.wait(10)
            self._send(200, b"late")
        elif path.startswith("/drip/"):  # one byte every half second: each read is quick, the whole is not
            n = int(path.removeprefix("/drip/"))
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            try:
                for _ in range(n):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
        else:
            self._send(404, b"no such page")

    do_HEAD = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        echo = {"method": "POST", "body": body.decode(), "headers": {k.lower(): v for k, v in self.headers.items()}}
        self._send(200, json.dumps(echo).encode(), [("Content-Type", "application/json")])


@pytest.fixture(scope="module")
def remote() -> Iterator[tuple[str, str]]:
    with serve_https_on_loopback(Remote) as served:
        yield served


@pytest.fixture
def live(wasms: dict[str, bytes], remote: tuple[str, str]) -> Iterator[tuple[Replica, Principal, str]]:
    replica = Replica()
    replica.outcalls.go_live(ca_file=remote[1], timeout_s=2)
    canister = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(canister, wasms["outcall"], no_args(), sender=ALICE)
    try:
        yield replica, canister, remote[0]
    finally:
        replica.close()


def request(url: str, method: str = "get", max_response_bytes: int | None = None, headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
            body: bytes | None = None, transform: tuple[Principal, str, bytes] | None = None) -> dict[str, Any]:
    return {
        "url": url, "max_response_bytes": [] if max_response_bytes is None else [max_response_bytes],
        "method": {method: None}, "headers": [{"name": n, "value": v} for n, v in headers],
        "body": [] if body is None else [body],
        "transform": [] if transform is None else [{"function": (transform[0], transform[1]), "context": transform[2]}],
        "is_replicated": []}


def fetch_arg(arg: dict[str, Any], cycles: int = PLENTY) -> bytes:
    return candid.encode([http_outcalls.ARGS, NAT], [arg, cycles])


def fetch(replica: Replica, canister: Principal, arg: dict[str, Any], cycles: int = PLENTY) -> dict[str, Any]:
    return decode1(replica.update_call(canister, "fetch", fetch_arg(arg, cycles), sender=ALICE),  # type: ignore[no-any-return]
                   FETCH_RESULT)


def header(result: dict[str, Any], name: str) -> str | None:
    return next((h["value"] for h in result["headers"] if h["name"] == name), None)


def test_get_head_and_post_reach_the_server(live: tuple[Replica, Principal, str]) -> None:
    replica, canister, url = live
    got = fetch(replica, canister, request(f"{url}/hello"))["ok"]
    assert (got["status"], got["body"], header(got, "content-type")) == (200, b"Hello world!", "text/plain")
    head = fetch(replica, canister, request(f"{url}/bytes/6666", method="head"))["ok"]
    assert head["body"] == b"" and header(head, "content-length") == "6666"
    posted = fetch(replica, canister, request(f"{url}/echo", method="post", body=b"Hello, world!",
                                              headers=[("Name1", "value1"), ("Content-Type", "text/plain")]))["ok"]
    echo = json.loads(posted["body"])
    assert echo["body"] == "Hello, world!" and echo["headers"]["name1"] == "value1"
    assert "accept-encoding" not in echo["headers"]  # only the canister's headers (and Host, Content-Length)
    redirect = fetch(replica, canister, request(f"{url}/redirect"))["ok"]  # the IC does not follow redirects
    assert redirect["status"] == 302 and header(redirect, "location") == "/hello"


def test_the_transform_runs_as_a_query_called_by_the_management_canister(live: tuple[Replica, Principal, str]) -> None:
    replica, canister, url = live
    stripped = fetch(replica, canister, request(f"{url}/hello", transform=(canister, "transform", b"")))["ok"]
    assert stripped == {"status": 200, "headers": [], "body": b"Hello world!"}
    caller = fetch(replica, canister, request(f"{url}/hello", transform=(canister, "transform", b"caller")))["ok"]
    assert caller["body"] == b"aaaaa-aa"
    echo = fetch(replica, canister, request(f"{url}/hello", transform=(canister, "transform", b"echo:ctx")))["ok"]
    assert echo["body"] == b"echo:ctx"
    trapped = fetch(replica, canister, request(f"{url}/hello", transform=(canister, "transform", b"trap")))
    assert trapped["err"][0] == "canister_error" and "trapped on purpose" in trapped["err"][1]
    too_big = fetch(replica, canister, request(f"{url}/hello", transform=(canister, "transform", b"big")))
    assert too_big["err"][0] == "system_fatal"


def test_requests_the_ic_refuses_are_refused_with_its_reject_codes(live: tuple[Replica, Principal, str],
                                                                    wasms: dict[str, bytes]) -> None:
    replica, canister, url = live
    other = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(other, wasms["outcall"], no_args(), sender=ALICE)
    cases = {
        "http scheme": (request(url.replace("https", "http") + "/hello"), "system_fatal"),
        "non-ASCII URL": (request(f"{url}/안녕"), "system_fatal"),
        "URL over 8192 bytes": (request(f"{url}/" + "x" * 8192), "canister_reject"),
        "max_response_bytes over 2 MB": (request(f"{url}/hello", max_response_bytes=2_000_001), "canister_reject"),
        "65 headers": (request(f"{url}/hello", headers=[(f"n{i}", "v") for i in range(65)]), "canister_reject"),
        "header name over 8 KiB": (request(f"{url}/hello", headers=[("x" * 8193, "v")]), "canister_reject"),
        "headers over 48 KiB": (request(f"{url}/hello", headers=[(f"{i}" + "x" * 8000, "y" * 8000) for i in range(4)]),
                                "canister_reject"),
        "request over 2 MB": (request(f"{url}/echo", method="post", body=b"x" * 2_000_001), "canister_reject"),
        "another canister's transform": (request(f"{url}/hello", transform=(other, "transform", b"")),
                                         "canister_reject"),
        "a transform that does not exist": (request(f"{url}/hello", transform=(canister, "nonExistent", b"")),
                                            "destination_invalid"),
        "response over max_response_bytes": (request(f"{url}/bytes/1000", max_response_bytes=500), "system_fatal"),
        "65 response headers": (request(f"{url}/headers/65"), "system_fatal"),
    }
    for name, (arg, code) in cases.items():
        result = fetch(replica, canister, arg)
        assert "err" in result and result["err"][0] == code, (name, result)


def test_a_request_without_the_ics_price_attached_is_refused(live: tuple[Replica, Principal, str]) -> None:
    """What would fail on the IC fails here; what is attached comes back (this replica charges nothing)."""
    replica, canister, url = live
    arg = request(f"{url}/hello", max_response_bytes=1000, headers=[("Accept", "text/plain")])
    price = http_outcalls.cost(len(f"{url}/hello") + len("Accept") + len("text/plain"), 1000)
    short = fetch(replica, canister, arg, cycles=price - 1)
    assert short["err"][0] == "canister_reject" and f"{price} cycles are required" in short["err"][1]
    before = replica.canisters[canister.raw].cycles
    assert fetch(replica, canister, arg, cycles=price)["ok"]["status"] == 200
    assert replica.canisters[canister.raw].cycles == before


def test_a_server_that_is_down_or_too_slow_is_a_transient_reject(live: tuple[Replica, Principal, str]) -> None:
    replica, canister, url = live
    RELEASE.clear()
    try:
        slow = fetch(replica, canister, request(f"{url}/slow"))
    finally:
        RELEASE.set()
    assert slow["err"][0] == "system_transient" and "Timeout" in slow["err"][1]
    down = fetch(replica, canister, request("https://127.0.0.1:1/nothing-listens"))
    assert down["err"][0] == "system_transient"


def test_a_certificate_the_replica_does_not_trust_is_refused(wasms: dict[str, bytes], remote: tuple[str, str]) -> None:
    with Replica() as replica:
        replica.outcalls.go_live(timeout_s=2)  # the system's CAs only: the test CA is unknown
        canister = replica.create_canister(controllers=[ALICE], sender=ALICE)
        replica.install_code(canister, wasms["outcall"], no_args(), sender=ALICE)
        result = fetch(replica, canister, request(f"{remote[0]}/hello"))
        assert result["err"][0] == "system_transient" and "CERTIFICATE_VERIFY_FAILED" in result["err"][1]


def test_manual_mode_lists_requests_and_delivers_mocked_answers_through_the_transform(wasms: dict[str, bytes]) -> None:
    with Replica() as replica:  # no go_live: as PocketIC without auto progress
        canister = replica.create_canister(controllers=[ALICE], sender=ALICE)
        replica.install_code(canister, wasms["outcall"], no_args(), sender=ALICE)
        arg = request("https://example.com/data", method="post", body=b"q", headers=[("Accept", "text/plain")],
                      transform=(canister, "transform", b""))
        first = replica.submit_call(canister, "fetch", fetch_arg(arg), ALICE)
        second = replica.submit_call(canister, "fetch", fetch_arg(arg), ALICE)
        replica.tick(3)
        pending = sorted(replica.outcalls.pending.values(), key=lambda o: o.request_id)
        assert [(o.url, o.method, o.body, o.headers) for o in pending] == [
            ("https://example.com/data", "POST", b"q", [("Accept", "text/plain")])] * 2
        replica.outcalls.mock(pending[0].request_id, http_outcalls.HttpResult(201, [("x-dropped", "1")], b"mocked"))
        replica.outcalls.mock(pending[1].request_id, Reject(RejectCode.SYS_TRANSIENT, "no route"))
        with pytest.raises(KeyError):
            replica.outcalls.mock(10_000, http_outcalls.HttpResult(200, [], b""))
        ok = decode1(replica.await_call(first), FETCH_RESULT)
        assert ok["ok"] == {"status": 201, "headers": [], "body": b"mocked"}
        assert decode1(replica.await_call(second), FETCH_RESULT)["err"] == ("system_transient", "no route")
        assert not replica.outcalls.pending


def test_users_cannot_call_http_request_directly(live: tuple[Replica, Principal, str]) -> None:
    replica, _, url = live
    from ic_replica.errors import CallRejected
    from ic_replica.principal import MANAGEMENT

    with pytest.raises(CallRejected) as refused:
        replica.update_call(MANAGEMENT, "http_request", candid.encode([http_outcalls.ARGS], [request(f"{url}/hello")]),
                            sender=ALICE)
    assert refused.value.code == RejectCode.CANISTER_REJECT



def test_waiting_for_an_outcall_holds_up_no_other_caller(live: tuple[Replica, Principal, str]) -> None:
    """While one call waits for a server that has not answered, another caller's call runs to its end: the
    wait is outside the replica lock. (Were it held, the first request would time out first.)"""
    replica, canister, url = live
    replica.outcalls.timeout_s = 20
    RELEASE.clear()
    first: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: first.update(fetch(replica, canister, request(f"{url}/slow"))))
    waiter.start()
    try:
        assert fetch(replica, canister, request(f"{url}/hello"))["ok"]["body"] == b"Hello world!"
        assert waiter.is_alive()  # still waiting for /slow
    finally:
        RELEASE.set()
        waiter.join(30)
    assert first["ok"]["body"] == b"late"


def test_a_server_that_sends_slowly_is_cut_off_at_the_deadline(live: tuple[Replica, Principal, str]) -> None:
    replica, canister, url = live  # timeout_s=2: each byte comes in time, the whole body does not
    dripped = fetch(replica, canister, request(f"{url}/drip/10"))
    assert dripped["err"][0] == "system_transient" and "Timeout" in dripped["err"][1]


def test_the_transforms_reply_is_measured_as_the_ic_measures_it(live: tuple[Replica, Principal, str]) -> None:
    """The IC compares the transform's Candid reply, record and all, with max_response_bytes: 60 bytes of body
    fit a limit of 150 but not of 100 once encoded (the server's own response fits both)."""
    replica, canister, url = live
    echo = b"echo:" + b"x" * 55
    assert fetch(replica, canister, request(f"{url}/bytes/0", max_response_bytes=150,
                                            transform=(canister, "transform", echo)))["ok"]["body"] == echo
    too_big = fetch(replica, canister, request(f"{url}/bytes/0", max_response_bytes=100,
                                               transform=(canister, "transform", echo)))
    assert too_big["err"][0] == "system_fatal" and "Transformed http response exceeds limit" in too_big["err"][1]


def test_unanswered_requests_time_out_and_answers_are_taken_once(wasms: dict[str, bytes]) -> None:
    """Manual mode, as PocketIC: a request unanswered for a minute of replica time is rejected (so its caller
    can finish and its canister stop); a request is answered once; restarting live mode fetches nothing twice."""
    with Replica() as replica:
        canister = replica.create_canister(controllers=[ALICE], sender=ALICE)
        replica.install_code(canister, wasms["outcall"], no_args(), sender=ALICE)
        arg = request("https://example.com/data")
        late = replica.submit_call(canister, "fetch", fetch_arg(arg), ALICE)
        twice = replica.submit_call(canister, "fetch", fetch_arg(arg), ALICE)
        replica.tick(3)
        pending = replica.outcalls.waiting()
        assert len(pending) == 2
        replica.outcalls.mock(pending[1].request_id, http_outcalls.HttpResult(200, [], b"once"))
        with pytest.raises(KeyError):  # answered already (not delivered yet)
            replica.outcalls.mock(pending[1].request_id, http_outcalls.HttpResult(200, [], b"again"))
        assert [o.request_id for o in replica.outcalls.waiting()] == [pending[0].request_id]
        assert decode1(replica.await_call(twice), FETCH_RESULT)["ok"]["body"] == b"once"
        replica.advance_time(61 * 1_000_000_000)
        replica.tick()
        assert decode1(replica.await_call(late), FETCH_RESULT)["err"] == ("system_transient",
                                                                          "Canister http request timed out")
        with pytest.raises(KeyError):
            replica.outcalls.mock(pending[0].request_id, http_outcalls.HttpResult(200, [], b"too late"))
        replica.stop_canister(canister, sender=ALICE)  # nothing left open: the canister stops


def test_restarting_live_mode_makes_no_request_twice(wasms: dict[str, bytes], remote: tuple[str, str]) -> None:
    with Replica() as replica:
        replica.outcalls.go_live(ca_file=remote[1], timeout_s=20)
        canister = replica.create_canister(controllers=[ALICE], sender=ALICE)
        replica.install_code(canister, wasms["outcall"], no_args(), sender=ALICE)
        RELEASE.clear()
        HITS.clear()
        call = replica.submit_call(canister, "fetch", fetch_arg(request(f"{remote[0]}/slow")), ALICE)
        replica.tick(3)
        replica.outcalls.close()
        replica.outcalls.go_live(ca_file=remote[1], timeout_s=20)  # as PocketIC's stop_progress, auto_progress
        RELEASE.set()
        assert decode1(replica.await_call(call), FETCH_RESULT)["ok"]["body"] == b"late"
        assert HITS.count("/slow") == 1


def test_at_most_3000_requests_wait_at_once(wasms: dict[str, bytes]) -> None:
    with Replica() as replica:
        canister = replica.create_canister(controllers=[ALICE], sender=ALICE)
        replica.install_code(canister, wasms["outcall"], no_args(), sender=ALICE)
        calls = [replica.submit_call(canister, "fetch", fetch_arg(request(f"https://example.com/{i}")), ALICE)
                 for i in range(http_outcalls.MAX_IN_FLIGHT + 1)]
        replica.tick(3)
        assert len(replica.outcalls.pending) == http_outcalls.MAX_IN_FLIGHT
        refused = decode1(replica.await_call(calls[-1]), FETCH_RESULT)["err"]
        assert refused == ("canister_reject", "max number (3000) of http requests in-flight reached.")
