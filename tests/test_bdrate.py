"""Bjontegaard-delta metrics (cnervcodec.bdrate): the published test vector, an independent scipy
reference, curves with exactly known deltas, overlap handling, input checks and curve files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cnervcodec.eval.bdrate import METHODS, bd_psnr, bd_rate, interpolate, ms_ssim_db
from cnervcodec.eval.curves import curves_report, load_curve
from cnervcodec.errors import BadInputError

VECTOR_PATH = Path(__file__).parent / "data" / "bdrate_example.json"
VECTOR = json.loads(VECTOR_PATH.read_text())
ANCHOR = (VECTOR["anchor"]["rate"], VECTOR["anchor"]["psnr"])
TEST = (VECTOR["test"]["rate"], VECTOR["test"]["psnr"])
FOUR_DECIMALS = 5e-5

# A plausible RD curve (rate in kbps, PSNR in dB) reused by the hand-made cases.
RATES_KBPS = [400.0, 800.0, 1600.0, 3200.0, 6400.0]
PSNRS_DB = [31.2, 34.0, 36.3, 38.1, 39.4]


def points(rates, dists):
    return list(zip(rates, dists))


# ----------------------------------------------------------------------------------- test vector


@pytest.mark.parametrize("method", METHODS)
def test_matches_the_bjontegaard_package_vector(method):
    assert bd_rate(*ANCHOR, *TEST, method=method).value == pytest.approx(VECTOR[f"bd_rate_{method}"],
                                                                         abs=FOUR_DECIMALS)
    assert bd_psnr(*ANCHOR, *TEST, method=method).value == pytest.approx(VECTOR[f"bd_psnr_{method}"],
                                                                         abs=FOUR_DECIMALS)


def test_vector_through_curve_files_and_report(tmp_path):
    """The CLI path: the vector written as the two documented file formats, then ``curves_report``."""
    anchor_file = tmp_path / "anchor.json"
    anchor_file.write_text(json.dumps({"points": [{"rate": r, "psnr": d, "qp": 22 + 5 * i}
                                                  for i, (r, d) in enumerate(zip(*ANCHOR))]}))
    test_file = tmp_path / "test.csv"
    test_file.write_text("name,rate,psnr\n" + "".join(f"p{i},{r},{d}\n" for i, (r, d) in enumerate(zip(*TEST))))
    for method in METHODS:
        report = curves_report(load_curve(anchor_file), load_curve(test_file), method)
        assert report["method"] == method
        assert report["bd_rate"] == pytest.approx(VECTOR[f"bd_rate_{method}"], abs=FOUR_DECIMALS)
        assert report["bd_psnr"] == pytest.approx(VECTOR[f"bd_psnr_{method}"], abs=FOUR_DECIMALS)
        assert report["overlap"] == pytest.approx((40.037 - 34.987) / (40.121 - 34.851))
        assert "warning" not in report and "reason" not in report


# ---------------------------------------------------------------------- independent scipy reference


def random_monotone_curve(rng: np.random.Generator, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Rates log-uniform over two decades, PSNR rising with log-rate plus noise, kept strictly rising."""
    rates = np.sort(np.exp(rng.uniform(math.log(100), math.log(10_000), n_points)))
    psnrs = 25 + 4 * np.log2(rates / 50) + rng.normal(0, 0.5, n_points)
    return rates, np.maximum.accumulate(psnrs) + 0.05 * np.arange(n_points)


def scipy_interpolant(x, y, method):
    from scipy import interpolate as interp  # the test extra's independent reference
    if method == "pchip":
        return interp.PchipInterpolator(x, y)
    if method == "akima":
        return interp.Akima1DInterpolator(x, y, method="akima") if len(x) > 2 else interp.make_interp_spline(x, y, k=1)
    return np.poly1d(np.polyfit(x, y, 3))


def scipy_mean_gap(ax, ay, tx, ty, method):
    """Textbook BD: average of test - anchor over the shared range, integrated numerically with quad."""
    from scipy.integrate import quad
    lo, hi = max(ax[0], tx[0]), min(ax[-1], tx[-1])
    fa, ft = scipy_interpolant(ax, ay, method), scipy_interpolant(tx, ty, method)
    breaks = sorted(set(ax) | set(tx))
    area = quad(lambda v: float(ft(v)) - float(fa(v)), lo, hi, points=[b for b in breaks if lo < b < hi],
                epsabs=1e-12, epsrel=1e-12, limit=200)[0]
    return area / (hi - lo)


@pytest.mark.parametrize("method", ["pchip", "akima"])
@pytest.mark.parametrize("n_points", [2, 3, 4, 6, 9])
def test_interpolation_matches_scipy(method, n_points):
    rng = np.random.default_rng(1000 + n_points)
    for _ in range(5):
        x, y = random_monotone_curve(rng, n_points)
        x_log = np.log10(x)
        grid = np.linspace(y[0], y[-1], 101)
        np.testing.assert_allclose(interpolate(y, x_log, method)(grid), scipy_interpolant(y, x_log, method)(grid),
                                   rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_matches_scipy_reference_on_random_curves(method):
    rng = np.random.default_rng(7)
    checked = 0
    for trial in range(12):
        n_anchor = 4 + trial % 3
        n_test = 4 + (trial + 1) % 4 if method != "cubic" else n_anchor
        ra, da = random_monotone_curve(rng, n_anchor)
        rt, dt = random_monotone_curve(rng, n_test)
        if max(da[0], dt[0]) >= min(da[-1], dt[-1]) or max(ra[0], rt[0]) >= min(ra[-1], rt[-1]):
            continue
        expected_rate = (10 ** scipy_mean_gap(da, np.log10(ra), dt, np.log10(rt), method) - 1) * 100
        expected_psnr = scipy_mean_gap(np.log10(ra), da, np.log10(rt), dt, method)
        assert bd_rate(ra, da, rt, dt, method).value == pytest.approx(expected_rate, abs=1e-6)
        assert bd_psnr(ra, da, rt, dt, method).value == pytest.approx(expected_psnr, abs=1e-6)
        checked += 1
    assert checked >= 8


# --------------------------------------------------------------------------- exactly known deltas


@pytest.mark.parametrize("method", METHODS)
def test_rates_scaled_by_0_8_give_minus_20_percent(method):
    """Same PSNRs at 80 % of the rate: a constant log-rate shift, so BD-rate is -20 % exactly."""
    result = bd_rate(RATES_KBPS, PSNRS_DB, [0.8 * r for r in RATES_KBPS], PSNRS_DB, method)
    assert result.value == pytest.approx(-20.0, abs=1e-9)
    assert result.unit == "%" and result.overlap == 1.0 and result.warning is None and result.reason is None


@pytest.mark.parametrize("method", METHODS)
def test_half_db_shift_on_a_linear_curve(method):
    """PSNR linear in log10(rate), test 0.5 dB higher at every rate: BD-PSNR is 0.5 dB, and BD-rate is
    the rate ratio that buys 0.5 dB on that line, since every method reproduces a straight line."""
    slope_db_per_decade = 10.0
    log_rates = np.linspace(2.5, 4.0, 5)
    rates = 10 ** log_rates
    anchor_psnr = 20.0 + slope_db_per_decade * log_rates
    psnr = bd_psnr(rates, anchor_psnr, rates, anchor_psnr + 0.5, method)
    assert psnr.value == pytest.approx(0.5, abs=1e-9)
    assert psnr.unit == "dB" and psnr.overlap == 1.0
    rate = bd_rate(rates, anchor_psnr, rates, anchor_psnr + 0.5, method)
    assert rate.value == pytest.approx((10 ** (-0.5 / slope_db_per_decade) - 1) * 100, abs=1e-9)


def test_identical_curves_give_zero():
    for method in METHODS:
        assert bd_rate(RATES_KBPS, PSNRS_DB, RATES_KBPS, PSNRS_DB, method).value == pytest.approx(0, abs=1e-12)
        assert bd_psnr(RATES_KBPS, PSNRS_DB, RATES_KBPS, PSNRS_DB, method).value == pytest.approx(0, abs=1e-12)


# -------------------------------------------------------------------------------------- overlap


def test_overlap_fraction_and_warning_below_75_percent():
    anchor_db = [30.0, 33.0, 36.0, 40.0]
    rates = [100.0, 200.0, 400.0, 800.0]
    full = bd_rate(rates, anchor_db, rates, [32.0, 34.0, 37.0, 40.0])  # shared 32..40 of 30..40
    assert full.overlap == pytest.approx(0.8) and full.warning is None
    partial = bd_rate(rates, anchor_db, rates, [35.0, 38.0, 41.0, 45.0])  # shared 35..40 of 30..45
    assert partial.overlap == pytest.approx(1 / 3)
    assert math.isfinite(partial.value)
    assert "33%" in partial.warning and "75%" in partial.warning and "\n" not in partial.warning
    report = curves_report(points(rates, anchor_db), points(rates, [35.0, 38.0, 41.0, 45.0]))
    assert report["overlap"] == pytest.approx(1 / 3) and report["overlap_log_rate"] == 1.0
    assert report["warning"].startswith("BD-rate:") and "reason" not in report


def test_bd_psnr_overlap_is_along_log_rate():
    result = bd_psnr([100, 1000], [30, 40], [1000, 100_000], [35, 45], "pchip")  # log-rates 2..3 and 3..5
    assert result.overlap == 0.0 and math.isnan(result.value)
    result = bd_psnr([100, 10_000], [30, 40], [1000, 100_000], [35, 45], "pchip")  # shared 3..4 of 2..5
    assert result.overlap == pytest.approx(1 / 3) and result.warning.startswith("BD-PSNR:")


def test_disjoint_curves_give_nan_with_a_reason_and_null_in_json():
    anchor = points([100, 200, 400, 800], [30.0, 32.0, 34.0, 36.0])
    test = points([1000, 2000, 4000, 8000], [40.0, 42.0, 44.0, 46.0])
    result = bd_rate(*zip(*anchor), *zip(*test))
    assert math.isnan(result.value) and result.overlap == 0.0
    assert "do not overlap" in result.reason and "30" in result.reason and "40" in result.reason
    report = curves_report(anchor, test, "akima")
    assert report["bd_rate"] is None and report["bd_psnr"] is None
    assert report["reason"].count("do not overlap") == 2
    assert json.loads(json.dumps(report, allow_nan=False))["bd_rate"] is None


def test_touching_ranges_count_as_no_overlap():
    result = bd_rate([100, 200], [30.0, 35.0], [300, 400], [35.0, 40.0])
    assert math.isnan(result.value) and result.reason


# --------------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("method", METHODS)
def test_unsorted_input_is_sorted_by_rate(method):
    order = [3, 0, 4, 2, 1]
    shuffled_rates = [RATES_KBPS[i] * 0.9 for i in order]
    shuffled_psnrs = [PSNRS_DB[i] + 0.2 for i in order]
    sorted_result = bd_rate(RATES_KBPS, PSNRS_DB, [r * 0.9 for r in RATES_KBPS], [d + 0.2 for d in PSNRS_DB], method)
    assert bd_rate(RATES_KBPS[::-1], PSNRS_DB[::-1], shuffled_rates, shuffled_psnrs, method).value == \
        pytest.approx(sorted_result.value, abs=1e-12)


def test_non_monotonic_curve_is_rejected_naming_the_points():
    with pytest.raises(BadInputError, match=r"test curve is not monotonic.*rate=800, dist=35.*rate=1600, dist=34"):
        bd_rate(RATES_KBPS, PSNRS_DB, [400, 800, 1600, 3200], [31.0, 35.0, 34.0, 38.0])


def test_equal_distortions_and_equal_rates_are_rejected():
    with pytest.raises(BadInputError, match="not monotonic"):
        bd_rate(RATES_KBPS, PSNRS_DB, [400, 800, 1600], [31.0, 33.0, 33.0])
    with pytest.raises(BadInputError, match="anchor curve has two points at the same rate"):
        bd_psnr([400, 400, 800], [31.0, 32.0, 33.0], RATES_KBPS, PSNRS_DB)


def test_too_few_points_are_rejected():
    with pytest.raises(BadInputError, match="anchor curve has 1 point.*needs at least 2"):
        bd_rate([400], [31.0], RATES_KBPS, PSNRS_DB)
    with pytest.raises(BadInputError, match="test curve has 3 point.*cubic method needs at least 4"):
        bd_rate(RATES_KBPS, PSNRS_DB, RATES_KBPS[:3], PSNRS_DB[:3], "cubic")
    for method in ("pchip", "akima"):  # two points: a straight line
        assert math.isfinite(bd_rate(RATES_KBPS[1:3], PSNRS_DB[1:3], RATES_KBPS[1:3], PSNRS_DB[1:3], method).value)


@pytest.mark.parametrize("rates, psnrs, message", [
    ([0.0, 800, 1600], [31.0, 34.0, 36.0], r"anchor curve point 1 \(rate=0.*positive and finite"),
    ([400, -800, 1600], [31.0, 34.0, 36.0], r"point 2 .*positive and finite"),
    ([400, math.inf, 1600], [31.0, 34.0, 36.0], "positive and finite"),
    ([400, math.nan, 1600], [31.0, 34.0, 36.0], "positive and finite"),
    ([400, 800, 1600], [31.0, math.nan, 36.0], r"point 2 .*distortion must be finite"),
    ([400, 800, 1600], [31.0, 34.0, -math.inf], "distortion must be finite"),
    ([400, 800, 1600], [31.0, 34.0], "3 rates but 2 distortions"),
])
def test_bad_values_are_rejected(rates, psnrs, message):
    with pytest.raises(BadInputError, match=message):
        bd_rate(rates, psnrs, RATES_KBPS, PSNRS_DB)


def test_unknown_method_is_rejected():
    with pytest.raises(BadInputError, match="unknown BD method 'spline'"):
        bd_psnr(RATES_KBPS, PSNRS_DB, RATES_KBPS, PSNRS_DB, "spline")


# ------------------------------------------------------------------------------------- MS-SSIM


def test_ms_ssim_db():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(0.999) == pytest.approx(30.0)
    assert ms_ssim_db(0.0) == 0.0
    with pytest.raises(BadInputError, match="MS-SSIM of 1"):
        ms_ssim_db(1.0)
    for bad in (1.01, -0.1, math.nan):
        with pytest.raises(BadInputError, match=r"must be in \[0, 1\]"):
            ms_ssim_db(bad)


# ---------------------------------------------------------------------------------- curve files


def test_load_json_curve_with_extra_keys(tmp_path):
    path = tmp_path / "curve.json"
    path.write_text(json.dumps({"name": "x", "points": [{"bpp": 0.1, "psnr": 30.5, "ms_ssim": 0.9, "rate": 99},
                                                        {"bpp": 0.2, "psnr": 33}]}))
    assert load_curve(path) == [(0.1, 30.5), (0.2, 33.0)]


def test_load_json_curve_with_rate_key(tmp_path):
    path = tmp_path / "curve.json"
    path.write_text(json.dumps({"points": [{"rate": 1000, "psnr": 30.5}, {"rate": 2000, "psnr": 33}]}))
    assert load_curve(path) == [(1000.0, 30.5), (2000.0, 33.0)]


def test_load_csv_curve_with_extra_columns(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text("qp, BPP ,psnr,ms_ssim\n37,0.05,29.1,0.91\n\n32, 0.1 ,31.5,0.95\n")
    assert load_curve(path) == [(0.05, 29.1), (0.1, 31.5)]
    path.write_text("rate,psnr\n500,30\n1000,33\n")
    assert load_curve(path) == [(500.0, 30.0), (1000.0, 33.0)]


def test_load_curve_sniffs_format_without_suffix(tmp_path):
    json_path, csv_path = tmp_path / "a.rd", tmp_path / "b.rd"
    json_path.write_text(' {"points": [{"bpp": 0.1, "psnr": 30}]}')
    csv_path.write_text("bpp,psnr\n0.1,30\n")
    assert load_curve(json_path) == load_curve(csv_path) == [(0.1, 30.0)]


@pytest.mark.parametrize("name, content, message", [
    ("c.json", "", "curve file is empty"),
    ("c.json", "{not json", "not valid JSON"),
    ("c.json", "[1, 2]", "expected a JSON object with a 'points' list"),
    ("c.json", '{"points": []}', "curve has no points"),
    ("c.json", '{"points": [{"bpp": 0.1}]}', "point 1 has no 'psnr'"),
    ("c.json", '{"points": [{"bpp": 0.1, "psnr": 30}, {"kbps": 9, "psnr": 31}]}', "point 2 has no 'bpp' or 'rate'"),
    ("c.json", '{"points": [{"bpp": 0.1, "psnr": 30}, {"rate": 9, "psnr": 31}]}', "points mix 'bpp' and 'rate'"),
    ("c.json", '{"points": [{"bpp": "0.1", "psnr": 30}]}', "point 1 'bpp' is a string"),
    ("c.json", '{"points": [{"bpp": 0.1, "psnr": null}]}', "point 1 'psnr' is not a number"),
    ("c.json", '{"points": [{"bpp": 0.1, "psnr": NaN}]}', "point 1 'psnr' is not finite"),
    ("c.json", '{"points": [3]}', "point 1 is not an object"),
    ("c.csv", "\n\n", "curve file is empty"),
    ("c.csv", "bpp,ssim\n0.1,0.9\n", "CSV header must name bpp \\(or rate\\) and psnr"),
    ("c.csv", "kbps,psnr\n100,30\n", "CSV header must name bpp"),
    ("c.csv", "bpp,psnr\n", "curve has no points"),
    ("c.csv", "bpp,psnr\n0.1,30\n0.2,abc\n", "CSV line 3 'psnr' is not a number"),
    ("c.csv", "bpp,psnr\n0.1\n", "CSV line 2 has 1 columns"),
])
def test_bad_curve_files_give_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(BadInputError, match=message) as info:
        load_curve(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_and_undecodable_curve_files(tmp_path):
    with pytest.raises(BadInputError, match="curve file not found"):
        load_curve(tmp_path / "nope.json")
    with pytest.raises(BadInputError, match="cannot read"):
        load_curve(tmp_path)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00bpp")
    with pytest.raises(BadInputError, match="cannot read"):
        load_curve(binary)


def test_curves_report_rejects_malformed_points():
    with pytest.raises(BadInputError, match=r"anchor point 2 must be a \(rate, distortion\) pair"):
        curves_report([(1, 30), (2, 31, 5)], points(RATES_KBPS, PSNRS_DB))
