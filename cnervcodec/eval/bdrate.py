"""Bjontegaard-delta metrics: BD-rate (%) and BD-PSNR (dB) between an anchor and a test RD curve.

A single RD point says little about a codec; the Bjontegaard delta compares whole curves. Each curve
is interpolated and the gap between the two is averaged over the range where both are defined:

* BD-rate: log10(rate) as a function of distortion, averaged over the overlap of the distortion
  ranges, turned into percent as ``(10 ** mean_gap - 1) * 100``. Negative = the test saves bits.
* BD-PSNR: distortion as a function of log10(rate), averaged over the overlap of the log-rate ranges.
  Positive = the test is better at equal rate. Works for any dB-scale quality (see ``ms_ssim_db``).

The numbers match the ``bjontegaard`` 1.3.0 package (which the test vector in ``tests/data`` came
from) without depending on scipy at runtime:

* ``pchip``: Fritsch-Carlson monotone cubic Hermite with scipy's ``PchipInterpolator`` derivatives,
  including its one-sided three-point end rule (the JVET common-test-conditions method).
* ``akima``: scipy's ``Akima1DInterpolator`` with ``method="akima"`` (not makima); with two points
  it is the straight line, as in the package.
* ``cubic``: the original Bjontegaard: one cubic polynomial through the points (``np.polyfit``, a
  least-squares fit when there are more than four) integrated with its antiderivative.

The piecewise cubics are integrated exactly, segment by segment. Rates may be in any unit (bpp,
kbps) as long as both curves use the same one; only their ratio matters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cnervcodec.errors import BadInputError

METHODS = ("pchip", "akima", "cubic")
DEFAULT_METHOD = "pchip"
MIN_OVERLAP_FRACTION = 0.75  # below this a BD value describes too little of the curves to trust
AKIMA_BREAK_MULT = 1e-9  # scipy's cut-off under which Akima's slope weights count as zero

Point = tuple[float, float]  # (rate, distortion_db)


# ---------------------------------------------------------------------------------- interpolants


class Interpolant(Protocol):
    """What the BD integration needs from a fitted curve: values and an exact definite integral."""

    def __call__(self, x: np.ndarray | float) -> np.ndarray: ...

    def integrate(self, lo: float, hi: float) -> float: ...


@dataclass(frozen=True)
class PiecewiseCubic:
    """One cubic per segment, ``y = c0 + c1 t + c2 t^2 + c3 t^3`` with ``t = x - knots[k]``.

    Local coordinates keep the coefficients small and well conditioned (PSNR knots sit near 40),
    and make the antiderivative of each segment a plain polynomial in ``t``.
    """

    knots: np.ndarray  # (n,) strictly increasing
    coeffs: np.ndarray  # (n - 1, 4): c0..c3 for each segment

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        """Values inside ``[knots[0], knots[-1]]``; NaN outside, since BD never extrapolates."""
        x = np.asarray(x, dtype=float)
        segment = np.clip(np.searchsorted(self.knots, x, side="right") - 1, 0, len(self.knots) - 2)
        t = x - self.knots[segment]
        c = self.coeffs[segment]
        y = c[..., 0] + t * (c[..., 1] + t * (c[..., 2] + t * c[..., 3]))
        return np.where((x >= self.knots[0]) & (x <= self.knots[-1]), y, np.nan)

    def integrate(self, lo: float, hi: float) -> float:
        """Exact integral over ``[lo, hi]`` (inside the knots): the antiderivative, segment by segment."""
        if not self.knots[0] <= lo <= hi <= self.knots[-1]:
            raise ValueError(f"integration range [{lo}, {hi}] leaves [{self.knots[0]}, {self.knots[-1]}]")
        starts, ends = self.knots[:-1], self.knots[1:]
        t_lo = np.clip(lo, starts, ends) - starts
        t_hi = np.clip(hi, starts, ends) - starts
        return float(np.sum(self._antiderivative(t_hi) - self._antiderivative(t_lo)))

    def _antiderivative(self, t: np.ndarray) -> np.ndarray:
        """Per segment, the integral of its cubic from ``t = 0`` to ``t``."""
        c = self.coeffs
        return t * (c[:, 0] + t * (c[:, 1] / 2 + t * (c[:, 2] / 3 + t * c[:, 3] / 4)))


@dataclass(frozen=True)
class Polynomial:
    """One polynomial over the whole curve (coefficients highest power first, as np.polyfit gives)."""

    coeffs: np.ndarray

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return np.polyval(self.coeffs, np.asarray(x, dtype=float))

    def integrate(self, lo: float, hi: float) -> float:
        """Exact integral through the antiderivative, as the original Bjontegaard spreadsheet does."""
        antiderivative = np.polyint(self.coeffs)
        return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))


def _hermite(x: np.ndarray, y: np.ndarray, slopes: np.ndarray) -> PiecewiseCubic:
    """The cubic Hermite spline through (x, y) with the given end slopes of each segment.

    Same coefficient formulas as scipy's CubicHermiteSpline, so values agree to rounding.
    """
    dx = np.diff(x)
    secant = np.diff(y) / dx
    curvature = (slopes[:-1] + slopes[1:] - 2 * secant) / dx
    c3 = curvature / dx
    c2 = (secant - slopes[:-1]) / dx - curvature
    return PiecewiseCubic(knots=x, coeffs=np.stack([y[:-1], slopes[:-1], c2, c3], axis=1))


def _pchip_end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """scipy's PCHIP end rule: one-sided three-point estimate, clamped to keep the shape monotone."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > 3 * abs(m0):
        return 3 * m0
    return float(d)


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives exactly as scipy's PchipInterpolator chooses them.

    Interior: 0 at a local extremum or flat secant, else the weighted harmonic mean of the secants.
    """
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    slopes = np.zeros_like(y)
    flat_or_turning = (np.sign(m[1:]) != np.sign(m[:-1])) | (m[1:] == 0) | (m[:-1] == 0)
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / m[:-1] + w2 / m[1:])
    slopes[1:-1] = np.where(flat_or_turning, 0.0, harmonic)
    slopes[0] = _pchip_end_slope(h[0], h[1], m[0], m[1])
    slopes[-1] = _pchip_end_slope(h[-1], h[-2], m[-1], m[-2])
    return slopes


def _akima_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Akima's (1970) derivatives exactly as scipy's Akima1DInterpolator(method="akima") chooses them.

    Two secants are added at each end by linear extrapolation of the secants; each slope weighs its
    two neighbouring secants by how much the secants change on the far side.
    """
    secants = np.diff(y) / np.diff(x)
    if len(x) == 2:
        return np.array([secants[0], secants[0]])
    m = np.empty(len(x) + 3)
    m[2:-2] = secants
    m[1] = 2 * m[2] - m[3]
    m[0] = 2 * m[1] - m[2]
    m[-2] = 2 * m[-3] - m[-4]
    m[-1] = 2 * m[-2] - m[-3]
    change = np.abs(np.diff(m))
    f1, f2 = change[2:], change[:-2]
    f12 = f1 + f2
    slopes = 0.5 * (m[3:] + m[:-3])  # where both weights vanish the slope is undefined: the mean
    defined = f12 > AKIMA_BREAK_MULT * np.max(f12)
    weighted = m[1:-2] + (f2 / np.where(defined, f12, 1.0)) * (m[2:-1] - m[1:-2])
    return np.where(defined, weighted, slopes)


def interpolate(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                method: str = DEFAULT_METHOD) -> Interpolant:
    """Fit ``y(x)`` for strictly increasing ``x`` with one of ``METHODS``."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    _check_method(method)
    if x.size < min_points(method) or x.size != y.size:
        raise BadInputError(f"the {method} method needs at least {min_points(method)} (x, y) pairs, "
                            f"got {x.size} x and {y.size} y")
    if method == "cubic":
        return Polynomial(np.polyfit(x, y, 3))
    slopes = _pchip_slopes(x, y) if method == "pchip" else _akima_slopes(x, y)
    return _hermite(x, y, slopes)


# ---------------------------------------------------------------------------------------- checks


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise BadInputError(f"unknown BD method {method!r} (choose {', '.join(METHODS)})")


def min_points(method: str) -> int:
    """A cubic polynomial has four coefficients; the piecewise methods draw a line through two."""
    return 4 if method == "cubic" else 2


def _fmt_point(rate: float, dist_db: float) -> str:
    return f"(rate={rate:g}, dist={dist_db:g})"


def _check_curve(rate: Sequence[float], dist_db: Sequence[float], name: str,
                 method: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the curve sorted by rate, or say in one line why it cannot be used.

    BD metrics assume a curve that improves with rate; a dip would make log-rate a non-function of
    distortion, so it is refused with the offending neighbours named rather than silently smoothed.
    """
    rate_arr = np.asarray(rate, dtype=float).reshape(-1)
    dist_arr = np.asarray(dist_db, dtype=float).reshape(-1)
    if rate_arr.size != dist_arr.size:
        raise BadInputError(f"{name} curve has {rate_arr.size} rates but {dist_arr.size} distortions")
    needed = min_points(method)
    if rate_arr.size < needed:
        hint = " (use pchip or akima for fewer points)" if method == "cubic" else ""
        raise BadInputError(f"{name} curve has {rate_arr.size} point(s); the {method} method needs at least "
                            f"{needed}{hint}")
    for i, (r, d) in enumerate(zip(rate_arr, dist_arr), start=1):
        if not (math.isfinite(r) and r > 0):
            raise BadInputError(f"{name} curve point {i} {_fmt_point(r, d)}: rate must be positive and finite")
        if not math.isfinite(d):
            raise BadInputError(f"{name} curve point {i} {_fmt_point(r, d)}: distortion must be finite")
    order = np.argsort(rate_arr, kind="stable")
    rate_arr, dist_arr = rate_arr[order], dist_arr[order]
    for k in range(rate_arr.size - 1):
        low, high = _fmt_point(rate_arr[k], dist_arr[k]), _fmt_point(rate_arr[k + 1], dist_arr[k + 1])
        if rate_arr[k + 1] == rate_arr[k]:
            raise BadInputError(f"{name} curve has two points at the same rate: {low} and {high}")
        if dist_arr[k + 1] <= dist_arr[k]:
            raise BadInputError(f"{name} curve is not monotonic: distortion must increase strictly with rate, "
                                f"but {low} is followed by {high}")
    return rate_arr, dist_arr


# ------------------------------------------------------------------------------------ BD metrics


@dataclass(frozen=True)
class BdResult:
    """One Bjontegaard delta with what a reader needs to judge it.

    ``value`` is NaN (and ``reason`` says why) when the curves share no range; ``warning`` is set when
    they share less than ``MIN_OVERLAP_FRACTION`` of it, since the average then covers little.
    """

    value: float  # percent for BD-rate, dB for BD-PSNR
    unit: str  # "%" or "dB"
    overlap: float  # shared range / union range along the integration axis, in [0, 1]
    method: str
    warning: str | None = None
    reason: str | None = None


def _overlap(anchor_x: np.ndarray, test_x: np.ndarray) -> tuple[float, float, float]:
    """(lo, hi, fraction): the shared interval of two sorted axes and its share of their union."""
    lo, hi = max(anchor_x[0], test_x[0]), min(anchor_x[-1], test_x[-1])
    union = max(anchor_x[-1], test_x[-1]) - min(anchor_x[0], test_x[0])
    return float(lo), float(hi), max(hi - lo, 0.0) / union


def _mean_gap(anchor_x: np.ndarray, anchor_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              method: str, label: str, axis: str) -> tuple[float, float, str | None, str | None]:
    """(mean of test - anchor over the shared x range, overlap, warning, reason); NaN if none shared."""
    lo, hi, overlap = _overlap(anchor_x, test_x)
    if overlap <= 0:
        reason = (f"{label}: the {axis} ranges [{anchor_x[0]:g}, {anchor_x[-1]:g}] (anchor) and "
                  f"[{test_x[0]:g}, {test_x[-1]:g}] (test) do not overlap")
        return math.nan, 0.0, None, reason
    warning = None
    if overlap < MIN_OVERLAP_FRACTION:
        warning = (f"{label}: the {axis} ranges overlap by only {overlap:.0%} of their union "
                   f"(below {MIN_OVERLAP_FRACTION:.0%}), so the result covers little of the curves")
    gap = (interpolate(test_x, test_y, method).integrate(lo, hi)
           - interpolate(anchor_x, anchor_y, method).integrate(lo, hi)) / (hi - lo)
    return gap, overlap, warning, None


def _log10_gap_to_percent(gap_log10: float) -> float:
    """Mean log10 rate ratio -> percent; absurd gaps (wild cubic fits) give inf, not an OverflowError."""
    with np.errstate(over="ignore"):
        return float((np.power(10.0, gap_log10) - 1.0) * 100.0)


def bd_rate(anchor_rate: Sequence[float], anchor_dist_db: Sequence[float], test_rate: Sequence[float],
            test_dist_db: Sequence[float], method: str = DEFAULT_METHOD) -> BdResult:
    """BD-rate in percent: the test's average rate change at equal quality (negative = saves bits).

    log10(rate) is interpolated over distortion and averaged over the shared distortion range.
    """
    _check_method(method)
    a_rate, a_dist = _check_curve(anchor_rate, anchor_dist_db, "anchor", method)
    t_rate, t_dist = _check_curve(test_rate, test_dist_db, "test", method)
    gap_log10, overlap, warning, reason = _mean_gap(a_dist, np.log10(a_rate), t_dist, np.log10(t_rate),
                                                    method, "BD-rate", "distortion")
    return BdResult(_log10_gap_to_percent(gap_log10), "%", overlap, method, warning, reason)


def bd_psnr(anchor_rate: Sequence[float], anchor_dist_db: Sequence[float], test_rate: Sequence[float],
            test_dist_db: Sequence[float], method: str = DEFAULT_METHOD) -> BdResult:
    """BD-PSNR (or BD-quality for any dB metric): the test's average gain in dB at equal rate.

    Distortion is interpolated over log10(rate) and averaged over the shared log-rate range.
    """
    _check_method(method)
    a_rate, a_dist = _check_curve(anchor_rate, anchor_dist_db, "anchor", method)
    t_rate, t_dist = _check_curve(test_rate, test_dist_db, "test", method)
    gap_db, overlap, warning, reason = _mean_gap(np.log10(a_rate), a_dist, np.log10(t_rate), t_dist,
                                                 method, "BD-PSNR", "log-rate")
    return BdResult(gap_db, "dB", overlap, method, warning, reason)


def ms_ssim_db(ms_ssim: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - x)``, so BD averages behave as they do for PSNR.

    Raw MS-SSIM crowds near 1, where equal steps mean ever larger quality differences; the dB form
    spreads them out. x = 1 (lossless) has no finite dB value and is refused rather than sent to inf.
    """
    x = float(ms_ssim)
    if not math.isfinite(x) or not 0.0 <= x <= 1.0:
        raise BadInputError(f"MS-SSIM must be in [0, 1], got {ms_ssim!r}")
    if x == 1.0:
        raise BadInputError("MS-SSIM of 1 (lossless) is infinitely many dB; drop that point before BD metrics")
    return -10.0 * math.log10(1.0 - x)
