"""What a fit reads from its clip: the network inputs, the training targets and the clip's fingerprint.

A clip that fits in memory is moved to the fit's device once, and its inputs (CNeRV's raw block
projections: 2,700 float32 values per block per frame at the default basis) are computed once for
every frame, as they always were. A clip held in a ``frame_store.FrameFile`` (long videos) is not:
its frames are read a batch at a time, and its projections are computed on demand in the same
16-frame chunks ``embedding.network_inputs`` uses (so a streamed fit sees bit for bit the values an
in-memory fit of the same frames sees), with a few recent chunks kept. Memory then depends on the batch,
not on the clip's length.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator

import torch

from cnervcodec.config import EmbeddingConfig
from cnervcodec.embedding import block_projection, frame_times, network_inputs, padded_floats
from cnervcodec.frame_store import STREAM_BATCH_FRAMES, HeapTrimmer, batches, is_store

PROJECTION_CHUNK_FRAMES = 16  # network_inputs' own batch: the same chunks give the same float values
CACHED_CHUNKS = 8
STATISTICS_CHUNK_FRAMES = 1024


class StreamedInputs:
    """CNeRV's raw projections of a stored clip, computed per 16-frame chunk when indexed.

    Indexing by a slice or an index tensor returns a tensor on ``device``, like the (T, raw_dim, n_h,
    n_w) tensor ``network_inputs`` returns for an in-memory clip.
    """

    def __init__(self, frames, config: EmbeddingConfig, padded_size: tuple[int, int], device: torch.device) -> None:
        self.frames = frames
        self.config = config
        self.padded_size = padded_size
        self.device = device
        n_h, n_w = config.grid
        self.shape = torch.Size((len(frames), config.raw_dim, n_h, n_w))
        self._chunks: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._trimmer = HeapTrimmer(16 * 2**20)  # projections come and go by the megabyte (frame_store.trim_heap)

    def __len__(self) -> int:
        return self.shape[0]

    def _chunk(self, number: int) -> torch.Tensor:
        if number in self._chunks:
            self._chunks.move_to_end(number)
            return self._chunks[number]
        start = number * PROJECTION_CHUNK_FRAMES
        chunk = to_device(self.frames[start : start + PROJECTION_CHUNK_FRAMES], self.device)  # pinned on CUDA
        projected = block_projection(padded_floats(chunk, self.padded_size, self.device), self.config)
        self._chunks[number] = projected
        self._trimmer.add(projected.numel() * projected.element_size())
        if len(self._chunks) > CACHED_CHUNKS:
            self._chunks.popitem(last=False)
        return projected

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            key = torch.arange(start, stop, step)
        indices = torch.as_tensor(key).reshape(-1).long().cpu()
        # Rows are copied out one by one: a view would keep its whole 16-frame chunk alive (200 seen
        # frames of 320x180 held 520 MB of chunks that way).
        out = torch.empty((len(indices), *self.shape[1:]), device=self.device)
        for row, index in enumerate(indices.tolist()):
            out[row] = self._chunk(index // PROJECTION_CHUNK_FRAMES)[index % PROJECTION_CHUNK_FRAMES]
        return out


def clip_frames(frames_u8, device: torch.device):
    """The frames a fit indexes its targets from: the clip on ``device``, or the store itself."""
    return frames_u8 if is_store(frames_u8) else frames_u8.to(device)


def clip_inputs(arch: str, config: EmbeddingConfig, padded_size: tuple[int, int], frames, device: torch.device):
    """Every frame's network input: computed once for an in-memory clip, on demand for a stored one."""
    if not is_store(frames):
        return network_inputs(arch, config, padded_size, frames)
    if arch != "cnerv":
        return frame_times(torch.arange(len(frames), device=device), len(frames))
    return StreamedInputs(frames, config, padded_size, device)


def to_device(batch_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch read from a store, on ``device``: through pinned memory, without blocking, on CUDA."""
    if device.type != "cuda":
        return batch_u8.to(device)
    return batch_u8.pin_memory().to(device, non_blocking=True)


def frame_targets(frames, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Frames ``indices`` (B, 3, H, W) uint8 on ``device``."""
    if is_store(frames):
        return to_device(frames[indices.cpu()], device)
    return frames[indices.to(frames.device)]


def input_chunks(inputs, indices: torch.Tensor, chunk: int = STATISTICS_CHUNK_FRAMES) -> Iterator[torch.Tensor]:
    """``inputs[indices]`` in pieces of at most ``chunk`` frames (one piece for a short clip)."""
    for start in range(0, len(indices), chunk):
        yield inputs[indices[start : start + chunk]]


def frames_fingerprint(frames_u8) -> str:
    """A hash of the clip, so a checkpoint is only resumed on the frames it was trained on (read in
    batches: the same digest for a tensor and a store of the same frames)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(tuple(frames_u8.shape)).encode())
    for _, batch in batches(frames_u8, STREAM_BATCH_FRAMES * 4):
        digest.update(batch.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()
