"""The ``cnerv`` command line: click commands, paths, progress, device choice, JSON and text output, exit codes.

``main`` (the group, ``fit`` and ``metrics``), ``codec`` (``encode``, ``decode``, ``info``), ``model``
(``cnerv model``), ``bdrate`` (``cnerv bd-rate``), ``common`` (what they share) and ``text`` (report
formatting). Nothing outside this package imports it, and it holds no codec logic.
"""
