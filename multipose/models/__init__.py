"""Models: pure ``nn.Module``s and the file formats of their weights.

- :mod:`~multipose.models.encoder` -- the AAE encoder (:class:`Encoder`, :class:`EncoderConfig`, presets);
- :mod:`~multipose.models.decoder` -- its mirrored decoder;
- :mod:`~multipose.models.autoencoder` -- encoder + decoder and the bootstrapped L2 loss (pretraining);
- :mod:`~multipose.models.weights` -- our ``.pt`` encoder files (a config's ``ENCODER_WEIGHTS``:
  :mod:`multipose.experiment.encoders`);
- :mod:`~multipose.models.aae_npy` -- the original AAE ``.npy`` weights (restricted unpickler, name and layout
  mapping);
- :mod:`~multipose.models.codebook` -- the AAE codebook baseline (nearest code -> rotation);
- :mod:`~multipose.models.head` -- the pose head: K rotation hypotheses with confidences.

No data loading, loops over data or device handling here: callers move modules with ``.to(device)``.
"""

from multipose.models.aae_npy import aae_state_dict, aae_weights_dict, load_aae_npy, read_aae_npy, save_aae_npy
from multipose.models.autoencoder import Autoencoder, AutoencoderOutput, bootstrapped_l2_loss
from multipose.models.codebook import Codebook, CodebookMatch, build_codebook, codebook_rotations
from multipose.models.decoder import Decoder
from multipose.models.encoder import (
    PRESETS,
    Encoder,
    EncoderConfig,
    encoder_config,
    l2_normalize,
    minmax_normalize,
    nhwc_flatten,
    same_padding,
)
from multipose.models.head import HeadOutput, PoseHead, PoseHeadConfig
from multipose.models.weights import (
    ModelFileError,
    encoder_checkpoint,
    encoder_from_checkpoint,
    load_encoder_pt,
    save_encoder,
)

__all__ = [
    "PRESETS",
    "Autoencoder",
    "AutoencoderOutput",
    "Codebook",
    "CodebookMatch",
    "Decoder",
    "Encoder",
    "EncoderConfig",
    "HeadOutput",
    "ModelFileError",
    "PoseHead",
    "PoseHeadConfig",
    "aae_state_dict",
    "aae_weights_dict",
    "bootstrapped_l2_loss",
    "build_codebook",
    "codebook_rotations",
    "encoder_checkpoint",
    "encoder_config",
    "encoder_from_checkpoint",
    "l2_normalize",
    "load_aae_npy",
    "load_encoder_pt",
    "minmax_normalize",
    "nhwc_flatten",
    "read_aae_npy",
    "same_padding",
    "save_aae_npy",
    "save_encoder",
]
