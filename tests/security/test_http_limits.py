"""Attack 2: the request body. `Content-Length: -1` made the server read 400 MB past its 5 MiB limit. A body
needs a plain decimal Content-Length of at most 5 MiB, checked before a byte of it is read; chunked bodies,
missing, negative, non-numeric and conflicting lengths are refused with 4xx; a silent client is dropped."""

from __future__ import annotations

import socket
import time

import pytest

from ic_replica import http_server
from ic_replica.replica import Replica
from testkit.http_helpers import content, envelope, running_server
from tests.conftest import no_args
from tests.security.support import BUDGET_S, raw_post

MIB = 1024 * 1024


@pytest.mark.parametrize(("headers", "body", "expected"), [
    ([("Content-Length", "-1")], b"\xa0", 400),
    ([("Content-Length", "-400000000")], b"\xa0", 400),
    ([("Content-Length", "abc")], b"\xa0", 400),
    ([("Content-Length", "+1")], b"\xa0", 400),
    ([("Content-Length", "1_0")], b"\xa0", 400),
    ([("Content-Length", " 1 0")], b"\xa0", 400),
    ([("Content-Length", "1"), ("Content-Length", "2")], b"\xa0\xa0", 400),
    ([], b"\xa0", 411),
    ([("Transfer-Encoding", "chunked")], b"10000000\r\n" + b"\x00" * 64, 411),
    ([("Content-Length", str(6 * MIB))], b"", 413),  # refused before the body is sent
    ([("Content-Length", str(10**30))], b"", 413),
], ids=["minus-one", "minus-400MB", "text", "plus-sign", "underscore", "inner-space", "two-lengths", "missing",
        "chunked", "6MiB", "10^30"])
def test_bad_lengths_are_refused_at_once_without_reading(served, headers, body, expected) -> None:  # type: ignore[no-untyped-def]
    answer = raw_post(served.server, f"/api/v3/canister/{served.cid}/call", headers, body)
    assert answer.status == expected, answer
    assert answer.seconds < BUDGET_S and answer.text.strip()


def test_a_body_shorter_than_its_length_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    answer = raw_post(served.server, f"/api/v3/canister/{served.cid}/call", [("Content-Length", "100")], b"\xa0",
                      half_close=True)
    assert answer.status == 400 and answer.seconds < BUDGET_S, answer


def test_expect_100_continue_is_answered_before_the_body(served) -> None:  # type: ignore[no-untyped-def]
    """Replies are buffered until a request is answered; the interim `100 Continue` is not (curl sends
    `Expect: 100-continue` for bodies over 1 MB and otherwise waits a second before sending)."""
    host, port = str(served.server.httpd.server_address[0]), int(served.server.httpd.server_address[1])
    with socket.create_connection((host, port), timeout=BUDGET_S) as sock:
        sock.sendall(f"POST /api/v3/canister/{served.cid}/call HTTP/1.1\r\nHost: {host}\r\n"
                     "Content-Type: application/cbor\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")  # a socket timeout if it is held back
        sock.sendall(b"\xa0")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")


def test_a_silent_client_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    assert http_server._Handler.timeout is not None and http_server._Handler.timeout <= 60
    monkeypatch.setattr(http_server._Handler, "timeout", 1)  # the same mechanism, faster
    with running_server(Replica()) as server:
        host, port = server.httpd.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=10) as silent:
            silent.sendall(b"POST /api/v2/canister/aaaaa-aa/call HTTP/1.1\r\nContent-Length: 1000\r\n\r\nab")
            start = time.monotonic()
            assert silent.recv(1024) == b""  # closed by the server, not answered after 1000 bytes
            assert time.monotonic() - start < 5


def test_the_server_answers_normally_after_all_of_that(served) -> None:  # type: ignore[no-untyped-def]
    for headers in ([("Content-Length", "-1")], [("Transfer-Encoding", "chunked")]):
        raw_post(served.server, f"/api/v3/canister/{served.cid}/call", headers, b"\xa0")
    c = content("call", served.cid, "inc", no_args(), served.signer.principal)
    body = envelope(c, served.signer)
    answer = raw_post(served.server, f"/api/v3/canister/{served.cid}/call",
                      [("Content-Length", str(len(body))), ("Content-Type", "application/cbor")], body)
    assert answer.status == 200, answer


def test_idle_connections_beyond_the_cap_get_503_and_the_server_recovers() -> None:
    """Thousands of idle connections used to take a thread each: past the cap each extra one is answered 503
    at once; once the idle ones go, calls are served again."""
    from ic_replica.http_server import IcHttpServer

    assert 16 <= http_server.MAX_CONNECTIONS <= 1024
    server = IcHttpServer(Replica(), max_connections=4).start()
    host, port = server.httpd.server_address[:2]
    idle = [socket.create_connection((str(host), int(port)), timeout=10) for _ in range(4)]
    try:
        time.sleep(0.2)  # the server has accepted them and given each a thread
        for _ in range(20):
            with socket.create_connection((str(host), int(port)), timeout=10) as extra:
                start = time.monotonic()
                assert extra.recv(1024).startswith(b"HTTP/1.1 503")
                assert time.monotonic() - start < BUDGET_S
    finally:
        for s in idle:
            s.close()
    try:
        time.sleep(0.2)  # their threads see the close and end
        with socket.create_connection((str(host), int(port)), timeout=10) as fresh:
            fresh.sendall(b"GET /api/v2/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status_line = fresh.makefile("rb").readline()
            assert status_line.split()[1] == b"200", status_line
    finally:
        server.stop()
