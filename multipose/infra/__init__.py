"""Infrastructure the whole package uses and that knows nothing of pose estimation: error classes, atomic
writes, safe loading, checkpoints, ``torch.distributed``, run-folder locks, progress bars, TensorBoard,
phase timers and figure files. Imports nothing else from ``multipose``."""
