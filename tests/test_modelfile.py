"""Model files (.cnrvm) and streams that refer to them (MREF): bytes, hash, corruption, codec.

A model is only useful if (a) it reads back exactly (the encoder's float32 values decide the
embeddings of every new frame), (b) its hash identifies the decoder and nothing else, so a stream
that refers to it decodes with the full model or with the decode-only export, and refuses any
other, and (c) a damaged file is refused with the container's own errors, like a damaged .cnrv.
"""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import frame, split_file

from cnervcodec import codec, trained_model
from cnervcodec.format import model_file
from cnervcodec.codec import decoding_network
from cnervcodec.config import CompressionConfig, FitConfig, build_model_config
from cnervcodec.format.stream import read_container, write_container
from cnervcodec.errors import BadInputError, CorruptContainerError, UnsupportedVersionError
from cnervcodec.fit import fit

FPS = Fraction(25)
CPU = torch.device("cpu")


def moving_frames(n_frames: int, height: int = 32, width: int = 48, phase: float = 0.0) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    frames = []
    for t in range(n_frames):
        s = phase + 0.15 * t
        rgb = torch.stack([torch.sin(6 * x + s), torch.cos(5 * y - s), torch.sin(4 * (x + y) + 2 * s)])
        frames.append(((rgb * 0.5 + 0.5) * 255).round().to(torch.uint8))
    return torch.stack(frames)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    frames = moving_frames(6)
    config = build_model_config("cnerv", "S", 32, 48)
    return fit(frames, config, FitConfig(epochs=2), CPU)


@pytest.fixture(scope="module")
def model(fitted):
    return trained_model.model_file_from_network(fitted.network, CompressionConfig(weight_bits=6), {"trained_on": "moving"})


@pytest.fixture(scope="module")
def model_bytes(model):
    return model_file.write_model_file(model)


# ------------------------------------------------------------------------------------ the file


def test_round_trip_keeps_every_value(model, model_bytes):
    back = model_file.read_model_file(model_bytes)
    assert back.model == model.model and back.weight_bits == 6 and back.metadata == {"trained_on": "moving"}
    for name in model_file.ENCODER_FIELDS:
        assert np.array_equal(back.encoder[name], model.encoder[name])
    assert back.sha256 == model.sha256
    assert model_file.write_model_file(back) == model_bytes  # canonical: read then write is the identity


def test_signature_and_chunk_order(model_bytes):
    assert model_bytes.startswith(b"\x89CNM\r\n\x1a\n\x01\x00")
    assert [kind for kind, _ in split_file(model_bytes)] == ["MHDR", "ENCO", "DECO", "meta", "FEND"]


def test_encoder_arrays_reproduce_the_fitted_embeddings(fitted, model):
    frames = moving_frames(6)
    with torch.no_grad():
        expected = fitted.network.encoder(fitted.inputs).float()
    got = trained_model.embed_frames(frames, model, CPU)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_hash_covers_the_decoder_only(model):
    assert model.sha256 == replace(model, metadata={"other": 1}).sha256
    assert model.sha256 == replace(model, encoder=None).sha256
    changed = model.decoder[0]
    stream = replace(changed.stream, payload=bytes([changed.stream.payload[0] ^ 1]) + changed.stream.payload[1:])
    assert replace(model, decoder=(replace(changed, stream=stream),) + model.decoder[1:]).sha256 != model.sha256
    assert replace(model, weight_bits=7).sha256 != model.sha256


def test_writer_refuses_what_a_reader_would(model):
    nerv = replace(model, model=replace(model.model, arch="nerv", nerv_hidden=4))
    with pytest.raises(ValueError, match="only cnerv"):
        model_file.write_model_file(nerv)
    bad = dict(model.encoder, raw_std=np.zeros_like(model.encoder["raw_std"]))
    with pytest.raises(ValueError, match="raw_std"):
        model_file.write_model_file(replace(model, encoder=bad))
    with pytest.raises(ValueError, match="shape"):
        model_file.write_model_file(replace(model, encoder=dict(model.encoder, bias=np.zeros(3, np.float32))))


# ------------------------------------------------------------------------------ damaged files


def test_a_cnrv_is_not_a_model(model, fitted):
    result = codec.encode_with_model(moving_frames(3), FPS, model, CompressionConfig(), CPU)
    with pytest.raises(CorruptContainerError, match=r"not a \.cnrvm file \(wrong signature\)"):
        model_file.read_model_file(result.data)


def test_unknown_major_is_unsupported(model_bytes):
    with pytest.raises(UnsupportedVersionError, match=r"\.cnrvm file was written by format version 2"):
        model_file.read_model_file(model_bytes[:8] + b"\x02" + model_bytes[9:])


def test_every_truncation_is_refused(model_bytes):
    step = max(1, len(model_bytes) // 400)  # every byte of the framing, and a spread through the payloads
    offsets = sorted(set(range(0, 200)) | set(range(0, len(model_bytes), step)) | {len(model_bytes) - 1})
    for cut in offsets:
        with pytest.raises(CorruptContainerError):
            model_file.read_model_file(model_bytes[:cut])


MINOR_VERSION_BYTE = 9  # a newer minor version is read as this one (bitstream_spec.md section 3)


def test_random_bit_flips_are_refused_or_read_as_a_file_the_writer_writes(model_bytes):
    """Each flip either raises one of the format's own errors, or the file still reads, and then to
    a model the writer writes back byte for byte (apart from a flipped minor version, which a reader
    accepts by design): nothing damaged is silently taken for something else."""
    rng = random.Random(0)
    refused = 0
    for _ in range(300):
        data = bytearray(model_bytes)
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
        try:
            back = model_file.read_model_file(bytes(data))
        except (CorruptContainerError, UnsupportedVersionError):
            refused += 1
            continue
        rewritten = model_file.write_model_file(back)
        assert position == MINOR_VERSION_BYTE and data[MINOR_VERSION_BYTE] > rewritten[MINOR_VERSION_BYTE], position
        assert rewritten[:MINOR_VERSION_BYTE] + rewritten[MINOR_VERSION_BYTE + 1:] == \
            bytes(data[:MINOR_VERSION_BYTE] + data[MINOR_VERSION_BYTE + 1:])
    assert refused >= 290  # every byte but the minor version is under a CRC or checked by the framing


def _rebuild(model_bytes: bytes, edit) -> bytes:
    """Split into chunks, let ``edit`` change the list, reframe with fresh CRCs."""
    return model_bytes[:10] + b"".join(frame(kind, payload) for kind, payload in edit(split_file(model_bytes)))


@pytest.mark.parametrize(("edit", "match"), [
    (lambda c: [c[0]] + c[2:], "has_encoder=True but the file lacks an ENCO chunk"),
    (lambda c: [c[0], (c[1][0], c[1][1][:-4])] + c[2:], "the encoder needs"),
    (lambda c: [c[0], c[1]] + c[3:], "no DECO chunk"),
    (lambda c: [c[1], c[0]] + c[2:], "first chunk is ENCO"),
    (lambda c: c[:1] + [("XTRA", b"")] + c[1:], "critical but unknown to model format 1.0"),
    (lambda c: [(c[0][0], bytes([0x81]) + c[0][1][1:])] + c[1:], "reserved flag bits"),
    (lambda c: [(c[0][0], c[0][1][:6] + b"\x00\x00" + c[0][1][8:])] + c[1:], "width 0"),
])
def test_structural_damage_is_named(model_bytes, edit, match):
    with pytest.raises(CorruptContainerError, match=match):
        model_file.read_model_file(_rebuild(model_bytes, edit))


def test_unknown_skippable_chunk_is_ignored(model_bytes, model):
    data = _rebuild(model_bytes, lambda c: c[:3] + [("xtra", b"hello")] + c[3:])
    assert model_file.read_model_file(data).sha256 == model.sha256


def test_non_finite_encoder_values_are_refused(model_bytes):
    def poison(chunks):
        kind, payload = chunks[1]
        return [chunks[0], (kind, struct.pack("<f", float("nan")) + payload[4:])] + chunks[2:]

    with pytest.raises(CorruptContainerError, match="encoder raw_mean has non-finite"):
        model_file.read_model_file(_rebuild(model_bytes, poison))


# --------------------------------------------------------------------- streams that refer (MREF)


@pytest.fixture(scope="module")
def new_clip():
    return moving_frames(4, phase=1.3)  # frames the model never saw


def lowest_minor(container, base: int) -> int:
    """Section 15: 1.3 with a Laplace record (CODR), else 1.2 with EMBT, else ``base``."""
    coders = {r.stream.coder for r in container.decoder + (container.embeddings,)}
    return 3 if 2 in coders else 2 if container.embeddings_temporal else base


def test_referring_stream_is_small_and_decodes_like_the_standalone_one(model, new_clip):
    alone = codec.encode_with_model(new_clip, FPS, model, CompressionConfig(), CPU)
    ref = codec.encode_with_model(new_clip, FPS, model, CompressionConfig(), CPU, model_ref=True)
    alone_bytes, ref_bytes = alone.data, ref.data
    assert len(ref_bytes) < len(alone_bytes) // 10
    parsed = read_container(ref_bytes)
    assert parsed.version == (1, lowest_minor(parsed, 1))  # EMBT (1.2) and CODR (1.3) hold MREF's 1.1 too
    assert parsed.model_ref == model.sha256 and parsed.decoder == ()
    alone = read_container(alone_bytes)
    assert alone.version == (1, lowest_minor(alone, 0))
    alone_frames = codec.decode(alone_bytes)
    assert torch.equal(torch.cat(list(codec.render_frames(codec.decoding_network(codec.attach_model(parsed, model)), CPU))),
                       alone_frames)
    assert torch.equal(codec.decode(ref_bytes, model_file=model), alone_frames)


def test_referring_stream_needs_the_right_model(model, new_clip):
    ref = read_container(codec.encode_with_model(new_clip, FPS, model, CompressionConfig(), CPU, model_ref=True).data)
    expected = model.sha256.hex()
    with pytest.raises(BadInputError, match=f"SHA-256 {expected}: pass --model"):
        decoding_network(ref)
    with pytest.raises(BadInputError, match=f"SHA-256 {expected}: pass --model"):
        codec.attach_model(ref, None)
    other = replace(model, weight_bits=7)
    with pytest.raises(BadInputError, match=f"needs the model with SHA-256 {expected}, m2 is {other.sha256.hex()}"):
        codec.attach_model(ref, other, "m2")
    decode_only = trained_model.model_file_from_stream(
        codec.encode_with_model(new_clip, FPS, model, CompressionConfig(), CPU).data, {})
    assert decode_only.sha256 == model.sha256  # the export decodes streams that refer to the full model
    from cnervcodec.format.tensor_records import encode_decoder

    assert encode_decoder(codec.attach_model(ref, decode_only).decoder) == encode_decoder(model.decoder)


def test_container_mref_rules(model, new_clip):
    container = read_container(codec.encode_with_model(new_clip, FPS, model, CompressionConfig(), CPU, model_ref=True).data)
    with pytest.raises(ValueError, match="replaces the decoder"):
        write_container(replace(container, decoder=model.decoder))
    with pytest.raises(ValueError, match="32 bytes"):
        write_container(replace(container, model_ref=b"short"))
    data = write_container(container)
    mref_at = data.index(b"MREF") - 4
    longer = data[:mref_at] + frame("MREF", container.model_ref + b"\x00") + data[mref_at + 44:]
    with pytest.raises(CorruptContainerError, match="unexpected bytes"):
        read_container(longer)
    deco = codec.encode_with_model(new_clip, FPS, model, CompressionConfig(), CPU).data
    embeddings_kind = b"EMBT" if read_container(deco).embeddings_temporal else b"EMBD"
    deco_chunk = deco[deco.index(b"DECO") - 4:deco.index(embeddings_kind) - 4]
    both = data[:mref_at + 44] + deco_chunk + data[mref_at + 44:]
    with pytest.raises(CorruptContainerError, match="both DECO and MREF"):
        read_container(both)


def test_model_refuses_frames_of_another_size_and_decode_only_refuses_encoding(model):
    with pytest.raises(BadInputError, match="fitted at 48x32 and this input is 64x32: use --scale 48x32"):
        codec.encode_with_model(moving_frames(2, 32, 64), FPS, model, CompressionConfig(), CPU)
    with pytest.raises(BadInputError, match="decode-only"):
        codec.encode_with_model(moving_frames(2), FPS, replace(model, encoder=None), CompressionConfig(), CPU)


def test_refining_embeddings_does_not_hurt(model, new_clip):
    from cnervcodec.metrics import quality_report

    plain = codec.encode_with_model(new_clip, FPS, model, CompressionConfig(embed_bits=8), CPU)
    refined = codec.encode_with_model(new_clip, FPS, model, CompressionConfig(embed_bits=8), CPU, refine_steps=10)
    assert quality_report(new_clip, codec.decode(refined.data)).psnr > quality_report(new_clip, codec.decode(plain.data)).psnr


# ------------------------------------------------------------------------------------ commands


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    """A training clip, a new clip of the same size, and a model fitted with ``cnerv fit -o .cnrvm``."""
    from conftest import write_y4m

    folder = tmp_path_factory.mktemp("models")
    train, new = folder / "train.y4m", folder / "new.y4m"
    write_y4m(train, moving_frames(4), 48, 32)
    write_y4m(new, moving_frames(3, phase=2.0), 48, 32)
    return folder, train, new


def test_model_commands_end_to_end(cli_files, capsys):
    import json

    from conftest import run_cnerv

    folder, train, new = cli_files
    model = folder / "m.cnrvm"
    code, out, err = run_cnerv(capsys, "fit", str(train), str(train), "--epochs", "1", "--device", "cpu",
                               "-o", str(model), "--json", "-q")
    assert code == 0, err
    fit_report = json.loads(out)
    assert fit_report["input"]["frames"] == 8  # two clips joined: a domain model's training set
    code, out, _ = run_cnerv(capsys, "model", "info", str(model), "--json")
    info = json.loads(out)
    assert code == 0 and info["sha256"] == fit_report["model_sha256"] and info["has_encoder"]
    assert info["bytes"] == model.stat().st_size

    ref = folder / "new_ref.cnrv"
    code, out, err = run_cnerv(capsys, "encode", str(new), "--model", str(model), "--model-ref", "-o", str(ref),
                               "--device", "cpu", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["bytes"] == ref.stat().st_size and report["model"] == info["sha256"] and report["model_ref"]
    alone = folder / "new_alone.cnrv"
    assert run_cnerv(capsys, "encode", str(new), "--model", str(model), "-o", str(alone), "--device", "cpu")[0] == 0
    assert alone.stat().st_size > 20 * ref.stat().st_size

    code, _, err = run_cnerv(capsys, "decode", str(ref), "-o", str(folder / "no_model.y4m"))
    assert code == 1 and info["sha256"] in err and "--model" in err
    assert not (folder / "no_model.y4m").exists()
    out_ref, out_alone = folder / "ref.y4m", folder / "alone.y4m"
    assert run_cnerv(capsys, "decode", str(ref), "--model", str(model), "-o", str(out_ref))[0] == 0
    assert run_cnerv(capsys, "decode", str(alone), "-o", str(out_alone))[0] == 0
    assert out_ref.read_bytes() == out_alone.read_bytes()

    exported = folder / "exported.cnrvm"
    code, out, _ = run_cnerv(capsys, "model", "export", str(alone), "-o", str(exported), "--json")
    assert code == 0 and json.loads(out)["sha256"] == info["sha256"]
    assert run_cnerv(capsys, "decode", str(ref), "--model", str(exported), "-o", str(folder / "e.y4m"))[0] == 0
    code, _, err = run_cnerv(capsys, "encode", str(new), "--model", str(exported), "-o", str(folder / "x.cnrv"))
    assert code == 1 and "decode-only" in err

    other = folder / "other.cnrvm"
    assert run_cnerv(capsys, "fit", str(new), "--epochs", "1", "--device", "cpu", "-o", str(other), "-q")[0] == 0
    code, _, err = run_cnerv(capsys, "decode", str(ref), "--model", str(other), "-o", str(folder / "w.y4m"))
    assert code == 1 and f"needs the model with SHA-256 {info['sha256']}" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--model-ref"], "need --model"),
    (["--refine-embeddings", "3"], "need --model"),
    (["--model", "M", "--bits", "6"], "--bits: these shape a fit"),
    (["--model", "M", "--epochs", "3", "--prune", "0.2"], "--prune, --epochs: these shape a fit"),
])
def test_encode_model_option_conflicts_are_usage_errors(cli_files, capsys, args, message):
    from conftest import run_cnerv

    folder, _, new = cli_files
    args = [str(folder / "m.cnrvm") if a == "M" else a for a in args]
    code, _, err = run_cnerv(capsys, "encode", str(new), "-o", str(folder / "c.cnrv"), *args)
    assert code == 2 and message in err


def test_model_info_refuses_a_cnrv(cli_files, capsys, tmp_path):
    from conftest import run_cnerv

    not_model = tmp_path / "x.cnrvm"
    not_model.write_bytes(b"\x89CNV\r\n\x1a\n\x01\x00")
    code, _, err = run_cnerv(capsys, "model", "info", str(not_model))
    assert code == 3 and "not a .cnrvm file" in err


def test_a_model_given_where_a_stream_belongs_gets_a_hint(capsys, model_bytes, tmp_path):
    from conftest import run_cnerv

    path = tmp_path / "m.cnrvm"
    path.write_bytes(model_bytes)
    for command in (["info", str(path)], ["decode", str(path), "-o", str(tmp_path / "x.y4m")]):
        code, _, err = run_cnerv(capsys, *command)
        assert code == 1 and "is a .cnrvm model, not a video stream" in err


def test_a_float_model_exports_to_a_model_that_encodes(cli_files, capsys):
    """``cnerv fit -o M.safetensors`` then ``cnerv model export M.safetensors``: the float network
    becomes a .cnrvm with its encoder, which encodes new frames like a model fitted straight to .cnrvm."""
    import json

    from conftest import run_cnerv

    folder, train, new = cli_files
    floating, direct, exported = folder / "f.safetensors", folder / "direct.cnrvm", folder / "from_float.cnrvm"
    for output in (floating, direct):
        code, _, err = run_cnerv(capsys, "fit", str(train), "--epochs", "1", "--device", "cpu", "-o", str(output),
                                 "--bits", "6", "-q")
        assert code == 0, err
    code, out, err = run_cnerv(capsys, "model", "export", str(floating), "-o", str(exported), "--bits", "6", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["has_encoder"] and report["bytes"] == exported.stat().st_size
    # Same seed, same frames, same fit: the two models hold the same network, so their hashes agree.
    assert report["sha256"] == json.loads(run_cnerv(capsys, "model", "info", str(direct), "--json")[1])["sha256"]
    code, _, err = run_cnerv(capsys, "encode", str(new), "--model", str(exported), "-o", str(folder / "n.cnrv"),
                             "--device", "cpu")
    assert code == 0, err
    code, _, err = run_cnerv(capsys, "model", "export", str(folder / "n.cnrv"), "-o", str(folder / "x.cnrvm"),
                             "--bits", "4")
    assert code == 2 and "--bits applies to a .safetensors input" in err
