"""The network config as bytes (``bitstream_spec.md`` section 5, from HEAD offset 30; also ``.cnrvm``'s MHDR).

Reading hands every field to ``ModelConfig``, which validates itself, so that the network's limits live in one
place, ``config``.
"""

from __future__ import annotations

import math
import struct

from cnervcodec.config import (
    ACTIVATIONS,
    ARCHS,
    MAX_STAGES,
    OUT_ACTIVATIONS,
    EmbeddingConfig,
    ModelConfig,
)
from cnervcodec.errors import BadInputError
from cnervcodec.format.chunks import ChunkCursor

MAX_DECODER_VALUES = 1 << 28  # parameters a network config may describe: 1 GiB as float32 (spec section 13)


def encode_model_config(model: ModelConfig) -> bytes:
    """The network config fields (HEAD from offset 30; also the model file's MHDR)."""
    emb, n_stages = model.embedding, len(model.strides)
    return b"".join((
        struct.pack("<3BHBd", ARCHS.index(model.arch), emb.grid[0], emb.grid[1], emb.dim, emb.freqs, emb.base),
        struct.pack("<4B", ACTIVATIONS.index(model.activation), OUT_ACTIVATIONS.index(model.out_activation),
                    model.head_kernel, n_stages),
        struct.pack(f"<{n_stages + 1}H{n_stages}B", *model.widths, *model.strides),
        struct.pack("<dHI", model.nerv_pe_base, model.nerv_pe_freqs, model.nerv_hidden),
    ))


def read_model_config(cur: ChunkCursor, width: int, height: int) -> ModelConfig:
    """The network config fields of HEAD or MHDR, validated by ModelConfig itself so that its limits live
    in one place, and refused when they describe a decoder of more than ``MAX_DECODER_VALUES`` parameters."""
    at, arch = cur.pos, cur.enum("arch", ARCHS)
    rows, cols, dim, freqs = cur.unpack("<BBHB", "embedding grid, dim and freqs")
    base = cur.number("<d", "embedding base", -math.inf, math.inf)
    activation, out_activation = cur.enum("activation", ACTIVATIONS), cur.enum("out_activation", OUT_ACTIVATIONS)
    (head_kernel,) = cur.unpack("<B", "head_kernel")
    n_stages = cur.number("<B", "n_stages", 1, MAX_STAGES)
    widths, strides = cur.unpack(f"<{n_stages + 1}H", "widths"), cur.unpack(f"<{n_stages}B", "strides")
    pe_base = cur.number("<d", "nerv_pe_base", -math.inf, math.inf)
    pe_freqs, hidden = cur.unpack("<HI", "nerv_pe_freqs and nerv_hidden")
    try:
        model = ModelConfig(
            arch=arch, height=height, width=width, embedding=EmbeddingConfig((rows, cols), dim, freqs, base),
            widths=widths, strides=strides, activation=activation, out_activation=out_activation,
            head_kernel=head_kernel, nerv_pe_base=pe_base, nerv_pe_freqs=pe_freqs, nerv_hidden=hidden,
        )
    except BadInputError as exc:
        cur.fail(f"invalid network config: {exc}", at)
    if model.decoder_param_count() > MAX_DECODER_VALUES:
        cur.fail(f"the network config describes a decoder of {model.decoder_param_count():,} parameters, "
                 f"more than {MAX_DECODER_VALUES:,}", at)
    return model
