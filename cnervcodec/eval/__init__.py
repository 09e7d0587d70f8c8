"""Evaluation, kept apart from the codec core: the core never imports it.

``anchors`` (x264 / x265 / SVT-AV1 encoded in process, elementary-stream bytes), ``bdrate``
(Bjontegaard metrics), ``curves`` (RD curve files), ``rdcompare`` (one fair CNeRV-vs-anchors
comparison) and ``rdplot`` (the PNG).
"""
