"""cnervcodec: the CNeRV neural video codec (content-adaptive neural representation, BMVC 2022).

The package is split by concern (see docs in the repository): ``video_io`` reads and writes video,
``embedding`` and ``model`` hold the network, ``fit`` trains it, ``metrics`` measures quality and
``cli`` is the thin ``cnerv`` command.
"""

__version__ = "0.1.0"
