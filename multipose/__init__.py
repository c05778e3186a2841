"""multipose: 6D pose estimation of texture-less, symmetric objects with a multi-pose loss.

The entry scripts at the repository root read a config once (``app``) and hand it to the assembly layer
(``experiment``), which builds the settings and objects the config-free layers below it take: ``training`` and
``evaluation`` (loops and metrics), ``inference`` (poses for images), ``data`` and ``models``, the ``core``
(geometry, meshes, renderer, loss) and ``infra`` (atomic files, checkpoints, distributed, progress).
docs/architecture.md shows one training step through them.

Layers, top to bottom (a module imports only its own layer and the ones listed; tests/test_architecture.py
checks every import against this table):

- ``app`` -> ``tools``, ``experiment``, ``config``, ``training``, ``evaluation``, ``inference``, ``data``,
  ``models``, ``core``, ``core.settings``, ``infra``
- ``tools`` -> ``experiment``, ``config``, ``training``, ``evaluation``, ``inference``, ``data``, ``models``,
  ``core``, ``core.settings``, ``infra``
- ``experiment`` -> ``config``, ``training``, ``evaluation``, ``inference``, ``data``, ``models``, ``core``,
  ``core.settings``, ``infra``
- ``config`` -> ``core.settings``, ``infra``
- ``training`` -> ``data``, ``models``, ``core``, ``core.settings``, ``infra``
- ``evaluation`` -> ``inference``, ``data``, ``models``, ``core``, ``core.settings``, ``infra``
- ``inference`` -> ``data``, ``models``, ``core``, ``core.settings``, ``infra``
- ``data`` -> ``core``, ``core.settings``, ``infra``
- ``models`` -> ``core``, ``core.settings``, ``infra``
- ``core`` -> ``core.settings``, ``infra``
- ``core.settings`` -> nothing
- ``infra`` -> nothing
"""

__version__ = "0.1.0"
