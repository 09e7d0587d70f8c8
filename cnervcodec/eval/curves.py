"""RD curves from files and their BD report: ``cnerv bd-rate --curves ANCHOR TEST``.

A curve file is JSON ``{"points": [{"bpp": ..., "psnr": ...}]}`` (``rate`` is accepted for ``bpp``)
or CSV with a ``bpp,psnr`` header; every number is checked, and a malformed file is a one-line
``BadInputError`` naming the file and the place. ``bdrate`` does the arithmetic.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnervcodec.errors import BadInputError
from cnervcodec.eval.bdrate import DEFAULT_METHOD, Point, bd_psnr, bd_rate

RATE_KEYS = ("bpp", "rate")  # accepted names of the rate column/key, in order of preference
DIST_KEY = "psnr"


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def curves_report(anchor_points: Sequence[Point], test_points: Sequence[Point],
                  method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """BD-rate and BD-PSNR of two ``(rate, dist_db)`` point lists, as a JSON-ready dict.

    Keys: ``bd_rate`` (%), ``bd_psnr`` (dB), ``overlap`` (distortion overlap, the BD-rate one),
    ``overlap_log_rate`` (the BD-PSNR one), ``method``, and ``warning`` / ``reason`` when set.
    NaN becomes None so that ``json.dumps`` writes null instead of the non-standard NaN.
    """
    anchor = _split_points(anchor_points, "anchor")
    test = _split_points(test_points, "test")
    rate = bd_rate(*anchor, *test, method=method)
    psnr = bd_psnr(*anchor, *test, method=method)
    report: dict[str, Any] = {
        "method": method,
        "bd_rate": _none_if_nan(rate.value),
        "bd_psnr": _none_if_nan(psnr.value),
        "overlap": rate.overlap,
        "overlap_log_rate": psnr.overlap,
    }
    warnings = [w for w in (rate.warning, psnr.warning) if w]
    reasons = [r for r in (rate.reason, psnr.reason) if r]
    if warnings:
        report["warning"] = "; ".join(warnings)
    if reasons:
        report["reason"] = "; ".join(reasons)
    return report


def _split_points(points: Sequence[Point], name: str) -> tuple[list[float], list[float]]:
    """Rates and distortions of ``(rate, dist)`` pairs, refusing anything that is not a pair."""
    rates, dists = [], []
    for i, point in enumerate(points, start=1):
        if len(point) != 2:
            raise BadInputError(f"{name} point {i} must be a (rate, distortion) pair, got {point!r}")
        rates.append(float(point[0]))
        dists.append(float(point[1]))
    return rates, dists


# ------------------------------------------------------------------------------------ curve files


def load_curve(path: str | Path) -> list[Point]:
    """Read an RD curve for ``cnerv bd-rate --curves`` as ``(rate, psnr_db)`` pairs in file order.

    JSON: ``{"points": [{"bpp": .., "psnr": ..}, ...]}``; CSV: a header with ``bpp,psnr``. ``rate``
    may replace ``bpp`` (``bpp`` wins when a file has both); other keys and columns are ignored.
    Files ending in .json/.csv are read as such; anything else is JSON if it starts with ``{``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{path}: curve file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"{path}: cannot read the curve file ({error})") from None
    if not text.strip():
        raise BadInputError(f"{path}: curve file is empty")
    suffix = path.suffix.lower()
    as_json = suffix == ".json" or (suffix != ".csv" and text.lstrip().startswith("{"))
    points = _parse_json_curve(text, path) if as_json else _parse_csv_curve(text, path)
    if not points:
        raise BadInputError(f"{path}: curve has no points")
    return points


def _number(value: object, path: Path, where: str) -> float:
    """A finite float from a JSON number or a CSV cell, or a one-line error naming file and place."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadInputError(f"{path}: {where} is not a number ({value!r})")
    try:
        number = float(value)
    except ValueError:
        raise BadInputError(f"{path}: {where} is not a number ({value!r})") from None
    if not math.isfinite(number):
        raise BadInputError(f"{path}: {where} is not finite ({value!r})")
    return number


def _json_number(value: object, path: Path, where: str) -> float:
    """JSON values must be numbers: a quoted "0.1" hints at a file written by something else."""
    if isinstance(value, str):
        raise BadInputError(f"{path}: {where} is a string, not a number ({value!r})")
    return _number(value, path, where)


def _json_rate_key(points: list[dict[str, Any]], path: Path) -> str:
    """The first of ``RATE_KEYS`` that every point has, so one file is read in one rate unit."""
    for key in RATE_KEYS:
        if all(key in point for point in points):
            return key
    for i, point in enumerate(points, start=1):
        if not any(key in point for key in RATE_KEYS):
            raise BadInputError(f"{path}: point {i} has no 'bpp' or 'rate'")
    raise BadInputError(f"{path}: points mix 'bpp' and 'rate'; use one rate key throughout")


def _parse_json_curve(text: str, path: Path) -> list[Point]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInputError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise BadInputError(f"{path}: expected a JSON object with a 'points' list")
    points = data["points"]
    for i, point in enumerate(points, start=1):
        if not isinstance(point, dict):
            raise BadInputError(f"{path}: point {i} is not an object with bpp (or rate) and psnr")
        if DIST_KEY not in point:
            raise BadInputError(f"{path}: point {i} has no 'psnr'")
    if not points:
        return []
    rate_key = _json_rate_key(points, path)
    return [(_json_number(point[rate_key], path, f"point {i} '{rate_key}'"),
             _json_number(point[DIST_KEY], path, f"point {i} 'psnr'"))
            for i, point in enumerate(points, start=1)]


def _parse_csv_curve(text: str, path: Path) -> list[Point]:
    try:
        rows = [(line, row) for line, row in enumerate(csv.reader(io.StringIO(text)), start=1)
                if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise BadInputError(f"{path}: not valid CSV ({error})") from None
    header = [cell.strip().lower() for cell in rows[0][1]]
    rate_key = next((key for key in RATE_KEYS if key in header), None)
    if rate_key is None or DIST_KEY not in header:
        raise BadInputError(f"{path}: the CSV header must name bpp (or rate) and psnr, got {','.join(header)!r}")
    rate_col, dist_col = header.index(rate_key), header.index(DIST_KEY)
    curve = []
    for line, row in rows[1:]:
        if len(row) <= max(rate_col, dist_col):
            raise BadInputError(f"{path}: CSV line {line} has {len(row)} columns, the header {len(header)}")
        curve.append((_number(row[rate_col].strip(), path, f"CSV line {line} '{rate_key}'"),
                      _number(row[dist_col].strip(), path, f"CSV line {line} 'psnr'")))
    return curve
