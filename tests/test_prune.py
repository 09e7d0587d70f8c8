"""Global magnitude pruning: the right fraction, one global threshold, masks held through fine-tuning."""

import pytest
import torch

from cnervcodec.config import FitConfig, build_model_config
from cnervcodec.fit import fine_tune, seeded_network
from cnervcodec.prune import apply_masks, magnitude_masks, prunable, sparsity


def small_network():
    return seeded_network(build_model_config("cnerv", "S", 32, 48), seed=0)


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5, 0.9])
def test_fraction_of_weights_pruned(fraction):
    decoder = small_network().decoder
    apply_masks(decoder, magnitude_masks(decoder, fraction))
    assert sparsity(decoder) == pytest.approx(fraction, abs=1e-3)


def test_threshold_is_global_and_biases_are_kept():
    decoder = small_network().decoder
    weights = prunable(decoder)
    name, small = list(weights.items())[-2]  # the last NeRV block: a few % of all weights
    with torch.no_grad():
        small.mul_(1e-3)  # much smaller than the rest: a global threshold prunes it first
    masks = magnitude_masks(decoder, small.numel() / sum(p.numel() for p in weights.values()))
    assert masks[name].float().mean() < 0.05  # a few of the others are as small as the shrunk ones
    assert all(m.float().mean() > 0.95 for n, m in masks.items() if n != name)
    assert all(p.dim() >= 2 for p in prunable(decoder).values())
    assert not any(n.endswith("bias") for n in masks)


def test_bad_fraction():
    with pytest.raises(ValueError):
        magnitude_masks(small_network().decoder, 1.0)


def test_fine_tune_holds_the_mask(scene):
    frames = scene[:4]
    network = seeded_network(build_model_config("cnerv", "S", frames.shape[2], frames.shape[3]), seed=0)
    masks = magnitude_masks(network.decoder, 0.4)
    result = fine_tune(frames, network, FitConfig(epochs=2, warmup_frac=0.0), torch.device("cpu"),
                       lambda: apply_masks(network.decoder, masks))
    assert result.steps == 4
    for name, weight in prunable(network.decoder).items():
        assert torch.all(weight[~masks[name]] == 0)
    assert sparsity(network.decoder) >= 0.4 - 1e-3
