"""The paper's comparison baselines (CNeRV paper, table 8), for ``cnerv fit --arch``.

Autoencoders (``convae``, ``convvae``, ``convae-star``) and pixel-wise implicit representations
conditioned on a content code (``siren``, ``ffn``, ``nerf-pe``, ``mlf``), each at the same block grid
and embedding length as CNeRV and the same total parameter count as CNeRV at the same ``--size``
(``config.baseline_config``). They are research baselines: fitted and measured (seen / unseen PSNR,
encoder size, encoding time per frame), saved as safetensors, never coded into ``.cnrv`` files.
The choices the paper leaves open are in ``docs/method.md`` (section "Paper baselines").
"""
