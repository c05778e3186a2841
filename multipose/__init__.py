"""multipose: 6D pose estimation of texture-less, symmetric objects with a multi-pose loss.

Layering (imports only point down):
1. ``config``, ``geometry``, ``checkpoint`` -- leaves;
2. ``mesh`` -> ``render``;
3. ``losses``, ``data``; 4. ``models``; 5. ``training``, ``landscape``, ``evaluation``;
6. the thin CLI scripts at the repository root (``cli`` holds their shared plumbing).
"""

__version__ = "0.1.0"
