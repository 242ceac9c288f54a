"""Is this file a wasm module? Checked before anything is created or uploaded (a `.did` or a log is not)."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

from prometheus_cli.output import fail

MAGIC = b"\0asm"
GZIP_MAGIC = b"\x1f\x8b"
MAX_BYTES = 64 * 1024 * 1024  # the registry takes at most 64 chunks of 1 MiB


def check(data: bytes, path: Path) -> bytes:
    """`data` if it is a wasm module (`\\0asm`, or the gzip of one) the registry can hold; else a clear error."""
    if not data:
        fail(f"{path} is empty", "point wasm_path at the built .wasm (or .wasm.gz) of your canister")
    if len(data) > MAX_BYTES:
        fail(f"{path} is {len(data)} bytes: the registry holds wasm modules of at most 64 MiB",
             "shrink it (ic-wasm shrink) or gzip it")
    head = data[:4]
    if data[:2] == GZIP_MAGIC:
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(data)).read(4)
        except (OSError, EOFError, zlib.error):
            fail(f"{path} is a damaged gzip file", "rebuild it, or point wasm_path at the .wasm")
        if head != MAGIC:
            fail(f"{path} is gzip, but not of a wasm module", "point wasm_path at the built .wasm (or .wasm.gz)")
    elif head != MAGIC:
        fail(f"{path} is not a wasm module (it does not start with \\0asm)",
             "point wasm_path in prometheus.yml at a .wasm, then run `prometheus build`")
    return data

