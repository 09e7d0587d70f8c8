"""Frames that may live on disk: a read-only, tensor-like store of (T, ...) uint8 frames.

A long clip does not fit in memory (20,000 frames at 320x180 are 3.5 GB as uint8; a 600-frame 1080p
clip is 3.7 GB), so ``video_io`` spills frames past a memory budget into a ``FrameFile``: one
temporary file of raw frames, unlinked as soon as it is created so that it disappears with the process
whatever happens (the open descriptor keeps it readable). Reads use ``os.pread`` into fresh tensors,
never ``mmap``: mapped pages would count as the process's resident memory until the kernel reclaims
them, while pread'd pages stay in the page cache, which the kernel drops under pressure.

Callers treat a store like a (T, ...) uint8 CPU tensor for what a batch loop needs: ``shape``,
``dtype``, ``len``, and indexing by an int, a slice or an index tensor, each returning a real tensor
of just those frames. ``take`` gives a lazy subset (seen / unseen frames) without reading it.
Everything that walks a whole clip does it in batches (``batches``), so memory is bounded by the batch.
"""

from __future__ import annotations

import ctypes
import math
import os
import tempfile
from collections.abc import Iterator, Sequence

import torch

# RGB frames kept in memory before a read spills to disk (the source's 4:2:0 planes, half as many bytes,
# spill with them): a 120-frame QCIF clip (9 MB) or 90 frames of 720p (249 MB) stay plain tensors; a
# 600-frame 1080p clip (3.7 GB) goes to disk.
DEFAULT_MEMORY_BYTES = 256 * 2**20
STREAM_BATCH_FRAMES = 16


TRIM_EVERY_BYTES = 64 * 2**20


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Streaming a long clip allocates and frees multi-megabyte batches by the thousand. glibc raises its
    mmap threshold whenever a large mmapped block is freed (up to 32 MB), after which such batches
    come from the heap and its free holes stay resident: measured +113 MB of RSS per 2,000 frames of
    320x180 just computing embeddings. Trimming now and then keeps the RSS flat at no measurable cost;
    fixing the threshold instead (``M_MMAP_THRESHOLD``) slowed fitting by 1.6x.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class HeapTrimmer:
    """Calls ``trim_heap`` once every ``every_bytes`` of streamed data (``add``)."""

    def __init__(self, every_bytes: int = TRIM_EVERY_BYTES) -> None:
        self.every_bytes = every_bytes
        self._since = 0

    def add(self, n_bytes: int) -> None:
        self._since += n_bytes
        if self._since >= self.every_bytes:
            self._since = 0
            trim_heap()


class FrameFile:
    """(T, *frame_shape) uint8 frames appended once, then read back by index (see the module docstring)."""

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, frame_shape: Sequence[int], directory: str | os.PathLike | None = None) -> None:
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.frame_bytes = math.prod(self.frame_shape)
        self.directory = directory  # where a decode of the same clip caches its frames too
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix="cnerv-frames-", suffix=".u8", dir=directory)
        os.unlink(path)  # gone with the last descriptor: no leftovers after a crash or Ctrl-C
        self._fd: int | None = handle
        self._count = 0
        self._trimmer = HeapTrimmer()

    # -- writing
    def append(self, frames: torch.Tensor) -> None:
        """Append one frame ``frame_shape`` or a batch ``(B, *frame_shape)`` of uint8 values."""
        batch = frames if tuple(frames.shape) != self.frame_shape else frames.unsqueeze(0)
        if tuple(batch.shape[1:]) != self.frame_shape or batch.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames of shape {self.frame_shape}, got {tuple(frames.shape)} {frames.dtype}")
        data = batch.contiguous().numpy().tobytes()
        os.pwrite(self._descriptor(), data, self._count * self.frame_bytes)
        self._trimmer.add(len(data))
        self._count += batch.shape[0]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def _descriptor(self) -> int:
        if self._fd is None:
            raise ValueError("this frame file is closed")
        return self._fd

    # -- tensor-like reading
    @property
    def shape(self) -> torch.Size:
        return torch.Size((self._count, *self.frame_shape))

    @property
    def ndim(self) -> int:
        return 1 + len(self.frame_shape)

    def dim(self) -> int:
        return self.ndim

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, int) and not isinstance(key, bool):
            index = int(key) + (self._count if key < 0 else 0)
            if not 0 <= index < self._count:
                raise IndexError(f"frame {key} is outside 0..{self._count - 1}")
            return self._read_run(index, 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self._count)
            if step == 1:
                return self._read_run(start, max(0, stop - start))
            key = torch.arange(start, stop, step)
        return self._read_indices(torch.as_tensor(key).reshape(-1))

    def _read_run(self, start: int, count: int) -> torch.Tensor:
        """Frames ``start .. start + count - 1`` in one read."""
        buffer = bytearray(count * self.frame_bytes)
        self._trimmer.add(len(buffer))
        if count:
            got = os.preadv(self._descriptor(), [buffer], start * self.frame_bytes)
            if got != len(buffer):
                raise OSError(f"short read from the frame cache ({got} of {len(buffer)} bytes)")
        return torch.frombuffer(buffer, dtype=torch.uint8).reshape(count, *self.frame_shape) if count else \
            torch.empty((0, *self.frame_shape), dtype=torch.uint8)

    def _read_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.dtype == torch.bool:
            indices = indices.nonzero().reshape(-1)
        indices = indices.long().cpu()
        indices = torch.where(indices < 0, indices + self._count, indices)
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= self._count):
            raise IndexError(f"frame indices outside 0..{self._count - 1}")
        out = torch.empty((len(indices), *self.frame_shape), dtype=torch.uint8)
        for row, index in enumerate(indices.tolist()):
            out[row] = self._read_run(index, 1)[0]
        return out


class FrameView:
    """A lazy subset of a store's frames, in the order of ``indices`` (``take``)."""

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, base, indices: torch.Tensor) -> None:
        self.base = base
        self.indices = torch.as_tensor(indices).reshape(-1).long().cpu()

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.indices), *self.base.shape[1:]))

    @property
    def ndim(self) -> int:
        return len(self.base.shape)

    def dim(self) -> int:
        return self.ndim

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> torch.Tensor:
        picked = self.indices[key]
        return self.base[int(picked)] if picked.dim() == 0 else self.base[picked]


def is_store(frames) -> bool:
    """True for an on-disk store or a view of one (not a plain tensor)."""
    return isinstance(frames, (FrameFile, FrameView))


def is_frames(frames) -> bool:
    """True for anything the batch loops accept as uint8 frames: a tensor or a store."""
    return isinstance(frames, torch.Tensor) or is_store(frames)


def take(frames, indices: torch.Tensor):
    """``frames[indices]``: a tensor for a tensor, a lazy ``FrameView`` for a store (nothing read yet)."""
    if isinstance(frames, torch.Tensor):
        return frames[indices.to(frames.device)]
    return FrameView(frames, indices)


def batches(frames, batch: int = STREAM_BATCH_FRAMES) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, frames[start : start + batch]) over the whole clip, each a real tensor."""
    for start in range(0, len(frames), batch):
        yield start, frames[start : start + batch]


def materialize(frames) -> torch.Tensor:
    """The whole clip as one tensor (for the few paths that need it at once, e.g. a model's training set)."""
    if isinstance(frames, torch.Tensor):
        return frames
    return frames[0 : len(frames)]


class SpillingStack:
    """Collects same-shape uint8 frames: in memory while under ``memory_bytes``, then in a ``FrameFile``.

    ``result()`` is a plain tensor for a clip that fits, else the store: short clips take exactly the
    path they always took, long ones never hold more than one frame in memory while being read.
    """

    def __init__(self, in_memory, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 directory: str | os.PathLike | None = None) -> None:
        self._memory = in_memory  # a ``video_frames.FrameStack``
        self._memory_bytes = memory_bytes
        self._directory = directory
        self._file: FrameFile | None = None

    def __len__(self) -> int:
        return len(self._file) if self._file is not None else len(self._memory)

    def append(self, frame: torch.Tensor) -> None:
        if self._file is None and (len(self._memory) + 1) * frame.numel() > self._memory_bytes:
            self._file = FrameFile(frame.shape, self._directory)
            if len(self._memory):
                held = self._memory.view()
                for start in range(0, held.shape[0], STREAM_BATCH_FRAMES):
                    self._file.append(held[start : start + STREAM_BATCH_FRAMES])
            self._memory = None
        if self._file is not None:
            self._file.append(frame)
        else:
            self._memory.append(frame)

    def result(self):
        return self._file if self._file is not None else self._memory.tensor()
