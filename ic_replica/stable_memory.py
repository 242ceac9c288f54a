"""Stable memory with an undo log, so a trapping message leaves it exactly as it was.

Bytes live in 64 KiB chunks allocated when first written: a canister that grows its stable memory to many
GiB and writes a few bytes at the end costs the host those few chunks, not the whole range.
"""

from __future__ import annotations

PAGE = 64 * 1024
CHUNK = PAGE
DEFAULT_MAX_PAGES = 64 * 1024 * 16  # 64 GiB, far above what tests use; allocation is lazy


class StableMemory:
    """Pages are accounted eagerly, bytes are allocated lazily (never-written bytes read as zeros)."""

    def __init__(self, data: bytes = b"", pages: int = 0, max_pages: int = DEFAULT_MAX_PAGES) -> None:
        self.chunks: dict[int, bytearray] = {}
        for start in range(0, len(data), CHUNK):
            piece = data[start : start + CHUNK]
            if piece.count(0) != len(piece):
                self.chunks[start // CHUNK] = bytearray(piece.ljust(CHUNK, b"\x00"))
        self.pages = pages
        self.max_pages = max_pages
        self._undo: dict[int, bytes | None] | None = None  # chunk -> its bytes before the execution (None: absent)
        self._undo_pages = 0

    @property
    def size_bytes(self) -> int:
        return self.pages * PAGE

    @property
    def data(self) -> bytes:
        """The contents up to the end of the last chunk ever written (what a checkpoint stores)."""
        if not self.chunks:
            return b""
        out = bytearray((max(self.chunks) + 1) * CHUNK)
        for index, chunk in self.chunks.items():
            out[index * CHUNK : (index + 1) * CHUNK] = chunk
        return bytes(out)

    def begin(self) -> None:
        """Start recording changes of one execution."""
        self._undo = {}
        self._undo_pages = self.pages

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        if self._undo is not None:
            for index, old in self._undo.items():
                if old is None:
                    self.chunks.pop(index, None)
                else:
                    self.chunks[index] = bytearray(old)
            self.pages = self._undo_pages
        self._undo = None

    def grow(self, new_pages: int) -> int:
        """Returns the previous size in pages, or -1 if the limit would be exceeded."""
        old = self.pages
        if new_pages < 0 or old + new_pages > self.max_pages:
            return -1
        self.pages = old + new_pages
        return old

    def in_bounds(self, offset: int, size: int) -> bool:
        return offset >= 0 and size >= 0 and offset + size <= self.size_bytes

    def read(self, offset: int, size: int) -> bytes:
        out = bytearray(size)
        end = offset + size
        for index in range(offset // CHUNK, (end + CHUNK - 1) // CHUNK) if size else ():
            chunk = self.chunks.get(index)
            if chunk is None:
                continue
            lo, hi = max(offset, index * CHUNK), min(end, (index + 1) * CHUNK)
            out[lo - offset : hi - offset] = chunk[lo - index * CHUNK : hi - index * CHUNK]
        return bytes(out)

    def write(self, offset: int, payload: bytes) -> None:
        end = offset + len(payload)
        for index in range(offset // CHUNK, (end + CHUNK - 1) // CHUNK) if payload else ():
            chunk = self.chunks.get(index)
            if self._undo is not None and index not in self._undo:
                self._undo[index] = bytes(chunk) if chunk is not None else None
            if chunk is None:
                chunk = self.chunks[index] = bytearray(CHUNK)
            lo, hi = max(offset, index * CHUNK), min(end, (index + 1) * CHUNK)
            chunk[lo - index * CHUNK : hi - index * CHUNK] = payload[lo - offset : hi - offset]

    def clear(self) -> None:
        self.chunks = {}
        self.pages = 0
        self._undo = None
