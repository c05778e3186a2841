"""Helpers shared by the tests (imported as ``support.data`` and ``support.original``; ``tests/`` is on
``sys.path`` under pytest). Fixtures live in ``tests/conftest.py``.

- :mod:`support.data` -- small meshes and configs, an independent rasteriser, a tiny BOP split;
- :mod:`support.original` -- the original repository's pose head re-implemented for comparisons.
"""
