"""Audio pass-through: copy a source's audio as packets and mux it back next to the decoded video.

The codec never touches sound, so audio is carried as the source's own compressed packets (an
``AudioTrack``), never decoded: what comes out is bit for bit what went in. Only when the output
container cannot hold that codec (PCM into MP4, say) is it decoded and re-encoded to AAC, with a
note saying so. Trimming to the selected frames is done by whole packets (~21 ms for AAC at 48 kHz,
one 1024-sample frame), because cutting inside a packet would mean decoding and re-encoding.
"""

from __future__ import annotations

import io
import os
from dataclasses import replace
from fractions import Fraction
from types import MappingProxyType

import av
from av.stream import Discard

from cnervcodec.errors import BadInputError, one_line
from cnervcodec.format.records import AudioPacket, AudioTrack

MAX_AUDIO_BYTES = 256 * 2**20  # more than ~9 h of 64 kb/s AAC; bounds what a track holds in memory

# Codecs the MP4 muxer takes as they are (measured with FFmpeg 8.1). PCM is refused at header time;
# Vorbis and TrueHD need "experimental" compliance. Anything else is re-encoded to AAC for MP4.
MP4_COPY_CODECS = frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "opus", "flac", "alac"})

# Rates the AAC encoder accepts; any other source rate is resampled to 48 kHz.
_AAC_RATES_HZ = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350})
_AAC_FALLBACK_RATE_HZ = 48000
_AAC_BITS_PER_S_STEREO = 128_000
_AAC_BITS_PER_S_PER_CHANNEL = 64_000  # above two channels
# The AAC encoder takes any named layout of up to 8 channels but refuses an unordered one ("2
# channels", all MKV and WAV can say about PCM): those get FFmpeg's default layout for their count.
_AAC_MAX_CHANNELS = 8
_AAC_LAYOUTS_BY_CHANNELS = MappingProxyType({1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1",
                                             7: "6.1", 8: "7.1"})


# ---------------------------------------------------------------------------------------------
# Reading


def read_audio_track(
    path: str | os.PathLike,
    *,
    start_seconds: Fraction = Fraction(0),
    duration_seconds: Fraction | None = None,
) -> AudioTrack | None:
    """The first audio stream of a media file as packets, trimmed to [start, start + duration).

    Times count from the first video frame (the video stream's start time; from 0 when there is
    no video), so the frames a caller selected with start K, N frames, step S at source rate F
    match ``start_seconds=K/F, duration_seconds=N*S/F``. Trimming keeps every packet that overlaps
    the range, whole: the kept audio can start up to one packet early and end up to one packet
    late; what lies before the first video frame (AAC's priming packet) is left out. Timestamps
    are shifted so that the first kept packet starts at 0, like the video. Returns None when the
    file has no audio stream or no packet falls in the range; over ``MAX_AUDIO_BYTES`` of packets
    (256 MiB: ~23 min of 48 kHz stereo PCM, hours of AAC) is a BadInputError.
    """
    source = os.fspath(path)
    start_seconds = Fraction(start_seconds)
    if start_seconds < 0 or (duration_seconds is not None and duration_seconds <= 0):
        raise ValueError(f"bad audio range: start {start_seconds}, duration {duration_seconds}")
    try:
        container = av.open(source, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"cannot read {source} for its audio ({one_line(error)})") from None
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        origin = _time_origin(container)
        end = None if duration_seconds is None else origin + start_seconds + Fraction(duration_seconds)
        packets = _packets_in_range(container, stream, source, origin + start_seconds, end)
        if not packets:
            return None
        return _track_from_stream(stream, source, _shifted_to_zero(packets))


def _time_origin(container: av.container.InputContainer) -> Fraction:
    """Seconds on the file's timeline where the first video frame sits: audio is cut against it."""
    for video in container.streams.video:
        if video.start_time is not None and video.time_base:
            return video.start_time * Fraction(video.time_base)
    return Fraction(0)


def _packets_in_range(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    source: str,
    start: Fraction,
    end: Fraction | None,
) -> list[AudioPacket]:
    """The stream's packets overlapping [start, end) seconds, with timestamps as in the file.

    Other streams are discarded so that the demuxer skips their payloads instead of reading them.
    A packet without timestamps is taken to follow the previous one.
    """
    for other in container.streams:
        if other.index != stream.index:
            other.discard = Discard.all
    time_base = Fraction(stream.time_base)
    kept: list[AudioPacket] = []
    n_bytes = 0
    next_tick = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            tick = packet.pts if packet.pts is not None else packet.dts if packet.dts is not None else next_tick
            duration = max(0, packet.duration or 0)
            next_tick = tick + duration
            begin_s = tick * time_base
            if end is not None and begin_s >= end:
                break  # audio packets come in time order
            if not _reaches_past(begin_s, duration * time_base, start):
                continue
            n_bytes += packet.size
            if n_bytes > MAX_AUDIO_BYTES:
                raise BadInputError(
                    f"{source}: the audio of the selected range is over {MAX_AUDIO_BYTES // 2**20} MiB: "
                    "select fewer frames"
                )
            kept.append(AudioPacket(pts=tick, dts=packet.dts if packet.dts is not None else tick,
                                    duration=duration, is_keyframe=bool(packet.is_keyframe), data=bytes(packet)))
    except av.FFmpegError as error:
        raise BadInputError(f"{source}: reading its audio failed ({one_line(error)})") from None
    return kept


def _reaches_past(begin_s: Fraction, duration_s: Fraction, start_s: Fraction) -> bool:
    """Whether a packet reaches past ``start_s``; one of unknown (zero) length counts at its start."""
    return begin_s + duration_s > start_s if duration_s else begin_s >= start_s


def cut_track(track: AudioTrack | None, start_seconds: Fraction, duration_seconds: Fraction) -> AudioTrack | None:
    """The packets of a carried track that overlap [start, start + duration) seconds, shifted to start
    at 0, by the same rule as ``read_audio_track``: overlapping packets are kept whole. For a decoded
    frame range (``decode --start K --frames N``): K / fps, N / fps. None when nothing is left."""
    if track is None:
        return None
    end_s = start_seconds + duration_seconds
    kept = [p for p in track.packets
            if (p.pts or 0) * track.time_base < end_s
            and _reaches_past((p.pts or 0) * track.time_base, p.duration * track.time_base, start_seconds)]
    return replace(track, packets=_shifted_to_zero(kept)) if kept else None


def _shifted_to_zero(packets: list[AudioPacket]) -> tuple[AudioPacket, ...]:
    """Move all timestamps so the first packet starts at 0 (where the written video starts)."""
    offset = packets[0].pts or 0
    return tuple(replace(p, pts=(p.pts or 0) - offset, dts=None if p.dts is None else p.dts - offset) for p in packets)


def _track_from_stream(
    stream: av.audio.stream.AudioStream, source: str, packets: tuple[AudioPacket, ...]
) -> AudioTrack:
    """The stream's codec parameters, as much as muxing it again needs, with the packets."""
    ctx = stream.codec_context
    if ctx is None:
        raise BadInputError(f"{source}: its audio codec is unknown to this FFmpeg build, so it cannot be carried")
    return AudioTrack(
        codec=ctx.codec.canonical_name,  # "mp3", not the decoder's name "mp3float"
        sample_rate=int(ctx.sample_rate), channels=int(ctx.layout.nb_channels), layout=ctx.layout.name,
        sample_format=ctx.format.name if ctx.format is not None else "", time_base=Fraction(stream.time_base),
        bit_rate=int(ctx.bit_rate or 0), extradata=bytes(ctx.extradata or b""), packets=packets,
    )


def track_seconds(track: AudioTrack) -> Fraction:
    """Where the track's last packet ends, in seconds from 0."""
    if not track.packets:
        return Fraction(0)
    last = track.packets[-1]
    return ((last.pts or 0) + last.duration) * track.time_base


# ---------------------------------------------------------------------------------------------
# Writing


class AudioMux:
    """One audio stream of an output container, fed in step with the video (``write_until`` after
    each frame) so the muxer interleaves the two without buffering a whole track.

    Create it before anything is muxed. ``container_format`` is FFmpeg's muxer name ("mp4",
    "matroska"): MP4 takes the codecs in ``MP4_COPY_CODECS`` unchanged, Matroska any codec this
    FFmpeg build can describe; anything else is re-encoded to AAC and ``note`` says so.
    """

    def __init__(self, container: av.container.OutputContainer, track: AudioTrack, *, container_format: str) -> None:
        self._container, self._track = container, track
        self._next = 0  # index of the next packet to mux
        self.note: str | None = None
        reason = _copy_refusal(track, container_format)
        self._transcoder = None if reason is None else _AacTranscoder(container, track)
        if self._transcoder is None:
            self._stream = _copy_stream(container, track, container_format)
        else:
            self.note = (f"audio {track.codec} {reason}: re-encoded to AAC {self._transcoder.kbps} kb/s"
                         + ("; use .mkv to keep it unchanged" if container_format == "mp4" else ""))

    def write_until(self, seconds: Fraction) -> None:
        """Mux every packet that starts before ``seconds``."""
        packets = self._track.packets
        while self._next < len(packets) and (packets[self._next].pts or 0) * self._track.time_base < seconds:
            self._write(packets[self._next])
            self._next += 1

    def finish(self) -> None:
        """Mux what is left, and flush the encoder when re-encoding."""
        self.write_until(track_seconds(self._track) + 1)
        if self._transcoder is not None:
            self._transcoder.flush()

    def _write(self, packet: AudioPacket) -> None:
        out = _av_packet(packet, self._track.time_base)
        if self._transcoder is not None:
            self._transcoder.feed(out)
        else:
            out.stream = self._stream
            self._container.mux(out)


def mux_audio_stream(container: av.container.OutputContainer, track: AudioTrack, *, container_format: str) -> str | None:
    """Add ``track`` and mux all of it at once (for callers with no video to interleave it with).
    Returns the note when the audio had to be re-encoded, else None."""
    mux = AudioMux(container, track, container_format=container_format)
    mux.finish()
    return mux.note


def _copy_refusal(track: AudioTrack, container_format: str) -> str | None:
    """Why the packets cannot be copied as they are into this container, or None if they can."""
    if container_format == "mp4" and track.codec not in MP4_COPY_CODECS:
        return "cannot go into MP4"
    try:
        av.Codec(track.codec, "w")  # PyAV builds an output stream from an encoder's description
    except (av.FFmpegError, ValueError):
        return "cannot be copied by this FFmpeg build"
    return None


def _copy_stream(container: av.container.OutputContainer, track: AudioTrack, container_format: str):
    """A stream that takes ``track``'s packets unchanged.

    ``add_stream`` would open an encoder when the header is written, replacing the source's
    extradata with the encoder's own; a stream made from a template is never opened. The template
    comes from a scratch container that is never written; the stored parameters then replace the
    template's defaults before the header goes out.
    """
    scratch = av.open(io.BytesIO(), mode="w", format=container_format)
    try:
        stream = container.add_stream_from_template(scratch.add_stream(track.codec, rate=track.sample_rate))
    except ValueError as error:
        raise BadInputError(f"audio {track.codec} cannot be written to {container_format} ({error})") from None
    finally:
        scratch.close()
    ctx = stream.codec_context
    ctx.sample_rate, ctx.layout, ctx.bit_rate = track.sample_rate, track.layout, track.bit_rate
    if track.sample_format:
        ctx.format = track.sample_format
    ctx.extradata = track.extradata or None
    stream.time_base = track.time_base
    return stream


def _av_packet(packet: AudioPacket, time_base: Fraction) -> av.Packet:
    out = av.Packet(packet.data)
    out.pts, out.dts = packet.pts, packet.dts if packet.dts is not None else packet.pts
    out.duration, out.time_base, out.is_keyframe = packet.duration, time_base, packet.is_keyframe
    return out


class _AacTranscoder:
    """Decodes the track's packets and encodes them to AAC into a new stream of the container."""

    def __init__(self, container: av.container.OutputContainer, track: AudioTrack) -> None:
        try:
            self._decoder = av.CodecContext.create(track.codec, "r")
        except (av.FFmpegError, ValueError):
            raise BadInputError(f"audio {track.codec} cannot be decoded by this FFmpeg build") from None
        self._decoder.sample_rate, self._decoder.layout = track.sample_rate, track.layout
        self._decoder.extradata = track.extradata or None
        layout = _aac_layout(track)
        n_channels = av.AudioLayout(layout).nb_channels
        bits_per_s = _AAC_BITS_PER_S_STEREO if n_channels <= 2 else _AAC_BITS_PER_S_PER_CHANNEL * n_channels
        self.kbps = bits_per_s // 1000
        self._container = container
        rate_hz = track.sample_rate if track.sample_rate in _AAC_RATES_HZ else _AAC_FALLBACK_RATE_HZ
        self._stream = container.add_stream("aac", rate=rate_hz)
        self._stream.layout, self._stream.bit_rate = layout, bits_per_s

    def feed(self, packet: av.Packet) -> None:
        try:
            frames = self._decoder.decode(packet)
        except av.FFmpegError as error:
            raise BadInputError(f"the audio is damaged: decoding it for AAC failed ({one_line(error)})") from None
        for frame in frames:
            self._encode(frame)

    def flush(self) -> None:
        for frame in self._decoder.decode(None):
            self._encode(frame)
        self._container.mux(self._stream.encode(None))

    def _encode(self, frame: av.AudioFrame) -> None:
        # The encoder resamples and re-frames to 1024 samples itself and numbers its own output;
        # the decoder's timestamps (in the source's time base) would only confuse that.
        frame.pts = None
        self._container.mux(self._stream.encode(frame))


def _aac_layout(track: AudioTrack) -> str:
    """The AAC encoder's layout: the source's when it names an order, else the usual one for its
    channel count; more than 8 channels are downmixed to stereo."""
    if track.channels > _AAC_MAX_CHANNELS:
        return "stereo"
    if not track.layout.endswith(" channels"):
        return track.layout
    return _AAC_LAYOUTS_BY_CHANNELS[track.channels]
