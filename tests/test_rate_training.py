"""Rate-aware training (rate_training): the rate model, learned steps, coding on them, the CLI switches."""

import json
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from cnervcodec.codec import code_fit, decode
from cnervcodec.config import CompressionConfig, EmbeddingConfig, FitConfig, ModelConfig
from cnervcodec.errors import BadInputError
from cnervcodec.fit import CheckpointPolicy, FitInterrupted, fit
from cnervcodec.format import entropy
from cnervcodec.format.records import STREAM_CODERS
from cnervcodec.format.stream import read_container
from cnervcodec.model import bitstream_tensors
from cnervcodec.quantize import dequantize, quantize, step_params
from cnervcodec.rate_estimate import rate_estimate
from cnervcodec.rate_training import (
    EMBEDDINGS,
    LAMBDA_MAX,
    LAMBDA_MIN,
    LAMBDA_RAMP_FRACTION,
    adapted_lambda,
    geometric_bits,
    geometric_theta,
    lambda_at,
    noisy_or_rounded,
    round_ste,
)
from cnervcodec.ratecontrol import coding_candidates, solve, target_from_bpp
from cnervcodec.tensor_coding import code_symbols
from conftest import moving_scene, run_cnerv, write_y4m

CPU = torch.device("cpu")


def tiny_config(height: int = 32, width: int = 32) -> ModelConfig:
    return ModelConfig(arch="cnerv", height=height, width=width, embedding=EmbeddingConfig(grid=(2, 2), dim=8, freqs=4),
                       widths=(16, 12, 8), strides=(2, 2)).validate()


@pytest.fixture(scope="module")
def clip():
    return moving_scene(n_frames=8, height=32, width=32)


@pytest.fixture(scope="module")
def rate_fit(clip):
    torch.set_num_threads(2)
    return fit(clip, tiny_config(), FitConfig(epochs=12, lr=5e-3, batch=2, rate_lambda=1.0), CPU)


# ----------------------------------------------------------------------------------- the rate model


@pytest.mark.parametrize("theta", [0.01, 0.2, 0.5, 0.9, 0.99])
def test_theta_is_the_maximum_likelihood_one_for_its_mean(theta):
    mean_abs = 2 * theta / (1 - theta**2)  # E|k| of the two-sided geometric law
    assert float(geometric_theta(torch.tensor(mean_abs, dtype=torch.float64))) == pytest.approx(theta, rel=1e-9)


def test_bits_are_the_negative_log_likelihood_under_the_two_sided_geometric_law():
    k = torch.tensor([0, 0, 1, -1, 3, -2, 0, 5], dtype=torch.float64)
    theta = float(geometric_theta(k.abs().mean()))
    direct = -sum(math.log2((1 - theta) / (1 + theta) * theta ** abs(v)) for v in k.tolist())
    assert float(geometric_bits(k)) == pytest.approx(direct, rel=1e-9)
    assert math.isfinite(float(geometric_bits(torch.zeros(100))))  # all-zero symbols: tiny, finite


def test_estimate_matches_the_laplace_coder_on_laplacian_symbols():
    rng = np.random.default_rng(0)
    k = np.rint(rng.laplace(0.0, 3.0, 20_000)).astype(np.int64)
    symbols = (k - k.min()).astype(np.int32)
    bits = int(np.ceil(np.log2(symbols.max() + 1)))
    real = len(code_symbols(symbols, bits, STREAM_CODERS).payload) * 8
    estimate = float(geometric_bits(torch.from_numpy(k.astype(np.float64))))
    assert abs(estimate / real - 1) < 0.01, (estimate, real)


def test_straight_through_rounding_and_the_noise_proxy():
    y = torch.tensor([0.2, 1.7, -2.6], requires_grad=True)
    out = round_ste(y)
    assert out.tolist() == [0.0, 2.0, -3.0]
    out.sum().backward()
    assert y.grad.tolist() == [1.0, 1.0, 1.0]
    generator = torch.Generator().manual_seed(0)
    noisy = noisy_or_rounded(torch.zeros(10_000), generator)
    assert noisy.min() >= -0.5 and noisy.max() < 0.5 and abs(float(noisy.mean())) < 0.02
    assert noisy_or_rounded(torch.tensor([0.6]), None).item() == 1.0


# ----------------------------------------------------------------------------------- steps in the file


def test_step_params_put_values_on_the_grid_with_zero_exact():
    values = np.array([-0.31, 0.0, 0.004, 0.2, 0.52], np.float32)
    params = step_params(values, 0.1)
    symbols = quantize(values, params)
    restored = dequantize(symbols, params, values.shape)
    assert restored[1] == 0.0 and restored[2] == 0.0
    np.testing.assert_allclose(restored, np.rint(values / 0.1) * 0.1, atol=1e-6)
    assert params.bits == 4  # k from -3 to 5: 9 symbols
    with pytest.raises(ValueError, match="positive"):
        step_params(values, 0.0)
    with pytest.raises(ValueError, match="bits"):
        step_params(np.array([-1.0, 1.0], np.float32), 1e-6)


def test_rate_aware_fit_learns_a_step_per_tensor_and_codes_on_it(rate_fit, clip):
    names = [name for name, _ in bitstream_tensors(rate_fit.network.decoder)]
    assert set(rate_fit.quant_steps) == set(names) | {EMBEDDINGS}
    assert all(step > 0 and math.isfinite(step) for step in rate_fit.quant_steps.values())
    data = code_fit(rate_fit, Fraction(25), CompressionConfig(weight_step_scale=1.0, embed_step_scale=1.0))
    container = read_container(data)
    for (name, tensor), record in zip(bitstream_tensors(rate_fit.network.decoder), container.decoder):
        assert record.quant.scales[0] == np.float32(rate_fit.quant_steps[name])
    assert container.header.weight_bits == max(r.quant.bits for r in container.decoder)
    frames = decode(data)
    assert frames.shape == clip.shape
    coarser = code_fit(rate_fit, Fraction(25), CompressionConfig(weight_step_scale=2.0, embed_step_scale=2.0))
    assert len(coarser) < len(data)


def test_estimated_bytes_are_close_to_the_file(rate_fit):
    data = code_fit(rate_fit, Fraction(25), CompressionConfig(weight_step_scale=1.0, embed_step_scale=1.0))
    estimate = rate_estimate(data)
    assert estimate.file_bytes == len(data) and 0 < estimate.payload_bytes < len(data)
    # A 12-epoch toy fit's stem is still near its uniform initialisation, far from Laplacian, so the
    # categorical coder beats the model there; on real fits the gap is measured in benchmarks/rd.py.
    assert abs(estimate.error) < 0.15, estimate.to_dict()


def test_learned_steps_need_a_rate_aware_fit(clip):
    plain = fit(clip, tiny_config(), FitConfig(epochs=1, batch=4), CPU)
    assert plain.quant_steps is None
    with pytest.raises(BadInputError, match="rate-aware"):
        code_fit(plain, Fraction(25), CompressionConfig(weight_step_scale=1.0))


def test_a_larger_lambda_writes_a_smaller_file(clip, rate_fit):
    heavy = fit(clip, tiny_config(), FitConfig(epochs=12, lr=5e-3, batch=2, rate_lambda=50.0), CPU)
    config = CompressionConfig(weight_step_scale=1.0, embed_step_scale=1.0)
    assert len(code_fit(heavy, Fraction(25), config)) < len(code_fit(rate_fit, Fraction(25), config))


def test_rate_aware_resume_ends_where_an_uninterrupted_fit_ends(clip, tmp_path: Path):
    # 3 steps an epoch: noise, then rounding; a rate target, so lambda moves and must resume where it was
    config = FitConfig(epochs=4, lr=5e-3, batch=3, seed=3, rate_lambda=1.0, rate_target_bits=1000.0)
    straight = fit(clip, tiny_config(), config, CPU)
    ckpt, calls = tmp_path / "run.ckpt", {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(FitInterrupted):
        fit(clip, tiny_config(), config, CPU, checkpoint=CheckpointPolicy(ckpt, 1e9), should_stop=stop)
    resumed = fit(clip, tiny_config(), config, CPU, resume=ckpt)
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed.quant_steps == pytest.approx(straight.quant_steps, rel=1e-5)
    assert straight.rate_lambda != 1.0 and resumed.rate_lambda == pytest.approx(straight.rate_lambda, rel=1e-9)


def test_rate_search_of_a_rate_aware_fit_scales_its_steps():
    candidates = coding_candidates(None, learned_steps=True)
    assert all(c.learned_steps for c in candidates) and len(candidates) == 28
    assert any(c.weight_step_scale == 1.0 and c.embed_step_scale == 1.0 for c in candidates)
    target = target_from_bpp(0.04, 120, 144, 176)
    assert solve(target, 120, 144, 176, rate_aware=True).decoder_param_count() > \
        solve(target, 120, 144, 176).decoder_param_count()  # rate-aware weights code in fewer bits


def test_fallback_codings_scale_every_step_alike_and_only_for_learned_steps(rate_fit):
    from cnervcodec.ratecontrol import fallback_candidates

    assert fallback_candidates(False) == []
    fallbacks = fallback_candidates(True)
    assert all(c.weight_step_scale == c.embed_step_scale for c in fallbacks)
    sizes = {c.weight_step_scale: len(code_fit(rate_fit, Fraction(25), c)) for c in fallbacks[:3]}
    finest, coarsest = min(sizes), max(sizes)
    assert sizes[finest] > sizes[coarsest]  # a finer grid writes more bytes: how a far-off fit still lands


def test_lambda_ramps_in_then_follows_the_rate_target():
    ramp_steps = int(LAMBDA_RAMP_FRACTION * 1000)
    assert lambda_at(0, 1000, 2.0) == pytest.approx(2.0 / ramp_steps)
    assert lambda_at(ramp_steps // 2 - 1, 1000, 2.0) == pytest.approx(1.0) and lambda_at(500, 1000, 2.0) == 2.0
    assert adapted_lambda(1.0, 1200.0, 1000.0) > 1.0 > adapted_lambda(1.0, 800.0, 1000.0)
    assert adapted_lambda(1.0, 1000.0, 1000.0) == pytest.approx(1.0)
    assert adapted_lambda(LAMBDA_MAX, 1e9, 1.0) == LAMBDA_MAX and adapted_lambda(LAMBDA_MIN, 0.0, 1e9) == LAMBDA_MIN


def test_a_rate_target_moves_lambda_toward_it(clip, rate_fit):
    """Same start (lambda 1): a target far below the fit's rate raises lambda and shrinks the file, one
    far above lowers it; without a target lambda stays where it started."""
    assert rate_fit.rate_lambda == 1.0
    estimated = rate_estimate(code_fit(rate_fit, Fraction(25), CompressionConfig(weight_step_scale=1.0)))
    bits = estimated.estimated_payload_bytes * 8
    config = FitConfig(epochs=12, lr=5e-3, batch=2, rate_lambda=1.0)
    low = fit(clip, tiny_config(), replace(config, rate_target_bits=bits / 4), CPU)
    high = fit(clip, tiny_config(), replace(config, rate_target_bits=bits * 4), CPU)
    assert low.rate_lambda > 1.0 > high.rate_lambda
    steps = CompressionConfig(weight_step_scale=1.0)
    assert len(code_fit(low, Fraction(25), steps)) < len(code_fit(rate_fit, Fraction(25), steps))


def test_rate_aware_never_touches_the_global_rng(clip):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    fit(clip, tiny_config(), FitConfig(epochs=1, batch=4, rate_lambda=1.0), CPU)
    assert torch.equal(before, torch.random.get_rng_state())


# ----------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def y4m(tmp_path_factory, clip):
    path = tmp_path_factory.mktemp("ra") / "clip.y4m"
    write_y4m(path, clip, 32, 32)
    return path


def test_cli_refuses_bits_with_rate_aware_training_and_lambda_without_it(capsys, y4m, tmp_path):
    code, _, err = run_cnerv(capsys, "encode", str(y4m), "-o", str(tmp_path / "a.cnrv"), "--bits", "6", "--bpp", "1",
                             "--rate-aware", "on")
    assert code == 2 and "--rate-aware off" in err
    code, _, err = run_cnerv(capsys, "encode", str(y4m), "-o", str(tmp_path / "a.cnrv"), "--rate-aware", "off",
                             "--lambda", "2")
    assert code == 2 and "--lambda" in err
    assert not (tmp_path / "a.cnrv").exists()


def test_auto_trains_for_the_rate_only_in_long_enough_fits():
    from cnervcodec.cli.common import RATE_AWARE_MIN_EPOCHS, fit_lambda

    assert fit_lambda("auto", None, True, None, epochs=RATE_AWARE_MIN_EPOCHS) > 0
    assert fit_lambda("auto", None, True, None, epochs=30) == 0.0  # preset fast: off
    assert fit_lambda("auto", 2.0, True, None, epochs=30) == 2.0  # a --lambda asks for it
    assert fit_lambda("auto", None, True, 8, epochs=100) == 0.0  # --bits pins eq. 4: off
    assert fit_lambda("on", None, True, None, epochs=30) > 0


def test_cli_reports_lambda_and_the_estimate(capsys, y4m, tmp_path):
    out = tmp_path / "b.cnrv"
    code, stdout, _ = run_cnerv(capsys, "encode", str(y4m), "-o", str(out), "--bpp", "2", "--epochs", "3", "--json",
                                "-q", "--rate-aware", "on")
    assert code == 0, stdout
    report = json.loads(stdout)
    assert report["rate_aware"] is True and report["lambda"] > 0
    assert report["file_bytes"] == out.stat().st_size == report["bytes"]
    assert abs(report["estimate_error"]) < 0.1
    code, stdout, _ = run_cnerv(capsys, "encode", str(y4m), "-o", str(out), "--bpp", "2", "--epochs", "3", "--json",
                                "-q", "-y", "--rate-aware", "off")
    assert code == 0 and json.loads(stdout)["rate_aware"] is False
