"""The embedding analysis (paper appendix A.8, Table 21): its measures against direct formulas, the file
reader against forged and hostile files, and ``cnerv analyze`` end to end on two real (tiny) fits."""

import json
import math

import pytest
import torch
from click.testing import CliRunner

from conftest import moving_scene, run_cnerv, write_y4m

from cnervcodec.config import build_model_config
from cnervcodec.errors import CheckpointError
from cnervcodec.eval import embedding_analysis as ea
from cnervcodec.safetensors_files import BASELINE_FORMAT, FORMAT_VERSION, MODEL_FORMAT, atomic_save


def gram_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Kornblith et al.'s definition, written out: HSIC of the Gram matrices with the centring matrix H."""
    x, y = x.double(), y.double()
    n = len(x)
    k, l_ = x @ x.T, y @ y.T
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n

    def hsic(a, b):
        return torch.trace(a @ h @ b @ h).item() / (n - 1) ** 2

    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("n,p,q", [(20, 7, 13), (6, 40, 30)])  # feature space, and the Gram-matrix route
def test_cka_matches_the_gram_matrix_definition(n, p, q):
    x, y = randn(n, p, seed=1), randn(n, q, seed=2) + randn(n, 1, seed=3) * 2.0
    assert ea.linear_cka(x, y) == pytest.approx(gram_cka(x, y), rel=1e-10)
    assert ea.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_rotation_and_isotropic_scaling():
    x, y = randn(30, 8, seed=4), randn(30, 5, seed=5)
    q, _ = torch.linalg.qr(randn(8, 8, seed=6))
    base = ea.linear_cka(x, y)
    assert ea.linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert ea.linear_cka(x * 7.5, y * 0.01) == pytest.approx(base, rel=1e-10)
    assert ea.linear_cka(x + 3.0, y) == pytest.approx(base, rel=1e-10)  # centred: a shift changes nothing


def test_cka_of_independent_data_is_small_and_the_matrix_is_symmetric():
    x, y = randn(2000, 4, seed=7), randn(2000, 4, seed=8)
    assert ea.linear_cka(x, y) < 0.02
    q, _ = torch.linalg.qr(randn(6, 4, seed=9))  # orthonormal columns: x @ q.T keeps x's Gram matrix
    matrix = ea.cka_matrix([x, y, x @ q.T])
    for i in range(3):
        assert matrix[i][i] == pytest.approx(1.0, abs=1e-12)
        for j in range(3):
            assert matrix[i][j] == matrix[j][i]
    assert matrix[0][2] == pytest.approx(1.0, abs=1e-12)  # the same embedding, rotated into 6 dimensions
    assert matrix[0][1] == pytest.approx(ea.linear_cka(x, y))
    assert math.isnan(ea.linear_cka(torch.ones(5, 3), x[:5]))  # a constant embedding has no alignment


def test_uniformity_against_a_double_loop_and_in_blocks(monkeypatch):
    emb = randn(9, 5, seed=10)
    pairs = [(emb[i] - emb[j]).norm().item() for i in range(9) for j in range(i + 1, 9)]
    assert ea.uniformity(emb) == pytest.approx(sum(pairs) / len(pairs), rel=1e-12)
    monkeypatch.setattr(ea, "BLOCK_ELEMENTS", 20)  # 2 rows at a time: the blocked sum is the same
    assert ea.uniformity(emb) == pytest.approx(sum(pairs) / len(pairs), rel=1e-12)
    assert math.isnan(ea.uniformity(emb[:1]))


def test_neighbour_and_normalized_distance_on_a_line():
    emb = torch.tensor([[0.0], [1.0], [3.0]])
    assert ea.neighbour_distance(emb) == pytest.approx(1.5)
    measures = ea.embedding_measures(emb, torch.tensor([0, 2]), torch.tensor([1]))
    assert measures["uniformity_all"] == pytest.approx((1 + 3 + 2) / 3, abs=1e-4)
    assert measures["uniformity_seen"] == 3.0 and measures["uniformity_unseen"] is None  # one unseen frame
    assert measures["normalized_distance"] == pytest.approx(1.5 / 2.0)
    none_unseen = ea.embedding_measures(randn(10, 3, seed=11), torch.arange(10), torch.arange(0))
    assert none_unseen["uniformity_unseen"] is None
    assert none_unseen["normalized_distance"] == pytest.approx(
        none_unseen["neighbour_distance"] / none_unseen["uniformity_all"], abs=1e-3)


def info(arch, frames, holdout=5):
    return json.dumps({"fit": {"arch": arch, "input": {"frames": frames}}, "fit_config": {"holdout": holdout}})


def write_baseline(path, embeddings, arch="convae", frames=None, **extra_meta):
    meta = {"format": BASELINE_FORMAT, "version": FORMAT_VERSION, "info": info(arch, frames or len(embeddings))}
    atomic_save(path, {"embeddings": embeddings, "weight": torch.zeros(3)}, meta | extra_meta)
    return path


def write_nerv(path, frames=10):
    config = build_model_config("nerv", "S", 32, 32, n_frames=frames).to_dict()
    meta = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "model_config": json.dumps(config),
            "info": info("nerv", frames)}
    atomic_save(path, {"network.stem.w": torch.zeros(2)}, meta)
    return path, config


def test_load_embeddings_of_a_baseline_and_a_nerv_file(tmp_path):
    from cnervcodec.embedding import frame_times, index_encoding

    embeddings = randn(10, 4, 2, 3, seed=12).float()
    item = ea.load_embeddings(write_baseline(tmp_path / "ae.safetensors", embeddings))
    assert (item.label, item.arch, tuple(item.embeddings.shape)) == ("ae", "convae", (10, 24))
    assert item.embeddings.dtype == torch.float64 and torch.equal(item.embeddings, embeddings.reshape(10, -1).double())
    assert item.unseen.tolist() == [2, 7] and len(item.seen) == 8
    path, config = write_nerv(tmp_path / "nerv.safetensors")
    nerv = ea.load_embeddings(path, label="NeRV")
    expected = index_encoding(frame_times(torch.arange(10), 10), config["nerv_pe_freqs"], config["nerv_pe_base"])
    assert nerv.label == "NeRV" and nerv.arch == "nerv" and torch.equal(nerv.embeddings, expected.double())
    report = ea.analyze([item, nerv])
    assert [m["dim"] for m in report["methods"]] == [24, 2 * config["nerv_pe_freqs"]]
    assert report["cka"]["labels"] == ["ae", "NeRV"] and report["cka"]["matrix"][0][0] == 1.0


def test_hostile_files_give_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    nan = randn(10, 3, seed=13).float()
    nan[4, 1] = float("nan")
    no_embeddings = tmp_path / "none.safetensors"
    atomic_save(no_embeddings, {"w": torch.zeros(2)}, {"format": BASELINE_FORMAT, "version": FORMAT_VERSION,
                                                        "info": info("convae", 10)})
    other = tmp_path / "other.safetensors"
    atomic_save(other, {"w": torch.zeros(2)}, {"format": "cnervcodec.checkpoint", "version": FORMAT_VERSION})
    bad_nerv = tmp_path / "bad_nerv.safetensors"
    atomic_save(bad_nerv, {"w": torch.zeros(2)}, {"format": MODEL_FORMAT, "version": FORMAT_VERSION,
                                                   "model_config": json.dumps({"arch": "nerv", "widths": "x"}),
                                                   "info": info("nerv", 10)})
    cases = {
        write_baseline(tmp_path / "rows.safetensors", randn(9, 3).float(), frames=10): "shape",
        write_baseline(tmp_path / "flat.safetensors", randn(10).float()): "shape",
        write_baseline(tmp_path / "nan.safetensors", nan): "finite",
        write_baseline(tmp_path / "huge.safetensors", randn(1, 3).float(), frames=10**7): "between",
        write_baseline(tmp_path / "noinfo.safetensors", randn(10, 3).float(), info="[1]"): "fit info",
        no_embeddings: "no embeddings",
        garbage: "safetensors",
        tmp_path / "missing.safetensors": "no such file",
        other: "cnervcodec.checkpoint",
        bad_nerv: "model config",
    }
    for path, words in cases.items():
        with pytest.raises(CheckpointError) as caught:
            ea.load_embeddings(path)
        message = str(caught.value)
        assert words in message and str(path) in message and "\n" not in message, message


def test_cli_table_json_and_refusals(tmp_path, capsys):
    a = write_baseline(tmp_path / "a.safetensors", randn(10, 6, seed=14).float())
    b, _ = write_nerv(tmp_path / "b.safetensors")
    runner = CliRunner()
    from cnervcodec.cli.main import cli

    text = runner.invoke(cli, ["analyze", str(a), str(b), "--label", "AE", "--label", "NeRV"])
    assert text.exit_code == 0, text.output
    assert "AE" in text.output and "nerv" in text.output and "linear CKA" in text.output
    result = runner.invoke(cli, ["analyze", str(a), str(b), "--json"])
    report = json.loads(result.output)
    assert set(report) == {"methods", "cka"} and report["cka"]["labels"] == ["a", "b"]
    assert set(report["methods"][0]) >= {"label", "arch", "frames", "dim", "uniformity_seen", "uniformity_unseen",
                                         "uniformity_all", "neighbour_distance", "normalized_distance"}
    assert runner.invoke(cli, ["analyze", str(a), "--label", "x", "--label", "y"]).exit_code == 2
    short = write_baseline(tmp_path / "short.safetensors", randn(8, 6, seed=15).float())
    for args in (["analyze", str(a), str(short)], ["analyze", str(tmp_path / "nope.safetensors")]):
        code, out, err = run_cnerv(capsys, *args)
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "different numbers of frames" in run_cnerv(capsys, "analyze", str(a), str(short))[2]


def test_cli_plot_and_missing_matplotlib(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    a = write_baseline(tmp_path / "a.safetensors", randn(10, 6, seed=16).float())
    png = tmp_path / "cka.png"
    code, out, err = run_cnerv(capsys, "analyze", str(a), str(a), "--plot", str(png), "--json")
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(out)["plot"] == str(png)
    code, _, err = run_cnerv(capsys, "analyze", str(a), "--plot", str(png))
    assert code == 1 and "-y" in err
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    code, _, err = run_cnerv(capsys, "analyze", str(a), "--plot", str(tmp_path / "other.png"))
    assert code == 1 and "pip install" in err and "matplotlib" in err and len(err.strip().splitlines()) == 1


def test_analyze_two_real_fits_end_to_end(tmp_path, capsys):
    """``cnerv fit`` (CNeRV and NeRV, 1 epoch on 10 generated frames) then ``cnerv analyze`` on both files."""
    clip = tmp_path / "clip.y4m"
    write_y4m(clip, moving_scene(10, 32, 48), 48, 32)
    for arch in ("cnerv", "nerv"):
        code, _, err = run_cnerv(capsys, "fit", str(clip), "--arch", arch, "--epochs", "1", "--holdout", "5",
                                 "--device", "cpu", "-q", "-o", str(tmp_path / f"{arch}.safetensors"))
        assert code == 0, err
    code, out, err = run_cnerv(capsys, "analyze", str(tmp_path / "cnerv.safetensors"),
                               str(tmp_path / "nerv.safetensors"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [m["arch"] for m in report["methods"]] == ["cnerv", "nerv"]
    for method in report["methods"]:
        assert method["frames"] == 10 and method["unseen_frames"] == 2
        for key in ("uniformity_seen", "uniformity_unseen", "uniformity_all", "neighbour_distance",
                    "normalized_distance"):
            assert math.isfinite(method[key]) and method[key] > 0, (method["arch"], key)
    matrix = report["cka"]["matrix"]
    assert matrix[0][0] == 1.0 and matrix[1][1] == 1.0 and matrix[0][1] == matrix[1][0]
