"""Exceptions for bad user input.

Every error a user can cause (a bad config value, an unreadable mesh, a corrupt checkpoint) raises a
subclass of :class:`UserInputError` whose message names what is wrong and how to fix it. Entry points
turn it into one ``error: ...`` line on stderr and a non-zero exit (see :mod:`multipose.app.cli`).
"""


class UserInputError(Exception):
    """Bad input from the user; the message is shown as is, without a traceback."""

    exit_code = 1


class ConfigError(UserInputError):
    """An invalid configuration file or ``--set`` override (exit code 2)."""

    exit_code = 2


class MeshError(UserInputError):
    """A CAD model file that cannot be used (missing, empty, not a triangle mesh, non-finite)."""


class DataError(UserInputError):
    """A data file or folder that cannot be used: a background folder without readable images, a
    rotation file or dataset file (pickle / ``.npz``) that is missing, corrupt or of the wrong shape."""


class ModelFileError(UserInputError):
    """A weights, encoder, checkpoint or codebook file that cannot be used (e.g. a head of another K or object);
    the message names the file and tensor (exit code 2)."""

    exit_code = 2


class InputFileError(UserInputError):
    """An image, camera or boxes file given to ``predict.py`` that cannot be used (exit code 2, nothing
    written)."""

    exit_code = 2


class RunFolderError(UserInputError):
    """The run folder belongs to another experiment (or cannot be used)."""

    exit_code = 2


class NumericalError(UserInputError):
    """Training produced a NaN or infinite loss or gradient."""


class PreflightError(ConfigError):
    """An asset the config names is missing or malformed (exit code 2, before any work)."""


class LandscapeError(UserInputError):
    """A landscape folder whose files are missing or do not match."""


class WriteError(UserInputError):
    """A file could not be written (disk full, permissions, ...); the previous file is intact."""


class CheckpointRefused(UserInputError):
    """A checkpoint that only an unsafe load (running code named in the file) could read."""
