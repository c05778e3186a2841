"""Small settings objects of the core, free of torch (so the config layer can build them cheaply).

Like PyTorch3D's ``RasterizationSettings``: the core takes these (or plain arguments), never an experiment
config; :mod:`multipose.config` parses files into them and :mod:`multipose.experiment` assembles the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "DEFAULT_DEPTH_MAX",
    "ENCODER_INPUT_SIZES",
    "HARD_POOLS",
    "VIEW_SAMPLING_METHODS",
    "LossParameters",
    "ViewSampling",
]

#: Input size (pixels) of each encoder preset (``[Encoder] ARCH``); :mod:`multipose.models.encoder` builds its
#: presets from it, so crops and encoder agree by construction.
ENCODER_INPUT_SIZES = MappingProxyType({"aae": 128, "small": 64})
#: The depth-error clamp d_max (mm) when a config sets none.
DEFAULT_DEPTH_MAX = 30.0

#: Methods of drawing training rotations: the original's distributions (:mod:`multipose.data.sampling`
#: implements and documents each).
VIEW_SAMPLING_METHODS = (
    "sundermeyer-random",
    "sphere",
    "sphere-simple",
    "sphere-fixed",
    "sphere-wolfram",
    "sphere-wolfram-fixed",
    "tless",
    "tless-simple",
    "fixed",
    "viewsphere-aug",
    "viewsphere-aug-no-conv",
    "mixed",
    "quat",
)
#: Policies of the pool of hard samples (:mod:`multipose.data.sampling`).
HARD_POOLS = ("replace", "accumulate")


@dataclass(frozen=True)
class ViewSampling:
    """How training rotations are drawn.

    ``base``: one of :data:`VIEW_SAMPLING_METHODS`, or a path to a file of rotations
    (``.npy``/``.p``/``.pkl``/``.pickle``); ``hard``: mix in hard samples; ``reuse``: redraw the same rotations.
    """

    base: str
    hard: bool = False
    reuse: bool = False

    @property
    def is_file(self) -> bool:
        """Whether ``base`` is a rotation file rather than a method."""
        return self.base not in VIEW_SAMPLING_METHODS


@dataclass(frozen=True)
class LossParameters:
    """Constants of the multi-pose loss.

    ``depth_max``: depth-error clamp d_max (mm); ``pose_max``: angle (degrees) beyond which two
    hypotheses pay no diversity penalty; ``gamma``: weight of the confidence-independent term;
    ``depth_normalization``: ``"union"`` (sum over the silhouettes' union) or ``"image"`` (all pixels).
    """

    depth_max: float
    pose_max: float
    gamma: float
    depth_normalization: str = "union"
