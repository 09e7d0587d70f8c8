"""A ``.cnrv``'s real bytes against the rate model's estimate of them (issue 14: they must agree).

The estimate prices each tensor record's coded symbols under the two-sided geometric law the rate
term of a rate-aware fit uses (``tensor_coding.estimated_payload_bits``); every other byte of the file
(headers, ranges, coder models) is counted exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnervcodec.format.stream import read_container
from cnervcodec.tensor_coding import estimated_payload_bits


@dataclass(frozen=True)
class RateEstimate:
    """A file's bytes against the rate model's estimate of them: the coded symbols' payload under the
    rate term's two-sided geometric law, plus every other byte of the file (headers, ranges, models),
    which is known exactly."""

    file_bytes: int
    payload_bytes: int
    estimated_payload_bytes: float

    @property
    def estimated_bytes(self) -> float:
        return self.file_bytes - self.payload_bytes + self.estimated_payload_bytes

    @property
    def error(self) -> float:
        """(estimate - real) / real, over the whole file."""
        return self.estimated_bytes / self.file_bytes - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"file_bytes": self.file_bytes, "estimated_bytes": round(self.estimated_bytes, 1),
                "payload_bytes": self.payload_bytes, "estimated_payload_bytes": round(self.estimated_payload_bytes, 1),
                "estimate_error": round(self.error, 5)}


def rate_estimate(data: bytes) -> RateEstimate:
    """How far a ``.cnrv``'s real bytes are from the rate model's estimate (``tensor_coding.estimated_payload_bits``)."""
    container = read_container(data)
    records = container.decoder + ((container.embeddings,) if container.embeddings is not None else ())
    payload = sum(len(r.stream.payload) for r in records)
    estimate = sum(estimated_payload_bits(r) for r in records) / 8
    return RateEstimate(file_bytes=len(data), payload_bytes=payload, estimated_payload_bytes=estimate)


def coded_bits(data: bytes) -> dict[str, Any]:
    """How a written .cnrv coded its tensors, for reports: the widest weight and embedding symbols, and
    its bytes against the rate model's estimate (``rate_estimate``)."""
    header = read_container(data).header
    return {"weight_bits": header.weight_bits, "embed_bits": header.embed_bits, **rate_estimate(data).to_dict()}
