"""``cnerv bd-rate`` and the ``rdcompare`` orchestration behind it.

What is checked, and why:

* ``--curves`` reproduces the published bjontegaard 1.3.0 vector (``tests/data/bdrate_example.json``)
  for pchip, akima and cubic from both documented curve-file formats (JSON and CSV), in JSON and in
  human output: the numbers a user gets from the command are the reference numbers.
* Curves with an exactly known answer (every rate x1.25 or x0.5 at the same PSNRs: +25 % / -50 %,
  full overlap) pin the sign convention and the percent conversion for every method.
* Usage errors exit 2 and bad input exits 1 with one ``cnerv: error:`` line and no traceback, and an
  existing output file is left untouched without ``-y``.
* ``rdcompare`` units: ``pareto`` (monotonic, finite, sorted), ``spread`` (ends kept, distinct),
  ``ladder_values``, ``RdSettings.validate`` and ``bd_against`` on synthetic curves whose BD values
  are known analytically (rates x2 on a curve linear in log-rate: +100 % and -3 dB).
* One real run on a tiny generated clip: the report's structure, bpp = bytes x 8 / (frames x W x H)
  for every point, the results file and the plot; then the honesty check that a CNeRV point's rate
  is exactly the size of the file ``cnerv encode`` writes with the same settings (and its quality is
  what that file decodes to).

The cheap commands (no torch import) and the end-to-end run go through ``python -m cnervcodec`` as
in ``test_cli.py``; bad-input cases that import torch call ``cli.main`` in process to keep the file
fast (same exit codes and stderr, since ``main`` turns every error into ``sys.exit``).
"""

from __future__ import annotations

import json
import math
from importlib.util import find_spec
from pathlib import Path

import pytest

from cnervcodec.eval import rdcompare
from cnervcodec.errors import BadInputError
from conftest import cnerv, moving_scene, run_cnerv, write_y4m

DATA = Path(__file__).resolve().parent / "data"
VECTOR = json.loads((DATA / "bdrate_example.json").read_text())
METHODS = ("pchip", "akima", "cubic")

# The end-to-end clip: 4 frames 48x32. With 4 fit epochs the 8-bit and 2-bit quantizations of one fit
# differ by ~0.8 dB YUV-PSNR, so both survive ``pareto``; a 4-bit point is indistinguishable from the
# 8-bit one after so short a fit and would be dropped.
E2E_FRAMES, E2E_W, E2E_H = 4, 48, 32
E2E_EPOCHS = "4"


def assert_one_error_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cnerv: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err


def write_curve(path: Path, rates, psnrs) -> Path:
    if path.suffix == ".csv":
        path.write_text("bpp,psnr\n" + "".join(f"{r!r},{d!r}\n" for r, d in zip(rates, psnrs)))
    else:
        path.write_text(json.dumps({"points": [{"bpp": r, "psnr": d} for r, d in zip(rates, psnrs)]}))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.y4m"
    write_y4m(path, moving_scene(E2E_FRAMES, E2E_H, E2E_W), E2E_W, E2E_H)
    return path


# ---------------------------------------------------------------------------------------- --curves


@pytest.mark.parametrize("method", METHODS)
def test_curves_reproduce_the_published_vector(tmp_path, method):
    anchor, test = VECTOR["anchor"], VECTOR["test"]
    expected_rate, expected_psnr = VECTOR[f"bd_rate_{method}"], VECTOR[f"bd_psnr_{method}"]
    for suffix in (".json", ".csv"):
        a = write_curve(tmp_path / f"anchor{suffix}", anchor["rate"], anchor["psnr"])
        t = write_curve(tmp_path / f"test{suffix}", test["rate"], test["psnr"])
        out = cnerv("bd-rate", "--curves", str(a), str(t), "--method", method, "--json")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert {"bd_rate", "bd_psnr", "overlap", "method"} <= set(report)
        assert report["method"] == method
        assert round(report["bd_rate"], 4) == round(expected_rate, 4), suffix
        assert round(report["bd_psnr"], 4) == round(expected_psnr, 4), suffix
        assert 0 < report["overlap"] <= 1
        assert "reason" not in report


@pytest.mark.parametrize("method", METHODS)
def test_curves_human_output(tmp_path, method):
    anchor, test = VECTOR["anchor"], VECTOR["test"]
    a = write_curve(tmp_path / "anchor.json", anchor["rate"], anchor["psnr"])
    t = write_curve(tmp_path / "test.csv", test["rate"], test["psnr"])
    human = cnerv("bd-rate", "--curves", str(a), str(t), "--method", method)
    assert human.returncode == 0, human.stderr
    assert "BD-rate" in human.stdout and method in human.stdout
    assert f"{VECTOR[f'bd_rate_{method}']:+.2f} %" in human.stdout  # the published value, sign included
    assert f"{VECTOR[f'bd_psnr_{method}']:+.3f} dB" in human.stdout


def test_curves_human_output_without_overlap(tmp_path):
    """Curves that share no PSNR or rate range: no value, and the reason, rather than a crash."""
    a = write_curve(tmp_path / "anchor.json", [100.0, 200.0, 400.0], [30.0, 33.0, 36.0])
    t = write_curve(tmp_path / "test.json", [1000.0, 2000.0, 4000.0], [40.0, 42.0, 44.0])
    report = json.loads(cnerv("bd-rate", "--curves", str(a), str(t), "--json").stdout)
    assert report["bd_rate"] is None and report["bd_psnr"] is None and "overlap" in report["reason"]
    human = cnerv("bd-rate", "--curves", str(a), str(t))
    assert human.returncode == 0, human.stderr
    assert "n/a" in human.stdout and "no value" in human.stdout


@pytest.mark.parametrize("method", METHODS)
def test_curves_with_known_rate_ratio(tmp_path, method):
    rates, psnrs = VECTOR["anchor"]["rate"], VECTOR["anchor"]["psnr"]
    anchor = write_curve(tmp_path / "anchor.json", rates, psnrs)
    for factor, expected in ((1.25, 25.0), (0.5, -50.0)):
        test = write_curve(tmp_path / f"test_{factor}.csv", [r * factor for r in rates], psnrs)
        out = cnerv("bd-rate", "--curves", str(anchor), str(test), "--method", method, "--json")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["bd_rate"] == pytest.approx(expected, abs=1e-6), factor
        assert report["overlap"] == pytest.approx(1.0, abs=1e-12)
        assert report["bd_psnr"] < 0 if factor > 1 else report["bd_psnr"] > 0


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("args", [(), ("INPUT", "--curves", "A", "T")], ids=["neither", "both"])
def test_input_xor_curves_is_a_usage_error(tmp_path, clip, args):
    a = write_curve(tmp_path / "a.json", [1.0, 2.0], [30.0, 33.0])
    args = tuple(str(clip) if x == "INPUT" else str(a) if x in ("A", "T") else x for x in args)
    out = cnerv("bd-rate", *args)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    # click's usage errors print "Usage:", a hint and one "Error:" line; the error itself is one line.
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--curves" in errors[0], out.stderr


def test_bad_curve_files_exit_1(tmp_path):
    good = write_curve(tmp_path / "good.json", [1.0, 2.0, 4.0], [30.0, 33.0, 36.0])
    dip = write_curve(tmp_path / "dip.csv", [1.0, 2.0, 4.0], [30.0, 34.0, 33.0])
    for args, hint in (((str(tmp_path / "missing.json"), str(good)), "not found"),
                       ((str(good), str(dip)), "not monotonic")):
        out = cnerv("bd-rate", "--curves", *args, "--json")
        assert out.returncode == 1, out.stderr
        assert_one_error_line(out.stderr)
        assert hint in out.stderr and out.stdout == ""


@pytest.mark.parametrize("extra, hint", [
    (("--anchors", "x263"), "x263"),
    (("--points", "2", "--bits-ladder", "8", "--prune-ladder", "0"), "fewer than --points"),
    (("--bits-ladder", "8,x"), "--bits-ladder"),
], ids=["unknown-anchor", "ladder-too-small", "ladder-not-numbers"])
def test_bad_options_exit_1(capsys, clip, extra, hint):
    code, out, err = run_cnerv(capsys, "bd-rate", str(clip), *extra, "-q")
    assert code == 1, err
    assert_one_error_line(err)
    assert hint in err and out == ""


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_existing_output_is_kept_without_y(capsys, tmp_path, clip, option):
    target = tmp_path / ("old.json" if option == "--out" else "old.png")
    target.write_bytes(b"keep me")
    code, out, err = run_cnerv(capsys, "bd-rate", str(clip), option, str(target), "--epochs", "1", "-q")
    assert code == 1, err
    assert_one_error_line(err)
    assert "-y" in err and out == ""
    assert target.read_bytes() == b"keep me"


def test_odd_frame_size_exits_1(capsys, tmp_path):
    odd = tmp_path / "odd.y4m"
    write_y4m(odd, moving_scene(3, 49, 65), 65, 49)
    code, out, err = run_cnerv(capsys, "bd-rate", str(odd), "--anchors", "x264", "--epochs", "1", "-q")
    assert code == 1, err
    assert_one_error_line(err)
    assert "65x49" in err and "odd" in err and out == ""


# --------------------------------------------------------------------------------- rdcompare units


def pt(n_bytes: int, psnr_yuv: float, **extra) -> dict:
    return {"bytes": n_bytes, "bpp": n_bytes / 1000, "psnr_yuv": psnr_yuv, **extra}


def test_pareto_keeps_points_that_improve_with_rate():
    points = [pt(300, 30.0), pt(50, math.nan), pt(100, 25.0), pt(200, 24.0), pt(100, 26.0),
              pt(250, 26.0), pt(400, math.inf), pt(500, 31.0), pt(450, -math.inf)]
    kept = rdcompare.pareto(points)
    assert [(p["bytes"], p["psnr_yuv"]) for p in kept] == [(100, 26.0), (300, 30.0), (500, 31.0)]
    assert all(math.isfinite(p["psnr_yuv"]) for p in kept)
    # Another key: the same rule on that metric alone.
    rgb = [pt(100, 20.0, psnr=30.0), pt(200, 21.0, psnr=29.0), pt(300, 22.0, psnr=31.0)]
    assert [p["bytes"] for p in rdcompare.pareto(rgb, "psnr")] == [100, 300]
    assert rdcompare.pareto([]) == []


def test_spread_keeps_ends_and_distinct_points():
    doubling = [pt(1000 * 2 ** k, 30.0 + k) for k in range(7)]  # bpp 1, 2, ..., 64
    chosen = rdcompare.spread(doubling, 3)
    assert [p["bpp"] for p in chosen] == [1, 8, 64]  # log-spaced: the middle target is exactly 8
    clustered = [pt(b, 30.0 + i) for i, b in enumerate([1000, 1010, 1020, 1030, 100_000])]
    for count in (2, 3, 4):
        chosen = rdcompare.spread(clustered, count)
        rates = [p["bpp"] for p in chosen]
        assert len(chosen) == count and len({id(p) for p in chosen}) == count
        assert rates == sorted(rates) and rates[0] == 1.0 and rates[-1] == 100.0
    assert rdcompare.spread(clustered[:2], 4) == clustered[:2]
    assert rdcompare.spread(clustered, 5) == clustered


def test_ladder_values():
    assert rdcompare.ladder_values("8,6,4", int, "--bits-ladder") == (8, 6, 4)
    assert rdcompare.ladder_values("8, 6,8,4,6", int, "--bits-ladder") == (8, 6, 4)
    assert rdcompare.ladder_values("0,0.2", float, "--prune-ladder") == (0.0, 0.2)
    for text in ("8,x", "", " , "):
        with pytest.raises(BadInputError, match="--bits-ladder"):
            rdcompare.ladder_values(text, int, "--bits-ladder")


def test_rd_settings_validate():
    settings = rdcompare.RdSettings(anchors=("x264",), points=2)
    assert settings.validate() is settings
    bad = [
        (dict(anchors=("x263",)), "x263"),
        (dict(anchors=()), "anchor"),
        (dict(points=1), "--points"),
        (dict(points=17), "--points"),
        (dict(points=3, bits_ladder=(8,), prune_ladder=(0.0, 0.2)), "fewer than --points"),
        (dict(points=2, prune_ladder=(0.0, 1.0)), "--prune-ladder"),
        (dict(points=2, bits_ladder=(8, 0)), "--bits-ladder"),
        (dict(method="linear"), "linear"),
    ]
    for changes, hint in bad:
        with pytest.raises(BadInputError, match=hint):
            rdcompare.RdSettings(**changes).validate()


ANCHOR_BPP = [0.1, 0.2, 0.4, 0.8]
ANCHOR_YUV = [30.0, 33.0, 36.0, 39.0]  # +3 dB per doubling: linear in log-rate
ANCHOR_RGB = [28.0, 31.0, 34.0, 37.0]
ANCHOR_SSIM = [0.90, 0.94, 0.97, 0.985]


def rd_points(rate_factor: float, ms_ssim=tuple(ANCHOR_SSIM)) -> list[dict]:
    """The anchor curve with every rate times ``rate_factor`` (bytes consistent with bpp)."""
    return [{"bytes": round(r * rate_factor * 10_000), "bpp": r * rate_factor, "psnr_yuv": y, "psnr": g, "ms_ssim": s}
            for r, y, g, s in zip(ANCHOR_BPP, ANCHOR_YUV, ANCHOR_RGB, ms_ssim)]


@pytest.mark.parametrize("method", METHODS)
def test_bd_against_cnerv_at_twice_the_rate(method):
    anchor, cnerv_pts = rd_points(1.0), rd_points(2.0)
    result = rdcompare.bd_against(anchor, cnerv_pts, method)
    assert result["bd_rate_psnr"] == pytest.approx(100.0, abs=1e-6)
    assert result["bd_rate_psnr_rgb"] == pytest.approx(100.0, abs=1e-6)
    assert result["bd_rate_ms_ssim"] == pytest.approx(100.0, abs=1e-6)
    assert result["bd_psnr"] < 0
    assert result["bd_psnr"] == pytest.approx(-3.0, abs=1e-6)  # one doubling on a 3 dB/doubling line
    assert result["overlap"] == pytest.approx(1.0, abs=1e-12)
    assert not any("left out" in n for n in result["notes"])
    json.dumps(result, allow_nan=False)  # the report must serialise as strict JSON


def test_bd_against_notes_a_dominated_anchor_point():
    anchor = rd_points(1.0) + [{"bytes": 3000, "bpp": 0.3, "psnr_yuv": 32.0, "psnr": 30.0, "ms_ssim": 0.93}]
    result = rdcompare.bd_against(anchor, rd_points(2.0), "pchip")
    assert result["bd_rate_psnr"] == pytest.approx(100.0, abs=1e-6)  # the dominated point is not used
    assert any("psnr_yuv: 1 of 5 anchor point(s) left out" in n for n in result["notes"]), result["notes"]


def test_bd_against_non_monotonic_ms_ssim_gives_none_with_a_note():
    falling = [0.95, 0.94, 0.93, 0.92]  # MS-SSIM that gets worse as the rate grows
    result = rdcompare.bd_against(rd_points(1.0), rd_points(2.0, ms_ssim=falling), "pchip")
    assert result["bd_rate_ms_ssim"] is None
    assert any("ms_ssim" in n for n in result["notes"]), result["notes"]
    assert result["bd_rate_psnr"] == pytest.approx(100.0, abs=1e-6)  # the other metrics are unaffected
    json.dumps(result, allow_nan=False)


# ---------------------------------------------------------------------------------- end to end


HAS_MATPLOTLIB = find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def rd_run(clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rd")
    out_json, plot = folder / "rd.json", folder / "rd.png"
    args = ["bd-rate", str(clip), "--epochs", E2E_EPOCHS, "--bits-ladder", "8,2", "--prune-ladder", "0",
            "--points", "2", "--anchors", "x264", "--device", "cpu", "--json", "--out", str(out_json), "-q"]
    if HAS_MATPLOTLIB:
        args += ["--plot", str(plot)]
    out = cnerv(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out_json, plot


def check_bpp(points: list[dict]) -> None:
    for p in points:
        assert p["bpp"] == pytest.approx(p["bytes"] * 8 / (E2E_FRAMES * E2E_W * E2E_H), rel=1e-12)


def test_bd_rate_run_report(rd_run):
    summary, out_json, _ = rd_run
    assert {"x264", "cnerv", "metric_definitions", "method"} <= set(summary)
    assert summary["method"] == "pchip" and "x265" not in summary
    x264 = summary["x264"]
    assert {"bd_rate_psnr", "bd_psnr", "bd_rate_ms_ssim", "overlap", "settings", "points"} <= set(x264)
    assert {"crfs", "preset", "versions"} <= set(x264["settings"]) and x264["settings"]["preset"] == "medium"
    assert len(x264["points"]) >= 2
    assert sorted(x264["settings"]["crfs"]) == sorted(p["crf"] for p in x264["points"])
    for p in x264["points"] + summary["cnerv"]["points"]:
        assert {"bpp", "psnr", "psnr_yuv", "ms_ssim", "bytes"} <= set(p)
    check_bpp(x264["points"])
    if x264["bd_rate_psnr"] is None:  # no value without a reason
        assert x264["notes"], x264
    curve = summary["cnerv"]["points"]
    assert len(curve) == 2 and "candidates" not in summary["cnerv"]
    assert [p["bytes"] for p in curve] == sorted(p["bytes"] for p in curve) and curve[0]["bytes"] < curve[1]["bytes"]
    assert curve[0]["psnr_yuv"] < curve[1]["psnr_yuv"]
    check_bpp(curve)

    full = json.loads(out_json.read_text())
    assert full["cnerv"]["points"] == curve and full["x264"]["points"] == x264["points"]
    candidates = full["cnerv"]["candidates"]
    assert len(candidates) == 2 and {c["bits"] for c in candidates} == {8, 2}
    assert all(c["prune"] == 0 for c in candidates)
    check_bpp(candidates)


def test_bd_rate_run_human_table(rd_run):
    """The table printed without --json renders this report (checked in process: no second fit)."""
    from cnervcodec.cli.bdrate import _format_run

    summary, _, _ = rd_run
    text = _format_run(summary, ["x264"])
    assert "CNeRV against:" in text and "BD-rate" in text
    assert sum(line.lstrip().startswith("cnerv ") for line in text.splitlines()) == 2
    assert sum(line.lstrip().startswith("x264 ") and "CRF" in line for line in text.splitlines()) == \
        len(summary["x264"]["points"])


def test_bd_rate_plot_is_a_png(rd_run):
    _, _, plot = rd_run
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cnerv_point_is_the_file_cnerv_encode_writes(rd_run, clip, tmp_path):
    """Same clip, seed, preset and epochs: ``cnerv encode --size S --bits 8`` writes exactly the 8-bit point's bytes."""
    _, out_json, _ = rd_run
    candidate = next(c for c in json.loads(out_json.read_text())["cnerv"]["candidates"] if c["bits"] == 8)
    cnrv = tmp_path / "x.cnrv"
    out = cnerv("encode", str(clip), "-o", str(cnrv), "--size", "S", "--epochs", E2E_EPOCHS, "--bits", "8", "--prune", "0",
                "--device", "cpu", "-y", "--json", "-q")
    assert out.returncode == 0, out.stderr
    encoded = json.loads(out.stdout)
    assert cnrv.stat().st_size == encoded["bytes"]
    assert cnrv.stat().st_size == candidate["bytes"]
    assert encoded["psnr_yuv"] == pytest.approx(candidate["psnr_yuv"], abs=1e-9)
    assert encoded["psnr"] == pytest.approx(candidate["psnr"], abs=1e-9)


def test_bd_against_notes_cnerv_points_left_out_of_one_metric():
    dip = [0.90, 0.95, 0.93, 0.985]  # one CNeRV point is worse in MS-SSIM than a cheaper one
    result = rdcompare.bd_against(rd_points(1.0), rd_points(2.0, ms_ssim=dip), "pchip")
    assert any("ms_ssim: 1 of 4 CNeRV point(s) left out" in n for n in result["notes"]), result["notes"]
    assert result["bd_rate_ms_ssim"] is not None


def test_keep_refuses_a_non_empty_folder_without_overwrite(tmp_path):
    from cnervcodec.cli.bdrate import _keeper

    folder = tmp_path / "streams"
    folder.mkdir()
    (folder / "old.264").write_bytes(b"x")
    with pytest.raises(BadInputError, match="not empty"):
        _keeper(folder, False, str(tmp_path / "in.mp4"))
    keep = _keeper(folder, True, str(tmp_path / "in.mp4"))
    keep("x264_crf27.264", b"\x00\x00\x00\x01")
    assert (folder / "x264_crf27.264").read_bytes() == b"\x00\x00\x00\x01"
    assert (folder / "old.264").read_bytes() == b"x"


def test_bd_rate_bpp_ladder_is_one_rate_controlled_fit_per_rate(clip, tmp_path):
    """The default comparison: each CNeRV point is a `cnerv encode --bpp B` file landing near B."""
    out_json = tmp_path / "ladder.json"
    out = cnerv("bd-rate", str(clip), "--epochs", "40", "--bpp-ladder", "4,8", "--anchors", "x264",
                "--device", "cpu", "--out", str(out_json), "--json", "-q")
    assert out.returncode == 0, out.stderr
    report = json.loads(out_json.read_text())
    points = report["cnerv"]["candidates"]
    assert [p["target_bpp"] for p in points] == [4.0, 8.0]
    assert all(abs(p["bpp"] / p["target_bpp"] - 1) <= 0.15 for p in points)
    assert points[0]["decoder_params"] < points[1]["decoder_params"]  # a network sized for each rate
    assert report["cnerv"]["settings"]["size"] == "auto" and report["cnerv"]["settings"]["bpp_ladder"] == [4.0, 8.0]
