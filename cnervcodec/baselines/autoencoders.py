"""The paper's autoencoder baselines: ConvAE, ConvVAE and ConvAE* (CNeRV paper, table 8).

"They reduce the image into the same block number as CNeRV with strided convolution; the block
embedding length is the same with CNeRV." The encoder here is four stride-2 3x3 convolutions (the
decoder's stages in mirror) to a 1/16 feature map, then one per-block linear layer (a convolution
whose kernel and stride are a block's 1/16 footprint) to ``d`` values per block: the exact reverse
of CNeRV's block stem. The decoder *is* CNeRV's decoder (``model.Decoder``), so the comparison with
CNeRV changes the encoder alone. ConvVAE's encoder gives a mean and a log-variance per value and
trains on a sample with a KL term; its embedding is the mean. ConvAE* keeps the 1/16 feature map as
its code (about 25 times CNeRV's values) behind a light encoder, with a convolutional decoder.

Every network takes frames padded to CNeRV's padded size, floats in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from cnervcodec.baselines.config import BaselineConfig
from cnervcodec.model import Decoder, NervBlock, make_activation


class ConvEncoder(nn.Module):
    """Frames (B, 3, H, W) -> codes (B, out_channels, n_h, n_w): four stride-2 stages, then per block a
    linear map of its 1/16 footprint (``per_block``), or a 3x3 convolution keeping the map (ConvAE*)."""

    def __init__(self, config: BaselineConfig, out_channels: int, per_block: bool = True) -> None:
        super().__init__()
        stages = []
        for c_in, c_out in zip((3,) + config.enc_widths, config.enc_widths):
            stages += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), make_activation("gelu")]
        self.stages = nn.Sequential(*stages)
        cube = config.geometry.cube_size
        last = config.enc_widths[-1]
        self.head = (nn.Conv2d(last, out_channels, kernel_size=cube, stride=cube) if per_block
                     else nn.Conv2d(last, out_channels, kernel_size=3, padding=1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(frames * 2.0 - 1.0))


class ConvAE(nn.Module):
    """ConvAE: ``ConvEncoder`` to d values per block, CNeRV's decoder back."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config, config.embed_dim)
        self.decoder = Decoder(config.geometry)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)[..., : self.config.height, : self.config.width]

    def train_forward(self, frames: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, extra loss): a plain autoencoder adds nothing to the image loss."""
        return self.decode(self.encode(frames)), frames.new_zeros(())


class ConvVAE(ConvAE):
    """ConvVAE: the encoder gives a mean and a log-variance per value; training decodes a sample and adds
    ``kl_weight`` times the mean KL divergence per value from N(0, 1). The embedding is the mean."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        self.encoder = ConvEncoder(config, 2 * config.embed_dim)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)[:, : self.config.embed_dim]

    def train_forward(self, frames: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(frames).chunk(2, dim=1)
        log_var = log_var.clamp(-20.0, 10.0)
        noise = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
        sample = mean + noise * (0.5 * log_var).exp()
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).mean()
        return self.decode(sample), self.config.kl_weight * kl


class StarDecoder(nn.Module):
    """ConvAE*'s decoder: a 3x3 convolution from the 1/16 latent map to C0, then CNeRV's NeRV blocks and head."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        geometry = config.geometry
        widths = config.dec_widths
        self.stem = nn.Sequential(nn.Conv2d(config.embed_dim, widths[0], kernel_size=3, padding=1),
                                  make_activation(geometry.activation))
        self.blocks = nn.Sequential(*[NervBlock(c_in, c_out, stride, geometry.activation)
                                      for c_in, c_out, stride in zip(widths, widths[1:], geometry.strides)])
        self.head = nn.Conv2d(widths[-1], 3, geometry.head_kernel, padding=geometry.head_kernel // 2)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.head(self.blocks(self.stem(code)))) + 1.0) * 0.5


class ConvAEStar(ConvAE):
    """ConvAE*: a light encoder keeps the 1/16 feature map (``embed_dim`` channels) as the code."""

    def __init__(self, config: BaselineConfig) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.encoder = ConvEncoder(config, config.embed_dim, per_block=False)
        self.decoder = StarDecoder(config)


AUTOENCODER_CLASSES = {"convae": ConvAE, "convvae": ConvVAE, "convae-star": ConvAEStar}
