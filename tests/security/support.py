"""Helpers for the hostile-client tests: raw HTTP over a socket (any header, any body, timed), timed posts,
and waiting for an ingress message to finish."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ic_replica.http_server import IcHttpServer
from ic_replica.messages import IngressStatus
from ic_replica.principal import Principal

BUDGET_S = 2.0  # every hostile request must be answered within this


@dataclass
class Answer:
    status: int
    text: str
    body: bytes
    seconds: float


def raw_post(server: IcHttpServer, path: str, headers: list[tuple[str, str]], body: bytes = b"", *,
             half_close: bool = False, timeout: float = 10.0) -> Answer:
    """Send exactly these headers and body on a fresh connection and read one response (status 0 if the
    server closed the connection without answering)."""
    host, port = str(server.httpd.server_address[0]), int(server.httpd.server_address[1])
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        try:
            sock.sendall(head.encode("latin-1") + body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before it takes everything
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return Answer(0, "", b"", time.monotonic() - start)
            data += chunk
        header_block, rest = data.split(b"\r\n\r\n", 1)
        lines = header_block.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(fields.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return Answer(status, rest[:length].decode(errors="replace"), rest[:length], time.monotonic() - start)


def timed_post(client: httpx.Client, url: str, body: bytes) -> Answer:
    start = time.monotonic()
    response = client.post(url, content=body, headers={"Content-Type": "application/cbor"})
    return Answer(response.status_code, response.text, response.content, time.monotonic() - start)


def wait_final(server: IcHttpServer, message_id: bytes, seconds: float = 5.0) -> IngressStatus:
    """The message's status once final (the server's own ticker runs the rounds); fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        status = server.replica.ingress_status(message_id)
        if status is not None and status.final:
            return status
        assert time.monotonic() < deadline, f"message {message_id.hex()} still {status and status.state} " \
                                            f"after {seconds} s"
        time.sleep(0.02)


def counter_value(server: IcHttpServer, cid: Principal) -> Any:
    from ic_replica import candid

    return candid.decode(server.replica.query_call(cid, "get", candid.encode([], [])))[0]
