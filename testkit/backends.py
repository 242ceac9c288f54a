"""The IC backends the integration tests run on: the embedded replica, and real PocketIC when
`POCKET_IC_BIN` is set. Both expose the same small surface, so one test runs on both."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import select
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ic_replica import candid, management
from ic_replica.errors import CallRejected, Reject, RejectCode
from ic_replica.principal import ANONYMOUS, MANAGEMENT, Principal
from ic_replica.replica import Limits, Replica

IDLE_REUSE_S = 10.0  # a kept-alive connection idle longer is replaced (the server drops idle ones after 30 s)
TEST_LIMITS = Limits(update=2_000_000_000, query=2_000_000_000, install=20_000_000_000, inspect=200_000_000)


class EmbeddedBackend:
    """The embedded replica, in process."""

    name = "embedded"

    def __init__(self, state_dir: str | None = None, limits: Limits = TEST_LIMITS) -> None:
        self.replica = Replica(state_dir, limits=limits)

    def __getattr__(self, item: str) -> Any:
        return getattr(self.replica, item)

    @property
    def root_public_key(self) -> bytes:
        """The network's BLS root key (96 bytes), which certificates chain to."""
        return self.replica.keys.root_public_key  # type: ignore[no-any-return]


class PocketIcBackend:
    """Real PocketIC through the `pocket-ic` client; management calls are encoded with our Candid codec."""

    name = "pocketic"

    def __init__(self) -> None:
        from pocket_ic import PocketIC  # type: ignore[import-not-found]

        self.pic = PocketIC()
        # The server is on loopback: without this, `requests` looks up proxies and ~/.netrc in the environment
        # at every request: 0.75 ms of the 1.7 ms a `tick` took.
        self.pic.server.request_client.trust_env = False
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0
        self._lock = threading.Lock()

    def _post(self, endpoint: str, body: dict[str, Any]) -> Any:
        """POST to this instance as the client does (`instance_post`), on one kept-alive connection: the calls
        and ticks the tests make by the thousand. Through `requests` a `tick` took 0.84 ms and 0.63 ms of
        client CPU, through this 0.35 ms and 0.17 ms (the client's own calls stay tested in
        tests/test_pocket_ic_server.py)."""
        data = json.dumps(body).encode()
        with self._lock:  # one request at a time on the one connection
            if self._conn is not None and (time.monotonic() - self._used > IDLE_REUSE_S or _dropped(self._conn)):
                self._conn.close()  # the server may have closed it: never risk resending an update
                self._conn = None
            if self._conn is None:
                url = urlsplit(self.pic.server.url)
                self._conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)
            try:
                self._conn.request("POST", f"/instances/{self.pic.instance_id}/{endpoint}", data,
                                   {"Content-Type": "application/json"})
                response = self._conn.getresponse()
                reply = response.read()
            except BaseException:
                self._conn.close()
                self._conn = None
                raise
            self._used = time.monotonic()
        if response.status not in (200, 201, 202):
            raise ConnectionError(f"PocketIC server returned status code {response.status}: "
                                  f"{json.loads(reply).get('message')}")
        return json.loads(reply)

    def _call(self, update: bool, canister: Principal | bytes | None, method: str, arg: bytes,
              sender: Principal | bytes, effective: Principal | None = None) -> bytes:
        raw = (canister.raw if isinstance(canister, Principal) else canister) or b""
        body = _message(sender.raw if isinstance(sender, Principal) else sender, raw, method, arg,
                        effective.raw if update and effective is not None else None)
        try:
            # An update is one request, as PocketIC's Rust, JS and Go clients make it; this Python client's own
            # `update_call` (submit, tick, poll: three) is tested in tests/test_pocket_ic_server.py.
            reply = self._post("update/execute_ingress_message" if update else "read/query", body)
            out = self.pic._get_ok_data(reply)
        except ValueError as exc:
            raise self._reject(exc) from exc
        return bytes(out) if not isinstance(out, bytes) else out

    @staticmethod
    def _reject(exc: ValueError) -> Exception:
        """The client's rejection text as our CallRejected (or the error itself when it is something else)."""
        match = re.search(r"reject code (\w+), reject message (.*), error code (\w+)", str(exc), re.S)
        if not match:
            return exc
        code = match.group(1)
        code_num = int(code) if code.isdigit() else {
            "SysFatal": 1, "SysTransient": 2, "DestinationInvalid": 3, "CanisterReject": 4,
            "CanisterError": 5, "SysUnknown": 6}.get(code, 6)
        return CallRejected(Reject(RejectCode(code_num), match.group(2), match.group(3)))

    def update_call(self, canister_id: Principal, method: str, arg: bytes = b"",
                    sender: Principal = ANONYMOUS) -> bytes:
        return self._call(True, canister_id, method, arg, sender)

    def submit_call(self, canister_id: Principal, method: str, arg: bytes = b"",
                    sender: Principal = ANONYMOUS) -> Any:
        """Queue an ingress message without executing it (the next `tick` runs everything queued together)."""
        body = _message(sender.raw, canister_id.raw, method, arg, canister_id.raw)
        return self.pic._get_ok(self._post("update/submit_ingress_message", body))

    def await_call(self, message_id: Any, rounds: int = 100) -> bytes:
        """The reply of a submitted message, ticking until it is done (CallRejected if it was rejected)."""
        for _ in range(rounds):
            status = self._post("read/ingress_status", {"raw_message_id": message_id, "raw_caller": None})
            if status:
                try:
                    data = self.pic._get_ok_data(status)
                except ValueError as exc:
                    raise self._reject(exc) from exc
                return bytes(data)
            self._post("update/tick", {})
        raise TimeoutError(f"the message did not complete within {rounds} rounds")

    @property
    def root_public_key(self) -> bytes:
        """The instance's BLS root key (96 bytes: the end of its DER form)."""
        import cbor2
        import httpx

        status = cbor2.loads(httpx.get(f"{self.http_url}/api/v2/status", timeout=30).content)
        return bytes(status.value["root_key"] if hasattr(status, "value") else status["root_key"])[-96:]

    @property
    def http_url(self) -> str:
        """The instance's IC HTTP interface (agents use it as their network URL)."""
        return f"{self.pic.server.url}/instances/{self.pic.instance_id}"

    def query_call(self, canister_id: Principal, method: str, arg: bytes = b"",
                   sender: Principal = ANONYMOUS) -> bytes:
        return self._call(False, canister_id, method, arg, sender)

    def _mgmt(self, method: str, t: candid.Type, value: dict[str, Any], sender: Principal,
              result: list[candid.Type], effective: Principal | None) -> list[Any]:
        reply = self._call(True, MANAGEMENT, method, candid.encode([t], [value]), sender, effective)
        return candid.decode(reply, result)

    def create_canister(self, controllers: list[Principal] | None = None, cycles: int = 100_000_000_000_000,
                        sender: Principal = ANONYMOUS, specified_id: Principal | None = None) -> Principal:
        settings = {"controllers": [list(controllers)]} if controllers else {}
        out = self._mgmt("provisional_create_canister_with_cycles", management.PROVISIONAL_CREATE_ARGS,
                         {"amount": [cycles], "settings": [settings] if settings else [], "specified_id": []},
                         sender, [management.CREATE_RESULT], None)
        return out[0]["canister_id"]  # type: ignore[no-any-return]

    def install_code(self, canister_id: Principal, wasm: bytes, arg: bytes = b"", *, mode: str = "install",
                     sender: Principal = ANONYMOUS, skip_pre_upgrade: bool | None = None,
                     wasm_memory_persistence: str | None = None) -> None:
        self._mgmt("install_code", management.INSTALL_CODE_ARGS,
                   {"mode": management.install_mode(mode, skip_pre_upgrade, wasm_memory_persistence),
                    "canister_id": canister_id, "wasm_module": wasm, "arg": arg,
                    "sender_canister_version": []}, sender, [], canister_id)

    def upgrade_canister(self, canister_id: Principal, wasm: bytes, arg: bytes = b"", *,
                         sender: Principal = ANONYMOUS, skip_pre_upgrade: bool | None = None,
                         wasm_memory_persistence: str | None = "keep") -> None:
        self.install_code(canister_id, wasm, arg, mode="upgrade", sender=sender, skip_pre_upgrade=skip_pre_upgrade,
                          wasm_memory_persistence=wasm_memory_persistence)

    def reinstall_code(self, canister_id: Principal, wasm: bytes, arg: bytes = b"", *,
                       sender: Principal = ANONYMOUS) -> None:
        self.install_code(canister_id, wasm, arg, mode="reinstall", sender=sender)

    def _op(self, method: str, canister_id: Principal, sender: Principal, result: list[candid.Type]) -> list[Any]:
        return self._mgmt(method, management.CANISTER_ID_ARGS, {"canister_id": canister_id}, sender, result,
                          canister_id)

    def canister_status(self, canister_id: Principal, sender: Principal = ANONYMOUS) -> dict[str, Any]:
        return self._op("canister_status", canister_id, sender, [management.CANISTER_STATUS_RESULT])[0]  # type: ignore[no-any-return]

    def list_canister_snapshots(self, canister_id: Principal, sender: Principal = ANONYMOUS) -> list[dict[str, Any]]:
        return self._op("list_canister_snapshots", canister_id, sender, [candid.Vec(management.SNAPSHOT)])[0]  # type: ignore[no-any-return]

    def start_canister(self, canister_id: Principal, sender: Principal = ANONYMOUS) -> None:
        self._op("start_canister", canister_id, sender, [])

    def stop_canister(self, canister_id: Principal, sender: Principal = ANONYMOUS) -> None:
        self._op("stop_canister", canister_id, sender, [])

    def delete_canister(self, canister_id: Principal, sender: Principal = ANONYMOUS) -> None:
        self._op("delete_canister", canister_id, sender, [])

    def uninstall_code(self, canister_id: Principal, sender: Principal = ANONYMOUS) -> None:
        self._mgmt("uninstall_code", management.UNINSTALL_ARGS, {"canister_id": canister_id,
                                                                 "sender_canister_version": []}, sender, [],
                   canister_id)

    def set_controllers(self, canister_id: Principal, controllers: list[Principal],
                        sender: Principal = ANONYMOUS) -> None:
        self._mgmt("update_settings", management.UPDATE_SETTINGS_ARGS,
                   {"canister_id": canister_id, "settings": {"controllers": [list(controllers)]},
                    "sender_canister_version": []}, sender, [], canister_id)

    def tick(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            self._post("update/tick", {})

    def advance_time(self, nanos: int) -> None:
        """Move time and run a round, so queries see it: PocketIC's `set_time` is uncertified until a round."""
        self.pic.advance_time(nanos)
        self.pic.tick()

    def get_time(self) -> int:
        return int(self.pic.get_time()["nanos_since_epoch"])


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether the server closed this kept-alive connection (its socket reads as ready: end of file), as
    urllib3 checks before it reuses one. A socket http.client already closed is reopened by the next request."""
    return conn.sock is not None and bool(select.select([conn.sock], [], [], 0)[0])


def _message(sender: bytes, canister: bytes, method: str, arg: bytes, effective: bytes | None) -> dict[str, Any]:
    """A canister call as PocketIC's REST API takes it (`RawCanisterCall`)."""
    return {"sender": _b64(sender),
            "effective_principal": {"CanisterId": _b64(effective)} if effective is not None else "None",
            "canister_id": _b64(canister), "method": method, "payload": _b64(arg)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def available_backends() -> list[str]:
    return ["embedded", "pocketic"] if os.environ.get("POCKET_IC_BIN") else ["embedded"]


def make_backend(name: str) -> Any:
    return EmbeddedBackend() if name == "embedded" else PocketIcBackend()
