"""The byte format, and only the byte format, mirroring ``bitstream_spec.md``: no torch here, directly or not.

``chunks`` (framing: preamble, chunk walk, CRCs, bounded reads), ``records`` (the plain data a file
carries), ``tensor_records`` and ``network_fields`` (pieces both layouts share), ``stream`` (the
``.cnrv`` layout), ``model_file`` (the ``.cnrvm`` layout), ``entropy`` (coding integer symbols) and
``describe`` (what ``cnerv info`` reports, as plain data). Importing this package imports none of them.
"""
