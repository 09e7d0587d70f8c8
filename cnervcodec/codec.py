"""The one place frames become bytes and bytes become frames: ``encode`` and ``decode``.

Encode: fit the network (``fit``), prune it, a training step of its own (``prune``), then code it:
quantize the decoder's weights and the per-frame embeddings (eq. 4), entropy-code every tensor with
whichever coder is smaller (``tensor_coding``) and write the ``.cnrv`` bytes (``format.stream``).
Decode: parse the bytes, dequantize, and run the decoder on any range of frames: CNeRV rebuilds each
frame from its own embedding, so a range needs no other frame (x264 and x265 need the I-frame before
it). Nothing else in the package builds a container or calls the format's writer or reader for a
stream: callers hand frames in and get bytes back, or bytes in and frames back. No file I/O and no
printing here: the CLI reads and writes, and progress goes through callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import torch

from cnervcodec import __version__
from cnervcodec.config import CompressionConfig, FitConfig, ModelConfig, PruneConfig
from cnervcodec.errors import BadInputError, CorruptContainerError
from cnervcodec.fit import FitProgress, FitResult, Planes, fit, fitted_embeddings
from cnervcodec.format.model_file import ModelFile
from cnervcodec.frame_store import FrameFile
from cnervcodec.format.records import AudioTrack, ColorInfo, TensorRecord
from cnervcodec.format.stream import (
    Container,
    StreamHeader,
    read_container,
    write_container,
)
from cnervcodec.format.tensor_records import (
    density_problem,
    record_nbytes,
    record_values,
)
from cnervcodec.interpolate import check_interpolation, render_interpolated
from cnervcodec.model import Decoder, VideoNetwork, bitstream_tensors, decoder_on, render_range
from cnervcodec.prune import prune_fit, sparsity
from cnervcodec.rate_training import EMBEDDINGS
from cnervcodec.ratecontrol import (
    RateTarget,
    coding_candidates,
    fallback_candidates,
    in_window,
    payload_target_bits,
    solve,
)
from cnervcodec.tensor_coding import (
    STREAM_CODERS,
    compress_decoder,
    compress_embeddings,
    restore_embeddings,
    restored_decoder,
)
from cnervcodec.trained_model import check_frame_size, embed_frames, refine_embeddings

ENCODER_NAME = f"cnervcodec {__version__}"


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that decides the bitstream: network, training recipe, pruning, coding."""

    model: ModelConfig
    fit: FitConfig
    compression: CompressionConfig = CompressionConfig()
    prune: PruneConfig = PruneConfig()


@dataclass(frozen=True, eq=False)
class EncodeResult:
    """The ``.cnrv`` file's bytes and what it cost to make them. The frames a user gets are
    ``decode(data)``: tools that report quality measure those, not the float model."""

    data: bytes
    fit_seconds: float  # the fit's training loop; with a trained model, computing the embeddings
    prune_seconds: float  # pruning and its fine-tune (0 without pruning)
    train_fps: float
    sparsity: float  # fraction of decoder weights that are zero


@dataclass(eq=False)
class DecodingNetwork:
    """A parsed stream ready to render: the decoder with the file's dequantized weights, every frame's
    embedding, and what the file carries besides (header, audio)."""

    decoder: Decoder
    latents: torch.Tensor  # (T, d, n_h, n_w) float32
    header: StreamHeader
    audio: AudioTrack | None = None

    @property
    def n_frames(self) -> int:
        return self.latents.shape[0]


def metadata(**fields: Any) -> dict[str, Any]:
    """A ``meta`` chunk (streams and models alike): the encoder's name and version, then ``fields``."""
    return {"encoder": ENCODER_NAME, **fields}


def encode_metadata(source_name: str, size: str, preset: str, fit_config: FitConfig, compression: CompressionConfig,
                    prune: PruneConfig) -> dict[str, Any]:
    """The ``meta`` chunk ``cnerv encode`` writes: shared so that every tool that reports a .cnrv
    size counts the same bytes as the file ``cnerv encode`` would write."""
    return metadata(source=source_name, settings={
        "size": size, "preset": preset, "fit": fit_config.to_dict(),
        "compression": compression.to_dict() | prune.to_dict()})


# ---------------------------------------------------------------------------------------------
# Encode


def encode(
    frames_u8: torch.Tensor,
    fps: Fraction,
    settings: EncodeSettings,
    device: torch.device,
    *,
    color: ColorInfo = ColorInfo(),
    audio: AudioTrack | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[str, FitProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> EncodeResult:
    """Fit, prune, quantize and code ``frames_u8`` (T, 3, H, W) uint8; ``progress(stage, report)``."""
    fitted = fit(frames_u8, settings.model, settings.fit, device,
                 progress=(lambda p: progress("fit", p)) if progress else None, should_stop=should_stop)
    started = time.monotonic()
    pruned = prune_fit(frames_u8, fitted, settings.prune, device,
                       progress=(lambda p: progress("prune", p)) if progress else None, should_stop=should_stop)
    prune_seconds = time.monotonic() - started if settings.prune.fraction > 0 else 0.0
    data = code_fit(pruned, fps, settings.compression, color=color, audio=audio, metadata=metadata)
    return EncodeResult(data=data, fit_seconds=fitted.fit_seconds, prune_seconds=prune_seconds,
                        train_fps=fitted.train_fps, sparsity=sparsity(pruned.network.decoder))


def code_fit(fitted: FitResult, fps: Fraction, compression: CompressionConfig, *, color: ColorInfo = ColorInfo(),
             audio: AudioTrack | None = None, metadata: dict[str, Any] | None = None) -> bytes:
    """Quantize and code a fitted (and pruned) network and its embeddings: the ``.cnrv`` file's bytes.

    One fit can serve a whole ladder of bit depths this way (``prune.prune_fit`` for prune levels).
    """
    embeddings = fitted_embeddings(fitted)
    if embeddings is None:
        raise BadInputError("only CNeRV fits can be coded: a NeRV network has no per-frame embeddings")
    decoder = fitted.network.decoder
    weight_steps, embed_step = coding_steps(fitted, compression)
    try:
        records = compress_decoder(decoder, compression, STREAM_CODERS, steps=weight_steps)
        embedding_record, temporal = compress_embeddings(embeddings.numpy(), compression.embed_bits,
                                                         compression.embed_axis, step=embed_step)
    except ValueError as error:  # a learned step scaled too fine for 16-bit symbols
        raise BadInputError(f"cannot code this network: {error}") from None
    _check_density(records + (embedding_record,), compression)
    header = StreamHeader(model=fitted.network.config, n_frames=embeddings.shape[0], fps=fps, color=color,
                          weight_bits=max(r.quant.bits for r in records), embed_bits=embedding_record.quant.bits,
                          prune_fraction=round(sparsity(decoder), 6))
    return write_container(Container(header=header, decoder=records, embeddings=embedding_record, audio=audio,
                                     metadata=dict(metadata or {}), embeddings_temporal=temporal))


def coding_steps(fitted: FitResult, compression: CompressionConfig) -> tuple[dict[str, float] | None, float | None]:
    """(per-tensor weight steps, embedding step) to code with: the fit's learned steps times the
    config's factors, or (None, None) for eq. 4's min-max ranges."""
    if not compression.learned_steps:
        return None, None
    if fitted.quant_steps is None:
        raise BadInputError("learned quantization steps need a rate-aware fit (--lambda > 0)")
    steps = {name: step * compression.weight_step_scale for name, step in fitted.quant_steps.items()
             if name != EMBEDDINGS}
    return steps, fitted.quant_steps[EMBEDDINGS] * (compression.embed_step_scale or 1.0)


def _check_density(records: tuple[TensorRecord, ...], compression: CompressionConfig) -> None:
    """Refuse, with advice, a stream a reader would refuse as a decompression bomb: in practice
    1-bit weights of a large network, which quantize every tensor to one value."""
    n_bytes = 2 + sum(map(record_nbytes, records))  # as a reader counts them: DECO's tensor count, the records
    if problem := density_problem(record_values(records), n_bytes):
        raise BadInputError(f"cannot code this network with --bits {compression.weight_bits}: {problem}; "
                            "these weights carry almost no information: use more --bits")


def encode_with_model(
    frames_u8: torch.Tensor,
    fps: Fraction,
    model_file: ModelFile,
    compression: CompressionConfig,
    device: torch.device,
    *,
    model_ref: bool = False,
    refine_steps: int = 0,
    color: ColorInfo = ColorInfo(),
    audio: AudioTrack | None = None,
    metadata: dict[str, Any] | None = None,
) -> EncodeResult:
    """Encode a clip with a trained model: embeddings only, no fit (``compression.embed_bits`` /
    ``embed_axis`` apply; the decoder is the model's, already quantized). ``model_ref``: the stream
    names the model by its SHA-256 instead of copying its decoder."""
    n_frames, _, height, width = frames_u8.shape
    check_frame_size(model_file, width, height)
    started = time.monotonic()
    embeddings = embed_frames(frames_u8, model_file, device)
    if refine_steps > 0:
        embeddings = refine_embeddings(frames_u8, embeddings, model_file, refine_steps, device)
    header = StreamHeader(model=model_file.model, n_frames=n_frames, fps=fps, color=color,
                          weight_bits=model_file.weight_bits, embed_bits=compression.embed_bits,
                          prune_fraction=model_file.prune_fraction)
    embedding_record, temporal = compress_embeddings(embeddings.numpy(), compression.embed_bits,
                                                     compression.embed_axis)
    data = write_container(Container(
        header=header, decoder=() if model_ref else model_file.decoder, embeddings=embedding_record,
        audio=audio, metadata=dict(metadata or {}), model_ref=model_file.sha256 if model_ref else None,
        embeddings_temporal=temporal))
    embed_seconds = time.monotonic() - started
    return EncodeResult(data=data, fit_seconds=embed_seconds, prune_seconds=0.0,
                        train_fps=n_frames / embed_seconds if embed_seconds > 0 else 0.0,
                        sparsity=model_file.prune_fraction)


# ---------------------------------------------------------------------------------------------
# Decode


def attach_model(container: Container, model_file: ModelFile | None, model_name: str = "the model") -> Container:
    """A referring stream (MREF) with the model's decoder filled in; other streams pass through."""
    if container.model_ref is None:
        return container
    expected = container.model_ref.hex()
    if model_file is None:
        raise BadInputError(f"this .cnrv refers to the model with SHA-256 {expected}: pass --model MODEL.cnrvm")
    if model_file.sha256 != container.model_ref:
        raise BadInputError(f"wrong model: this .cnrv needs the model with SHA-256 {expected}, "
                            f"{model_name} is {model_file.sha256.hex()}")
    if model_file.model != container.header.model:  # the hash covers the model's config, not the stream's
        raise CorruptContainerError("corrupt .cnrv: its HEAD describes another network than the model it refers to")
    return replace(container, decoder=model_file.decoder)


def decoding_network(container: Container) -> DecodingNetwork:
    """Build the decoder from a parsed container; shapes that do not match its config are corruption."""
    if container.embeddings is None:
        raise BadInputError("this .cnrv holds a NeRV network (frame-index input): cnerv decodes CNeRV streams only")
    if container.model_ref is not None and not container.decoder:
        raise BadInputError(f"this .cnrv refers to the model with SHA-256 {container.model_ref.hex()}: "
                            "pass --model MODEL.cnrvm")
    header = container.header
    decoder = restored_decoder(header.model, container.decoder)  # shapes checked before anything is allocated
    latents = torch.from_numpy(restore_embeddings(container.embeddings, container.embeddings_temporal))
    return DecodingNetwork(decoder=decoder, latents=latents, header=header, audio=container.audio)


def open_stream(data: bytes, model_file: ModelFile | None = None, model_name: str = "the model", *,
                interpolate: int = 1, mode: str = "linear") -> DecodingNetwork:
    """A ``.cnrv`` file's bytes, parsed and ready to render (``model_file``: for a stream that refers
    to its model by hash). An ``interpolate`` / ``mode`` the stream cannot serve is refused before
    the decoder is built."""
    container = read_container(data)
    check_interpolation(interpolate, mode, container.header.model.arch)
    return decoding_network(attach_model(container, model_file, model_name))


def check_range(n_frames: int, start: int, count: int | None) -> int:
    """The number of frames in ``start``, ``count`` (None: to the end); a range outside the stream is refused."""
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < n_frames:
        raise BadInputError(f"--start {start} is outside the stream's frames 0..{n_frames - 1}")
    if count is None:
        return n_frames - start
    if isinstance(count, bool) or not isinstance(count, int) or count < 1 or start + count > n_frames:
        raise BadInputError(f"--frames {count} from --start {start} runs past the stream's {n_frames} frames "
                            f"(at most {n_frames - start})")
    return count


def render_frames(network: DecodingNetwork, device: torch.device, batch: int = 8, *, start: int = 0,
                  count: int | None = None, interpolate: int = 1,
                  mode: str = "linear", half: bool = False) -> Iterator[torch.Tensor]:
    """Frames ``start`` .. ``start + count - 1`` as (B, 3, H, W) uint8 CPU tensors, streamed.

    A range is bit for bit the same frames as a full decode with the same ``batch``: the network runs
    on the batches of the full decode that hold the range (at most ``batch - 1`` frames more at each
    end), never on the rest of the stream. ``interpolate`` N > 1 yields, per coded frame, the frame
    and the N - 1 frames decoded from blended embeddings towards the next one (``interpolate``).
    ``half``: the decoder runs in float16 on CUDA, bfloat16 on the CPU (``model.half_dtype``): faster
    where the hardware has it, a few 8-bit levels off and not bit-exact. Default float32: exact.
    """
    count = check_range(network.n_frames, start, count)
    check_interpolation(interpolate, mode, network.header.model.arch)
    model = network.header.model
    decoder = decoder_on(network.decoder, device, half)  # converted once (a copy when half)
    if interpolate > 1:
        return render_interpolated(decoder, network.latents, model.height, model.width, interpolate, mode,
                                   device, batch, start=start, count=count, half=half)
    return render_range(decoder, network.latents, model.height, model.width, device, batch,
                        start=start, count=count, half=half)


def decode(data: bytes, *, model_file: ModelFile | None = None, start: int = 0, frames: int | None = None,
           device: torch.device | str = "cpu", batch: int = 8, to_disk: bool = False,
           cache_dir: str | None = None, half: bool = False) -> torch.Tensor:
    """The frames a ``.cnrv`` file decodes to, (N, 3, H, W) uint8: all of them, or ``frames`` from ``start``.
    ``to_disk``: into a ``frame_store.FrameFile`` in ``cache_dir`` instead (a long clip's decode).
    ``half``: a half-precision decode (``render_frames``), not bit-exact; the default is exact."""
    network = open_stream(data, model_file)
    rendered = render_frames(network, torch.device(device), batch, start=start, count=frames, half=half)
    if not to_disk:
        return torch.cat(list(rendered))
    model = network.header.model
    store = FrameFile((3, model.height, model.width), cache_dir)
    for part in rendered:
        store.append(part)
    return store


# ---------------------------------------------------------------------------------------------
# Rate control (the choice itself lives in ``ratecontrol``)


@dataclass(frozen=True)
class RateChoice:
    """The file ``code_fit_at_rate`` chose: its bytes (no audio), bit depths, YUV-PSNR, and every candidate."""

    data: bytes
    compression: CompressionConfig
    psnr_yuv: float
    candidates: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class RateEncodeResult:
    """``encode_at_rate``'s file (with audio), the video part's bytes, and what was chosen."""

    data: bytes
    video_bytes: int
    model: ModelConfig
    compression: CompressionConfig
    fit_seconds: float
    train_fps: float
    candidates: tuple[dict[str, Any], ...]
    rate_lambda: float | None = None  # a rate-aware fit's lambda at its end (adapted to the target)


def encode_at_rate(frames_u8: torch.Tensor, fps: Fraction, target: RateTarget, fit_config: FitConfig,
                   prune: PruneConfig, device: torch.device, *, planes: Planes | None = None,
                   weight_bits: int | None = None, strict: bool = True, color: ColorInfo = ColorInfo(),
                   audio: AudioTrack | None = None,
                   metadata: dict[str, Any] | None = None,
                   progress: Callable[[str, FitProgress], None] | None = None,
                   should_stop: Callable[[], bool] = lambda: False, adapt_lambda: bool = False) -> RateEncodeResult:
    """Encode under rate control: the network ``ratecontrol.solve`` sizes for ``target``, fitted (and
    pruned), then coded at the bit depths ``code_fit_at_rate`` finds best within the window. A rate-aware
    fit with ``adapt_lambda`` moves its lambda during the fit until its estimated bits meet the target's."""
    n_frames, _, height, width = frames_u8.shape
    model = solve(target, n_frames, height, width, weight_bits=weight_bits, strict=strict,
                  rate_aware=fit_config.rate_lambda > 0)
    if adapt_lambda and fit_config.rate_lambda > 0:
        fit_config = replace(fit_config, rate_target_bits=payload_target_bits(target, n_coded_records(model)))
    fitted = fit(frames_u8, model, fit_config, device, planes=planes,
                 progress=(lambda p: progress("fit", p)) if progress else None, should_stop=should_stop)
    pruned = prune_fit(frames_u8, fitted, prune, device,
                       progress=(lambda p: progress("prune", p)) if progress else None, should_stop=should_stop)
    choice = code_fit_at_rate(pruned, fps, target, frames_u8, planes, weight_bits=weight_bits, device=device,
                              color=color, metadata=metadata)
    data = choice.data if audio is None else code_fit(pruned, fps, choice.compression, color=color, audio=audio,
                                                      metadata=metadata)
    return RateEncodeResult(data=data, video_bytes=len(choice.data), model=model, compression=choice.compression,
                            fit_seconds=fitted.fit_seconds, train_fps=fitted.train_fps, candidates=choice.candidates,
                            rate_lambda=fitted.rate_lambda)


def n_coded_records(model: ModelConfig) -> int:
    """How many tensor records a file of ``model`` holds: its decoder tensors and the embeddings (built on
    the meta device: no memory)."""
    with torch.device("meta"):
        network = VideoNetwork(model)
    return len(bitstream_tensors(network.decoder)) + 1


def _coded_candidates(fitted: FitResult, fps: Fraction, candidates: list[CompressionConfig], color: ColorInfo,
                      metadata: dict[str, Any] | None) -> list[tuple[bytes, CompressionConfig]]:
    """Each candidate coding's file; one that cannot code this network (too few bits for its
    shapes, a decompression-bomb bound, or a span past 16 bits) is not a candidate."""
    coded = []
    for compression in candidates:
        try:
            coded.append((code_fit(fitted, fps, compression, color=color, metadata=metadata), compression))
        except BadInputError:
            continue
    return coded


def code_fit_at_rate(fitted: FitResult, fps: Fraction, target: RateTarget, reference_u8: torch.Tensor,
                     planes: Planes | None, *, weight_bits: int | None = None, device: torch.device | str = "cpu",
                     color: ColorInfo = ColorInfo(), metadata: dict[str, Any] | None = None) -> RateChoice:
    """Code one fit at every bit-depth pair of ``ratecontrol.coding_candidates``, keep the files within
    the search window of ``target``, decode them and return the best YUV-PSNR (scored on ``planes``
    when the source has its own); when none lands, a rate-aware fit also tries
    ``ratecontrol.fallback_candidates``; when still none lands in the window, the closest file."""
    from cnervcodec.stream_scoring import decoded_psnr_yuv, score_sample

    def landed() -> list[int]:
        return [i for i, (data, _) in enumerate(coded) if in_window(len(data), target)]

    learned = fitted.quant_steps is not None
    coded = _coded_candidates(fitted, fps, coding_candidates(weight_bits, learned_steps=learned), color, metadata)
    window = landed()
    if not window:
        coded += _coded_candidates(fitted, fps, fallback_candidates(learned), color, metadata)
        window = landed()
    if not coded:
        raise BadInputError("no bit depth codes this network: ask for a higher rate")
    if not window:
        window = [min(range(len(coded)), key=lambda i: abs(len(coded[i][0]) - target.bytes))]
    sample = score_sample(reference_u8.shape[0])
    psnr_of = {i: float(decoded_psnr_yuv(open_stream(coded[i][0]), reference_u8, planes, device,
                                         indices=sample).mean()) for i in window}
    best = max(psnr_of, key=psnr_of.__getitem__)
    data, compression = coded[best]
    candidates = tuple(c.to_dict() | {"bytes": len(d), "psnr_yuv": round(psnr_of[i], 4) if i in psnr_of else None}
                       for i, (d, c) in enumerate(coded))
    return RateChoice(data=data, compression=compression, psnr_yuv=psnr_of[best], candidates=candidates)
