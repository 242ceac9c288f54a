"""Which pages of a wasm memory were written: the kernel tracks it, so undoing a message costs what it wrote.

A canister's message must be undone when it traps, and a query always is. Copying the whole heap before every
message (what `runtime.RollbackBuffer` does) costs O(heap) per message: half a millisecond for a fresh Motoko
canister, ten for a 100 MiB one. The IC tracks dirty pages instead; so do we, with Linux's userfaultfd in
asynchronous write-protect mode (`UFFD_FEATURE_WP_ASYNC`, Linux 6.7+): the kernel marks a page written on its
first write after we protect it, with no fault handler, and the `PAGEMAP_SCAN` ioctl lists the written pages
and protects them again in one call (about 10 µs for a 5 MiB heap).

`Shadow` keeps a copy of one memory as of its last `sync` and brings it up to date by copying only the pages
written since, and `restore` puts back only those. Where the kernel lacks these features (older kernels, no
userfaultfd for this user, `IC_REPLICA_DIRTY_PAGES=0`) `tracker()` is None and the runtime copies whole heaps.
`IC_REPLICA_DIRTY_PAGES=check` compares every synced copy with the memory in full (slow; to test the kernel).
The replica's own code, not a library: nothing on PyPI does this, and it is 150 lines of ctypes.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import threading

_log = logging.getLogger(__name__)

PAGE = 4096
_NR_USERFAULTFD = {"x86_64": 323, "aarch64": 282}
_UFFD_USER_MODE_ONLY = 1
_UFFD_API = 0xAA
_UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
_UFFD_FEATURE_WP_ASYNC = 1 << 15
_UFFDIO_API = 0xC018AA3F  # _IOWR(0xAA, 0x3F, struct uffdio_api)
_UFFDIO_REGISTER = 0xC020AA00  # _IOWR(0xAA, 0x00, struct uffdio_register)
_UFFDIO_REGISTER_MODE_WP = 1 << 1
_PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg)
_PM_SCAN_WP_MATCHING = 1 << 0
_PM_SCAN_CHECK_WPASYNC = 1 << 1
_PAGE_IS_WRITTEN = 1 << 1
_MADV_NOHUGEPAGE = 15  # a huge page would be reported (and copied) whole
_MADV_POPULATE_WRITE = 23
_MAX_REGIONS = 1024  # ranges returned per scan; a scan that fills them is continued from where it stopped


class _UffdioApi(ctypes.Structure):
    _fields_ = [("api", ctypes.c_uint64), ("features", ctypes.c_uint64), ("ioctls", ctypes.c_uint64)]


class _UffdioRegister(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("ioctls", ctypes.c_uint64)]


class _PmScanArg(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages", "category_inverted",
        "category_mask", "category_anyof_mask", "return_mask")]


class _PageRegion(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.memcmp.restype = ctypes.c_int
_BLOCK = 64 * 1024
_ZERO_BLOCK = (ctypes.c_ubyte * _BLOCK)()
_ZEROS = ctypes.addressof(_ZERO_BLOCK)


class DirtyPageTracker:
    """One userfaultfd and /proc/self/pagemap for the process; any number of memories registered with it."""

    def __init__(self, uffd: int, pagemap: int) -> None:
        self.uffd, self.pagemap = uffd, pagemap
        self._regions = threading.local()  # each thread its own result buffer

    def register(self, base: int, size: int) -> int:
        """Track writes from `base` to the end of the memory's reservation (so growing stays tracked); returns
        the end of what is tracked, or 0 if the kernel refused."""
        end = _reservation_end(base, size)
        reg = _UffdioRegister(base, end - base, _UFFDIO_REGISTER_MODE_WP, 0)
        if _libc.ioctl(self.uffd, _UFFDIO_REGISTER, ctypes.byref(reg)) != 0:
            _log.debug("UFFDIO_REGISTER failed: %s", os.strerror(ctypes.get_errno()))
            return 0
        _libc.madvise(base, end - base, _MADV_NOHUGEPAGE)
        return end

    def take(self, base: int, size: int) -> list[tuple[int, int]] | None:
        """Offsets `[start, end)` of the pages written since the last `take` (protecting them again), or None
        if the range is not (wholly) tracked."""
        regions = getattr(self._regions, "vec", None)
        if regions is None:
            regions = self._regions.vec = (_PageRegion * _MAX_REGIONS)()
        out: list[tuple[int, int]] = []
        start, end = base, base + size
        while start < end:
            arg = _PmScanArg(ctypes.sizeof(_PmScanArg), _PM_SCAN_WP_MATCHING | _PM_SCAN_CHECK_WPASYNC, start, end,
                             0, ctypes.addressof(regions), _MAX_REGIONS, 0, 0, _PAGE_IS_WRITTEN, 0, _PAGE_IS_WRITTEN)
            n = _libc.ioctl(self.pagemap, _PAGEMAP_SCAN, ctypes.byref(arg))
            if n < 0:
                return None
            out.extend((regions[i].start - base, regions[i].end - base) for i in range(n))
            if arg.walk_end <= start:
                return None
            start = arg.walk_end
        return out


def _reservation_end(base: int, size: int) -> int:
    """The end of the mapping `base` starts plus the inaccessible reservation right after it (wasmtime maps a
    memory's future growth as PROT_NONE): growth within it stays registered."""
    end = base + size
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split(None, 2)[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= base < hi or (lo == end and perms.startswith("rw")):  # the memory (maybe several mappings)
                end = max(end, hi)
            elif lo == end and perms.startswith("---"):
                return hi
            elif lo > end:
                break
    return end


_CHECK = os.environ.get("IC_REPLICA_DIRTY_PAGES") == "check"
_tracker: DirtyPageTracker | None = None
_probed = False
_probe_lock = threading.Lock()


def tracker() -> DirtyPageTracker | None:
    """The process's tracker, or None where the kernel cannot track writes (checked once, on a scratch map)."""
    global _tracker, _probed
    if _probed:
        return _tracker
    with _probe_lock:
        if not _probed:
            _probed = True
            if os.environ.get("IC_REPLICA_DIRTY_PAGES", "1") != "0":
                _tracker = _probe()
        return _tracker


def _forget_after_fork() -> None:
    """A forked child must not use its parent's tracker: the inherited pagemap descriptor reads (and re-protects)
    the parent's pages, and the child's memories are no longer registered. The child probes its own; each
    runtime sees the tracker changed and starts a new shadow (`WasmRuntime.begin`)."""
    global _tracker, _probed
    if _tracker is not None:
        for fd in (_tracker.uffd, _tracker.pagemap):
            try:
                os.close(fd)
            except OSError:
                pass
    _tracker, _probed = None, False


os.register_at_fork(after_in_child=_forget_after_fork)


def _probe() -> DirtyPageTracker | None:
    nr = _NR_USERFAULTFD.get(os.uname().machine)
    if nr is None:
        return None
    uffd = _libc.syscall(nr, os.O_CLOEXEC | os.O_NONBLOCK | _UFFD_USER_MODE_ONLY)
    if uffd < 0:
        return None
    api = _UffdioApi(_UFFD_API, _UFFD_FEATURE_WP_ASYNC | _UFFD_FEATURE_WP_UNPOPULATED, 0)
    pagemap = -1
    try:
        if _libc.ioctl(uffd, _UFFDIO_API, ctypes.byref(api)) != 0:
            raise OSError("UFFDIO_API")
        pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        candidate = DirtyPageTracker(uffd, pagemap)
        if not _works(candidate):
            raise OSError("PAGEMAP_SCAN")
        return candidate
    except OSError as exc:
        _log.debug("dirty page tracking unavailable (%s): whole heaps are copied", exc)
        os.close(uffd)
        if pagemap >= 0:
            os.close(pagemap)
        return None


def _works(t: DirtyPageTracker) -> bool:
    """Write to one page of a fresh mapping and check that exactly that page is reported, then none."""
    scratch = mmap.mmap(-1, 16 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        base = ctypes.addressof(ctypes.c_char.from_buffer(scratch))
        if not t.register(base, 16 * PAGE):
            return False
        t.take(base, 16 * PAGE)
        scratch[5 * PAGE + 7] = 1
        first, second = t.take(base, 16 * PAGE), t.take(base, 16 * PAGE)
        return first == [(5 * PAGE, 6 * PAGE)] and second == []
    finally:
        scratch.close()


class Shadow:
    """A copy of one memory as of the last `sync`; `sync` and `restore` move only the pages written since."""

    def __init__(self, t: DirtyPageTracker) -> None:
        self.tracker = t
        self.buffer: _Buffer | None = None
        self.base = 0  # the memory's address when last synced (a memory that moved is copied whole again)
        self.tracked_end = 0
        self.size = 0  # bytes of the memory the copy holds

    def sync(self, base: int, size: int) -> bool:
        """Make the copy equal the memory; False if it cannot be tracked (the caller copies whole heaps)."""
        if base != self.base or base + size > self.tracked_end:
            return self._copy_whole(base, size)
        self._reserve(size)
        written = self.tracker.take(base, size)
        if written is None:
            return self._copy_whole(base, size)
        shadow = self.buffer.address  # type: ignore[union-attr]
        for start, end in written:
            ctypes.memmove(shadow + start, base + start, end - start)
        self.size = size
        if _CHECK and ctypes.string_at(shadow, size) != ctypes.string_at(base, size):
            raise AssertionError("dirty page tracking missed a write: the shadow differs from the memory")
        return True

    def restore(self, base: int, size: int) -> bool:
        """Put back the pages written since `sync`; False if the memory grew or moved (rebuild it instead)."""
        if base != self.base or size != self.size:
            return False
        written = self.tracker.take(base, size)
        if written is None:
            return False
        shadow = self.buffer.address  # type: ignore[union-attr]
        for start, end in written:
            ctypes.memmove(base + start, shadow + start, end - start)
        self.tracker.take(base, size)  # our own writes are not changes
        return True

    def adopt(self, base: int, size: int) -> bool:
        """Track the memory at `base`, just filled from this copy (a rebuilt instance), without copying it back;
        False if it cannot be tracked (the caller starts a new copy)."""
        if size != self.size:
            return False
        end = self.tracker.register(base, size)
        if not end or self.tracker.take(base, size) is None:  # the fill itself is not a change
            return False
        self.base, self.tracked_end = base, end
        if _CHECK and size and ctypes.string_at(self.buffer.address, size) != ctypes.string_at(base, size):  # type: ignore[union-attr]
            raise AssertionError("a rebuilt memory differs from the copy it was filled from")
        return True

    def _reserve(self, size: int) -> None:
        """Room for `size` bytes; what lies beyond the copied size is zero, as a memory's fresh pages are."""
        if self.buffer is not None and self.buffer.size >= size:
            return
        grown = _Buffer(max(size, 2 * (self.buffer.size if self.buffer is not None else 0)))
        if self.buffer is not None and self.size:
            copy_nonzero(grown.address, self.buffer.address, self.size)
        self.buffer = grown

    def _copy_whole(self, base: int, size: int) -> bool:
        end = self.tracker.register(base, size)  # (again, when it grew or a scan failed: registering twice is fine)
        if not end:
            return False
        self.base, self.tracked_end = base, end
        self.tracker.take(base, size)  # from here on, writes are tracked
        self.buffer, self.size = None, 0  # a fresh (zeroed) buffer
        self._reserve(size)
        assert self.buffer is not None
        copy_nonzero(self.buffer.address, base, size)
        self.size = size
        return True


class _Buffer:
    """Zeroed memory that takes no RAM until written (an anonymous mapping; a ctypes array is memset whole)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._map = mmap.mmap(-1, max(size, PAGE), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = ctypes.c_char.from_buffer(self._map)  # keeps the address valid while this object lives
        self.address = ctypes.addressof(self._view)


def copy_changed(dst: int, src: int, size: int) -> None:
    """Copy only the blocks that differ: a fresh instance's memory is zero but for its data segments, and
    writing a page costs a page fault where comparing with one that was never touched does not allocate it."""
    for offset in range(0, size, _BLOCK):
        n = min(_BLOCK, size - offset)
        if _libc.memcmp(dst + offset, src + offset, n):
            ctypes.memmove(dst + offset, src + offset, n)


def copy_nonzero(dst: int, src: int, size: int) -> None:
    """Copy into a zeroed buffer, skipping zero blocks: a fresh buffer's pages take no memory until written,
    and most of a young heap was never touched."""
    run = -1
    for offset in range(0, size + _BLOCK, _BLOCK):
        n = min(_BLOCK, size - offset)
        if n > 0 and _libc.memcmp(src + offset, _ZEROS, n):
            if run < 0:
                run = offset
            continue
        if run >= 0:
            end = min(offset, size)
            _libc.madvise(dst + run, end - run, _MADV_POPULATE_WRITE)  # one call faults the run in (5.14+)
            ctypes.memmove(dst + run, src + run, end - run)
            run = -1
