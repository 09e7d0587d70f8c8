"""The FLOP counter against hand counts: a 1x1 convolution, a linear layer, and a whole tiny network."""

import torch
from torch import nn

from cnervcodec.config import build_model_config
from cnervcodec.flops import TRAIN_FACTOR, frame_flops, matmul_peak_flops, module_macs


def test_a_1x1_convolution_costs_its_output_elements_times_its_input_channels():
    conv = nn.Conv2d(8, 16, kernel_size=1)
    macs = module_macs(conv, torch.empty(2, 8, 5, 7, device="meta"))
    assert macs == {"": 2 * 16 * 5 * 7 * 8}  # batch 2, 16 x 5 x 7 outputs, 8 multiply-adds each


def test_a_3x3_convolution_and_a_linear_layer_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.PixelShuffle(2), nn.Flatten(), nn.Linear(1 * 6 * 8, 10))
    macs = module_macs(net, torch.randn(1, 3, 3, 4))
    assert macs == {"0": 4 * 3 * 4 * (3 * 3 * 3), "3": 10 * 48}  # PixelShuffle: no arithmetic, not counted


def test_the_network_count_matches_a_hand_count_of_its_layers():
    config = build_model_config("cnerv", "S", 32, 48)
    counted = frame_flops(config)
    (n_h, n_w), d, raw = config.embedding.grid, config.embedding.dim, config.embedding.raw_dim
    cube_h, cube_w = config.cube_size
    widths, strides = config.widths, config.strides
    stem = n_h * n_w * widths[0] * cube_h * cube_w * d
    height, width = n_h * cube_h, n_w * cube_w
    blocks = 0
    for c_in, c_out, s in zip(widths, widths[1:], strides):
        blocks += height * width * c_out * s * s * c_in * 9  # the 3x3 convolution, before the shuffle
        height, width = height * s, width * s
    assert (height, width) == config.padded_size
    k = config.head_kernel
    head = height * width * 3 * widths[-1] * k * k
    assert counted.decoder_macs == stem + blocks + head
    assert counted.encoder_macs == n_h * n_w * d * raw
    assert counted.decode_flops == 2 * counted.decoder_macs
    assert counted.train_flops == TRAIN_FACTOR * 2 * (counted.encoder_macs + counted.decoder_macs)
    assert [name for name, _ in counted.layers][:2] == ["encoder.reduce", "decoder.stem.to_cube"]


def test_a_1080p_network_is_counted_without_allocating_it():
    counted = frame_flops(build_model_config("cnerv", "S", 1080, 1920))
    assert 10e9 < counted.decode_flops < 100e9
    assert frame_flops(build_model_config("nerv", "S", 32, 48, n_frames=4)).encoder_macs == 0


def test_the_measured_matmul_peak_is_a_positive_rate():
    assert matmul_peak_flops(torch.device("cpu"), n=64, seconds=0.01) > 0
