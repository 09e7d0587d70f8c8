"""Evaluation, kept apart from the codec core: the core never imports it.

``anchors`` (x264 / x265 / SVT-AV1 encoded in process, elementary-stream bytes), ``bdrate``
(Bjontegaard metrics), ``curves`` (RD curve files), ``rdcompare`` (one fair CNeRV-vs-anchors
comparison), ``rdplot`` (the PNG) and ``embedding_analysis`` (the paper's A.8 measures of fitted
embeddings: uniformity, neighbour distance, linear CKA).
"""
