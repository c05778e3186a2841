"""The pose head: K rotation hypotheses with confidences from an encoder code.

Architecture, as the original's ``Model.py`` (its parameter names, so that an original ``state_dict``
loads with ``strict=True``): five dense layers of width 128, each followed by batch norm and ReLU,
where every layer after the first takes the concatenation of the two previous outputs::

    x1 = l01(x0)            x2 = l02([x0, x1])      x3 = l03([x1, x2])
    x4 = l04([x2, x3])      x  = l1([x3, x4])       x  = l2(x) (128 -> 64, batch norm, ReLU)
    y  = l3(x)              (64 -> K * (1 + D), no activation)

``x0`` is the encoder code. The first K outputs are confidence logits (softmax over K); the rest are
K rotation parameters of size D (``D = 6`` for ``6d-pose``, ``D = 4`` for ``quat``, a quaternion
(w, x, y, z) normalised to unit length). For K = 4, a 128-d code and 6d-pose: 159,580 parameters.

Decoding the 6D parameters (``convention``):

- ``opencv`` (heads trained here): ``pytorch3d.transforms.rotation_6d_to_matrix`` (the two vectors
  become the first two *rows* after Gram-Schmidt), read directly as an OpenCV model-to-camera rotation.
- ``original`` (checkpoints of the original's ``train.py``): the original stacked the Gram-Schmidt
  vectors as *columns* (``M^T``) and used the result as a PyTorch3D camera rotation, whose physical
  OpenCV pose is ``diag(-1, -1, 1) @ (M^T)^T = diag(-1, -1, 1) @ M``: the same matrix turned 180
  degrees about the optical axis. This head returns that physical pose.

Population output (``output="population"``, config ``[Training] HEAD: population``; not in the
original): the same dense trunk, then ``l2`` keeps the trunk's width and ``l3`` gives one logit per
anchor rotation of a fixed grid (``codebook_rotations(anchor_views, anchor_inplane)``, the AAE
codebook's grid: 5,832 anchors for 162 x 36). ``HeadOutput.anchor_logits`` holds every anchor's logit
for training (a soft-target cross-entropy, :func:`multipose.core.losses.population_loss`). The K hypotheses
(``decoding``, config ``ANCHOR_DECODING``):

- ``peaks``: the K highest *peaks* -- anchors whose logit is the highest of their neighbourhood (the
  ``NEIGHBOURS`` = 27 anchors nearest to them, themselves included; when fewer than K anchors are peaks,
  the highest other anchors follow) -- each refined to the probability-weighted mean of its
  neighbourhood (quaternions sign-aligned to the peak's, the weights the softmax over all anchors), a
  rotation between the grid's anchors;
- ``top``: the K anchors with the highest logits, as they are (often neighbours of one peak).

Their confidences are the softmax of their K logits. A
regression head moves each hypothesis down the rendered loss's local gradient, which points to the
ground truth only within ~45 degrees on an object without symmetries (docs/main-job.md); the
population output scores every anchor at once, so it needs no such basin.

Fine-tuned encoder layer (``encoder_features > 0``, config ``[Training] FINETUNE_ENCODER``; the original's
later versions): the head starts with its own copy of the encoder's dense layer, ``encoder`` (``nn.Linear``,
``encoder_features`` flat feature maps -> ``input_dim``; state-dict keys ``encoder.weight`` and
``encoder.bias`` as the original's ``Model``), trained with the head; its input is then the frozen
encoder's flattened feature maps (:func:`head_input`) and the code it makes is not L2-normalised.

Several objects (``num_objects`` N > 1, the original's final version, after the paper): the same trunk with an
output layer of ``N * K * (1 + D)``, object-major as the original's -- the N * K confidence logits (a softmax
within each object's K), then each object's K rotation blocks; :meth:`HeadOutput.select` picks each sample's
object. With ``classify`` a classifier of the N objects reads the code ``x0`` (``c1`` 128, ``bnc1``, ``c2`` 64,
``bnc2``, ``c3`` N: the original's layer names, so its state dicts load strictly) and gives ``object_logits``
(logits; the original applied a softmax here). N = 1 is exactly the single-object layout.

The architecture arguments live in :class:`PoseHeadConfig`, which checkpoints store, so a model is
always rebuilt from its arguments and never guessed back from tensor shapes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from pytorch3d.transforms import matrix_to_quaternion, quaternion_to_matrix, rotation_6d_to_matrix
from torch import nn

from multipose.core.geometry import opencv_from_pytorch3d_camera
from multipose.models.codebook import codebook_rotations
from multipose.models.encoder import Encoder, EncoderConfig, l2_normalize, nhwc_flatten

__all__ = [
    "CONVENTIONS",
    "DECODINGS",
    "NEIGHBOURS",
    "OUTPUTS",
    "REPRESENTATIONS",
    "WEIGHT_INITS",
    "HeadOutput",
    "ObjectBlock",
    "PoseHead",
    "PoseHeadConfig",
    "anchor_neighbours",
    "finetuned_encoder",
    "head_input",
    "init_head_weights",
    "with_decoding",
]

#: Parameters per hypothesis for each ``POSE_REPRESENTATION``.
REPRESENTATIONS = {"6d-pose": 6, "quat": 4}
#: How a 6D output becomes an OpenCV rotation (see the module docstring).
CONVENTIONS = ("opencv", "original")
#: What the head's last layer gives: K regressed rotations, or a logit per anchor rotation.
OUTPUTS = ("regression", "population")
#: How a population head turns its anchor logits into K hypotheses (see the module docstring).
DECODINGS = ("peaks", "top")
#: Size of an anchor's neighbourhood for the ``peaks`` decoding (itself and its 26 nearest anchors).
NEIGHBOURS = 27


def anchor_neighbours(anchors: torch.Tensor, m: int) -> torch.Tensor:
    """The ``m`` anchors nearest to each anchor by geodesic angle, nearest (itself) first:
    ``(A, 3, 3) -> (A, m)`` int64 (rows of 1,024 anchors at a time: ``A = 5,832`` takes ~0.1 s)."""
    flat = anchors.reshape(len(anchors), 9)  # trace(Ra^T Rb) = <Ra, Rb>, which falls as the angle grows
    return torch.cat([(rows @ flat.T).topk(min(m, len(anchors)), dim=1).indices for rows in flat.split(1024)])


def _kaiming(fn, mode: str, nonlinearity: str):
    def init(weight: torch.Tensor) -> None:
        fn(weight, a=math.sqrt(5), mode=mode, nonlinearity=nonlinearity)

    return init


#: ``[Training] WEIGHT_INIT_NAME`` -> initialiser of every linear layer's weight (biases keep
#: PyTorch's default), the original's choices; the empty name keeps PyTorch's default for weights too.
WEIGHT_INITS = {
    "": None,
    "kaiming_uniform_leakyrelu_fanout": _kaiming(nn.init.kaiming_uniform_, "fan_out", "leaky_relu"),
    "kaiming_normal_leakyrelu_fanout": _kaiming(nn.init.kaiming_normal_, "fan_out", "leaky_relu"),
    "kaiming_uniform_leakyrelu_fanin": _kaiming(nn.init.kaiming_uniform_, "fan_in", "leaky_relu"),
    "kaiming_uniform_relu_fanout": _kaiming(nn.init.kaiming_uniform_, "fan_out", "relu"),
    "orthogonal": lambda weight: nn.init.orthogonal_(weight, nn.init.calculate_gain("relu")),
}


@dataclass(frozen=True)
class PoseHeadConfig:
    """Arguments of :class:`PoseHead`.

    Attributes:
        num_hypotheses: K (config ``[Rendering] VIEWS``).
        representation: ``"6d-pose"`` or ``"quat"`` (config ``POSE_REPRESENTATION``).
        input_dim: size of the encoder code (128 for the AAE).
        width: width of the five dense layers (128 in the original).
        convention: how 6D outputs are decoded: ``"opencv"`` or ``"original"`` (module docstring).
        output: ``"regression"`` (the paper's) or ``"population"`` (a logit per anchor rotation).
        anchor_views, anchor_inplane: the population output's anchor grid (``codebook_rotations``).
        decoding: a population head's hypotheses: ``"peaks"`` or ``"top"`` (module docstring).
        encoder_features: 0, or the inputs of a fine-tuned encoder dense layer the head starts with.
        num_objects: N, the objects the head poses (a regression head: N blocks of K hypotheses).
        classify: a classifier of the N objects on the code (the original's ``CLASSIFY_OBJECTS``).
    """

    num_hypotheses: int
    representation: str = "6d-pose"
    input_dim: int = 128
    width: int = 128
    convention: str = "opencv"
    output: str = "regression"
    anchor_views: int = 162
    anchor_inplane: int = 36
    decoding: str = "peaks"
    encoder_features: int = 0
    num_objects: int = 1
    classify: bool = False

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"unknown representation {self.representation!r}; expected one of {list(REPRESENTATIONS)}")
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {self.convention!r}; expected one of {list(CONVENTIONS)}")
        if self.convention == "original" and self.representation != "6d-pose":
            raise ValueError("the original's convention is defined for 6d-pose heads only")
        if self.output not in OUTPUTS:
            raise ValueError(f"unknown output {self.output!r}; expected one of {list(OUTPUTS)}")
        if self.decoding not in DECODINGS:
            raise ValueError(f"unknown decoding {self.decoding!r}; expected one of {list(DECODINGS)}")
        if self.output == "population" and self.convention != "opencv":
            raise ValueError("a population head has no 6D decoding convention other than 'opencv'")
        if self.output == "population" and self.num_objects > 1:
            raise ValueError("a population head poses one object; use a regression head for several")
        if self.num_objects < 1 or self.num_hypotheses < 1 or self.input_dim < 1 or self.width < 1 or min(
                self.encoder_features + 1, self.anchor_views, self.anchor_inplane) < 1:
            raise ValueError(f"bad head arguments {self}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HeadOutput:
    """Attributes: ``confidence (B, K)`` softmax; ``logits (B, K)``; ``R (B, K, 3, 3)`` OpenCV rotations;
    ``anchor_logits (B, A)``: every anchor's logit (population heads only, else None); ``object_logits (B, N)``:
    the classifier's logits (heads with ``classify``, else None).

    A head of N > 1 objects gives every object's block: ``confidence`` and ``logits (B, N, K)``, ``R (B, N, K, 3,
    3)``; :meth:`select` picks each sample's object."""

    confidence: torch.Tensor
    logits: torch.Tensor
    R: torch.Tensor
    anchor_logits: torch.Tensor | None = None
    object_logits: torch.Tensor | None = None

    def select(self, objects: torch.Tensor) -> HeadOutput:
        """Each sample's block, ``objects (B,)`` int64 (object indices); the output itself for one object."""
        if self.confidence.ndim == 2:
            return self
        rows = torch.arange(len(objects), device=objects.device)
        return replace(self, confidence=self.confidence[rows, objects], logits=self.logits[rows, objects],
                       R=self.R[rows, objects])


class PoseHead(nn.Module):
    """``code (B, input_dim) -> HeadOutput`` with K hypotheses (see the module docstring)."""

    # a population head's buffers (register_buffer in __init__, rebuilt from the config, not saved)
    anchors: torch.Tensor  # (A, 3, 3) anchor rotations
    anchor_quaternions: torch.Tensor  # (A, 4) the same as quaternions (w, x, y, z)
    neighbours: torch.Tensor  # (A, NEIGHBOURS) int64: each anchor's nearest anchors, itself first

    def __init__(self, config: PoseHeadConfig) -> None:
        super().__init__()
        self.config = config
        d, w = config.input_dim, config.width
        self.l01 = nn.Linear(d, w)
        self.l02 = nn.Linear(d + w, w)
        self.l03 = nn.Linear(2 * w, w)
        self.l04 = nn.Linear(2 * w, w)
        self.bn01, self.bn02, self.bn03, self.bn04 = (nn.BatchNorm1d(w) for _ in range(4))
        self.l1 = nn.Linear(2 * w, w)
        features = 64 if config.output == "regression" else w
        self.l2 = nn.Linear(w, features)
        if config.output == "regression":
            per_object = config.num_hypotheses * (1 + REPRESENTATIONS[config.representation])
            self.l3 = nn.Linear(features, config.num_objects * per_object)
        else:
            anchors = codebook_rotations(config.anchor_views, config.anchor_inplane)
            self.register_buffer("anchors", anchors, persistent=False)
            self.register_buffer("anchor_quaternions", matrix_to_quaternion(anchors), persistent=False)
            self.register_buffer("neighbours", anchor_neighbours(anchors, NEIGHBOURS), persistent=False)
            self.l3 = nn.Linear(features, len(anchors))
        self.bn1 = nn.BatchNorm1d(w)
        self.bn2 = nn.BatchNorm1d(features)
        # the fine-tuned encoder layer (built last: the other layers' initial weights do not depend on it)
        self.encoder = nn.Linear(config.encoder_features, d) if config.encoder_features else None
        if config.classify:  # the original's classifier of the N objects on the code: c1, bnc1, c2, bnc2, c3
            self.c1, self.bnc1 = nn.Linear(d, w), nn.BatchNorm1d(w)
            self.c2, self.bnc2 = nn.Linear(w, 64), nn.BatchNorm1d(64)
            self.c3 = nn.Linear(64, config.num_objects)

    def forward(self, code: torch.Tensor, hypotheses: bool = True) -> HeadOutput:
        """``code (B, input_dim)``, or with a fine-tuned encoder layer the flat feature maps
        ``(B, encoder_features)`` (:func:`head_input`). ``hypotheses=False``: a population head returns its
        anchor logits only, with no hypotheses (``R (B, 0, 3, 3)``, ``confidence`` and ``logits (B, 0)``):
        what its training needs, without the peak search (most of its forward time)."""
        size = self.config.encoder_features or self.config.input_dim
        if code.ndim != 2 or code.shape[1] != size:
            what = "flat encoder features" if self.encoder is not None else "code"
            raise ValueError(f"{what} must be (B, {size}), got {tuple(code.shape)}")
        x0 = self.encoder(code) if self.encoder is not None else code
        object_logits = self.classify(x0) if self.config.classify else None
        x1 = F.relu(self.bn01(self.l01(x0)))
        x2 = F.relu(self.bn02(self.l02(torch.cat([x0, x1], dim=1))))
        x3 = F.relu(self.bn03(self.l03(torch.cat([x1, x2], dim=1))))
        x4 = F.relu(self.bn04(self.l04(torch.cat([x2, x3], dim=1))))
        x = F.relu(self.bn1(self.l1(torch.cat([x3, x4], dim=1))))
        x = F.relu(self.bn2(self.l2(x)))
        raw = self.l3(x)  # (B, K * (1 + D)) or (B, A)
        if self.config.output == "population":
            if not hypotheses:
                return HeadOutput(confidence=raw[:, :0], logits=raw[:, :0], R=raw.new_zeros(len(raw), 0, 3, 3),
                                  anchor_logits=raw)
            return replace(self.decode_anchors(raw), object_logits=object_logits)
        N, K, D = self.config.num_objects, self.config.num_hypotheses, REPRESENTATIONS[self.config.representation]
        logits, params = raw[:, : N * K].reshape(-1, N, K), raw[:, N * K :].reshape(-1, N, K, D)  # object-major
        if N == 1:
            logits, params = logits[:, 0], params[:, 0]
        if self.config.representation == "6d-pose":
            R = rotation_6d_to_matrix(params)
            if self.config.convention == "original":
                R = opencv_from_pytorch3d_camera(R.transpose(-1, -2))  # the original's R_p3d is M^T
        else:
            q = params / params.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            R = quaternion_to_matrix(q)
        return HeadOutput(confidence=torch.softmax(logits, dim=-1), logits=logits, R=R, object_logits=object_logits)

    def classify(self, x0: torch.Tensor) -> torch.Tensor:
        """The classifier's logits ``(B, N)`` of the code ``x0 (B, input_dim)`` (heads with ``classify``)."""
        x = F.relu(self.bnc1(self.c1(x0)))
        return self.c3(F.relu(self.bnc2(self.c2(x))))

    def decode_anchors(self, raw: torch.Tensor) -> HeadOutput:
        """A population head's K hypotheses from its anchor logits ``raw (B, A)`` (module docstring)."""
        K = self.config.num_hypotheses
        if self.config.decoding == "top":
            top = raw.topk(K, dim=1)
            return HeadOutput(confidence=torch.softmax(top.values, dim=1), logits=top.values,
                              R=self.anchors[top.indices], anchor_logits=raw)
        peak = raw >= raw[:, self.neighbours].amax(dim=2)  # (B, A)
        spread = (raw.amax(dim=1, keepdim=True) - raw.amin(dim=1, keepdim=True)).detach() + 1.0
        index = torch.where(peak, raw, raw - spread).topk(K, dim=1).indices  # peaks first, then the rest
        logits = raw.gather(1, index)  # (B, K)
        around = self.neighbours[index]  # (B, K, M)
        weight = torch.softmax(raw, dim=1).gather(1, around.flatten(1)).view(around.shape)
        q = self.anchor_quaternions[around]  # (B, K, M, 4)
        q = q * torch.where((q * q[:, :, :1]).sum(dim=-1, keepdim=True) < 0, -1.0, 1.0)  # one hemisphere
        R = quaternion_to_matrix(F.normalize((weight[..., None] * q).sum(dim=2), dim=-1))
        return HeadOutput(confidence=torch.softmax(logits, dim=1), logits=logits, R=R, anchor_logits=raw)


class ObjectBlock(PoseHead):
    """One object's view of a head of several objects, usable wherever a head of one object is (a
    :class:`PoseHead` with the head's layers, not copies): ``forward`` returns the block of object ``obj`` (the
    ground truth's), or with ``obj=None`` the block of the object the classifier picks for each sample.
    ``config`` and ``encoder`` are the head's, as one object's."""

    def __init__(self, head: PoseHead, obj: int | None) -> None:
        nn.Module.__init__(self)  # no layers of its own: it runs ``head``
        if obj is None and not head.config.classify:
            raise ValueError("choosing blocks by the classifier needs a head with a classifier")
        self.head, self.obj = head, obj
        self.config = replace(head.config, num_objects=1, classify=False)

    @property
    def encoder(self) -> nn.Linear | None:  # type: ignore[override]  # the head's layer, read-only here
        return self.head.encoder

    def forward(self, code: torch.Tensor, hypotheses: bool = True) -> HeadOutput:
        out = self.head(code, hypotheses)
        if self.obj is None:
            assert out.object_logits is not None  # __init__: a head with a classifier
            objects = out.object_logits.argmax(dim=1)
        else:
            objects = torch.full((len(code),), self.obj, dtype=torch.int64, device=code.device)
        return replace(out.select(objects), object_logits=None)


def head_encoder_mismatch(head: PoseHeadConfig, encoder: EncoderConfig) -> str | None:
    """Why a head cannot run on an encoder (its code size, or the size of the feature map its fine-tuned dense
    layer takes), or None when it can."""
    features = head.encoder_features
    if head.input_dim == encoder.latent_size and features in (0, encoder.flat_features):
        return None
    source = f" from {features} feature-map values" if features else ""
    return (f"the head takes codes of size {head.input_dim}{source}, the encoder gives {encoder.latent_size} from "
            f"{encoder.flat_features}")


def head_input(encoder: Encoder, head: PoseHead, images: torch.Tensor) -> torch.Tensor:
    """What ``head`` takes for ``images (B, 3, S, S)``: the encoder's L2-normalised code ``(B, latent)``, or
    for a head with a fine-tuned encoder layer the encoder's flattened (NHWC) feature maps
    ``(B, flat_features)``."""
    if head.config.encoder_features:
        return nhwc_flatten(encoder.feature_maps(images))
    return encoder.encode(images)


def codebook_code(x: torch.Tensor, head: PoseHead, codebook_encoder: Encoder) -> torch.Tensor:
    """The code a codebook looks up for the head's input ``x`` (:func:`head_input`): ``x`` itself, or for a head
    with a fine-tuned encoder layer (``x`` the flat feature maps) the L2-normalised code of ``codebook_encoder``'s
    dense layer (the encoder the codebook was built with)."""
    if head.config.encoder_features:
        return l2_normalize(codebook_encoder.dense(x))
    return x


def finetuned_encoder(encoder: Encoder, head: PoseHead) -> Encoder:
    """A copy of ``encoder`` whose dense layer is ``head``'s fine-tuned one (the encoder the head's codes come
    from: for a codebook built on the same codes); ``encoder`` itself when the head has no such layer."""
    if head.encoder is None:
        return encoder
    tuned = copy.deepcopy(encoder)
    tuned.dense.load_state_dict(head.encoder.state_dict())
    return tuned


def with_decoding(head: PoseHead, decoding: str) -> PoseHead:
    """``head`` with a population head's hypotheses decoded by ``decoding`` (same weights, same mode); a
    regression head, or one that already decodes so, is returned as it is."""
    if head.config.output != "population" or head.config.decoding == decoding:
        return head
    other = PoseHead(replace(head.config, decoding=decoding)).to(head.anchors.device)
    other.load_state_dict(head.state_dict())
    return other.train(head.training)


def init_head_weights(head: PoseHead, name: str) -> PoseHead:
    """Re-initialise every linear layer's weight of ``head`` with ``WEIGHT_INITS[name]`` (in place,
    with the global torch RNG), as the original's ``Model.init_weights``; ``""`` changes nothing."""
    if name not in WEIGHT_INITS:
        raise ValueError(f"unknown weight initialisation {name!r}; expected one of {sorted(WEIGHT_INITS)}")
    init = WEIGHT_INITS[name]
    if init is not None:
        for module in head.modules():
            if isinstance(module, nn.Linear):
                init(module.weight)
    return head
