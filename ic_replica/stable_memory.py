"""Stable memory with an undo log, so a trapping message leaves it exactly as it was."""

from __future__ import annotations

PAGE = 64 * 1024
DEFAULT_MAX_PAGES = 64 * 1024 * 16  # 64 GiB, far above what tests use; allocation is lazy


class StableMemory:
    """Pages are accounted eagerly, bytes are allocated lazily (reads past the written end are zeros)."""

    def __init__(self, data: bytes = b"", pages: int = 0, max_pages: int = DEFAULT_MAX_PAGES) -> None:
        self.data = bytearray(data)
        self.pages = pages
        self.max_pages = max_pages
        self._undo: list[tuple[int, bytes, int, int]] | None = None  # (offset, old bytes, old len, old pages)

    @property
    def size_bytes(self) -> int:
        return self.pages * PAGE

    def begin(self) -> None:
        """Start recording changes of one execution."""
        self._undo = []

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        if self._undo:
            for offset, old, old_len, old_pages in reversed(self._undo):
                self.data[offset : offset + len(old)] = old
                del self.data[old_len:]
                self.pages = old_pages
        self._undo = None

    def grow(self, new_pages: int) -> int:
        """Returns the previous size in pages, or -1 if the limit would be exceeded."""
        old = self.pages
        if new_pages < 0 or old + new_pages > self.max_pages:
            return -1
        if self._undo is not None:
            self._undo.append((0, b"", len(self.data), old))
        self.pages = old + new_pages
        return old

    def in_bounds(self, offset: int, size: int) -> bool:
        return offset >= 0 and size >= 0 and offset + size <= self.size_bytes

    def read(self, offset: int, size: int) -> bytes:
        chunk = bytes(self.data[offset : offset + size])
        return chunk + bytes(size - len(chunk)) if len(chunk) < size else chunk

    def write(self, offset: int, payload: bytes) -> None:
        if not payload:
            return
        end = offset + len(payload)
        if self._undo is not None:
            old_len = len(self.data)
            self._undo.append((offset, bytes(self.data[offset:min(end, old_len)]), old_len, self.pages))
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[offset:end] = payload

    def clear(self) -> None:
        self.data = bytearray()
        self.pages = 0
        self._undo = None
