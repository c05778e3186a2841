"""The schema: every key of the configuration, its section, type, default and meaning (the part people
edit when they add a key), and its Markdown reference (:func:`schema_markdown`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from multipose.config.compound_types import (
    CheckpointMapType,
    EulerListType,
    FloatRangeType,
    IntListType,
    IntrinsicsType,
    ObjectIdsType,
    TranslationType,
    ViewSamplingType,
    ViewsType,
)
from multipose.config.types import (
    BackgroundType,
    BoolType,
    ChoiceType,
    EncoderWeightsType,
    FloatType,
    IntType,
    ModelPathType,
    PathListType,
    PathType,
    ValueType,
    _num,
)
from multipose.core.settings import DEFAULT_DEPTH_MAX, HARD_POOLS

#: ``[Training] WEIGHT_INIT_NAME`` values: the original's ``Model.init_weights`` names
#: (:data:`multipose.models.head.WEIGHT_INITS` implements them).
WEIGHT_INIT_NAMES = (
    "kaiming_uniform_leakyrelu_fanout",
    "kaiming_normal_leakyrelu_fanout",
    "kaiming_uniform_leakyrelu_fanin",
    "kaiming_uniform_relu_fanout",
    "orthogonal",
)


@dataclass(frozen=True)
class Key:
    """One INI key: where it lives, its type, its default (as INI text) and what it means."""

    section: str
    name: str
    type: ValueType
    default: str
    meaning: str
    optional: bool = False  # an empty value means "unset" (None)

    @property
    def expected(self) -> str:
        return self.type.expected + (", or empty (unset)" if self.optional else "")

    def parse(self, text: str) -> Any:
        """Parse INI text (raises :class:`_Invalid`)."""
        text = text.strip()
        if self.optional and not text:
            return None
        return self.type.parse(text)

    def format(self, value: Any) -> str:
        return "" if value is None and self.optional else self.type.format(value)


_INT_GE1 = IntType(min=1)
_FLOAT_GT0 = FloatType(min=0.0, min_inclusive=False)
_PROB = FloatType(min=0.0, max=1.0)

#: Every key multipose reads, in the order written by :meth:`Config.to_ini`.
SCHEMA: tuple[Key, ...] = (
    # [Dataset]
    Key("Dataset", "MODEL_PATH_DATA", ModelPathType(), "./data/cad-files/tless_like_2fold.ply",
        "CAD model (PLY/OBJ, mm) rendered for the training images; a JSON list of N paths for a head of N objects "
        "(list order = object index)."),
    Key("Dataset", "MODEL_PATH_LOSS", ModelPathType(allow_empty=True), "",
        "CAD model rendered by the loss (decimated to LOSS_MESH_FACES), one per object; empty: same as "
        "MODEL_PATH_DATA.", optional=True),
    Key("Dataset", "VALID_DATA_PATH", PathListType(allow_empty=True), "",
        "Validation set file(s): original pickle or generate_dataset.py .npz (with N objects: one per object, in "
        "their order); empty: generated into the run folder.", optional=True),
    Key("Dataset", "ENCODER_WEIGHTS", EncoderWeightsType(), "auto",
        "Frozen encoder weights: .npy (original AAE weights dict), .pt, or auto."),
    Key("Dataset", "BACKGROUND_IMAGES", BackgroundType(), "procedural",
        "Folder of JPEG/PNG background images, or procedural (empty means procedural)."),
    Key("Dataset", "PBR_PATH", PathType(), "",
        "BOP photorealistic training images (a train_pbr folder: scenes with scene_gt.json, scene_gt_info.json, rgb/), "
        "cropped around each instance with visib_fract >= 0.5 and mixed into the training batches (PBR_MIX); empty: "
        "synthetic renders only.", optional=True),
    Key("Dataset", "PBR_OBJ_IDS", ObjectIdsType(), "",
        "The BOP ids of the objects in PBR_PATH, one per object, in the order of MODEL_PATH_DATA.", optional=True),
    Key("Dataset", "PBR_MIX", FloatType(min=0.0, max=1.0, min_inclusive=False), "1.0",
        "Fraction of every training batch cut from PBR_PATH, the rest synthetic renders; 1.0: PBR crops alone (the "
        "original's)."),
    Key("Dataset", "PBR_CROP", ChoiceType(("aae", "original")), "aae",
        "aae: PAD_FACTOR x the whole box about its centre with the training offsets (MAX_REL_OFFSET), bilinear, "
        "augmented as the renders; original: 1.2 x the visible box clipped at the border, nearest-neighbour, no offset "
        "or augmentation."),
    Key("Dataset", "PBR_ROTATION", ChoiceType(("corrected", "scene")), "corrected",
        "corrected: the instance's rotation in its crop's view (the AAE's off-axis correction undone); scene: "
        "cam_R_m2c as it is (the original's)."),
    Key("Dataset", "PBR_OBJECTS", ChoiceType(("uniform", "instances")), "uniform",
        "uniform: each PBR sample's object drawn uniformly; instances: every usable instance alike (the original's: "
        "objects weigh by their instance counts)."),
    Key("Dataset", "PBR_WORKERS", IntType(min=0), "1",
        "Background processes decoding and cropping the PBR images ahead of training (a PyTorch DataLoader's "
        "workers; 0: in the training process). The crops do not depend on it."),
    Key("Dataset", "CACHE_DIR", PathType(), "./cache",
        "Where decimated meshes and rendered view caches are stored."),
    Key("Dataset", "CROP_SIZE", IntType(min=8), "",
        "Side of the synthetic training crops (pixels); empty: the encoder's input size (aae 128, small 64; "
        "with ARCH auto, the size stored in a multipose .pt, read once when a script loads the config).",
        optional=True),
    Key("Dataset", "K", IntrinsicsType(), "[1075.65, 0, 360, 0, 1073.9, 270, 0, 0, 1]",
        "Base camera intrinsics (OpenCV) of the training renders; crops are cut from its image plane."),
    Key("Dataset", "RADIUS", _FLOAT_GT0, "",
        "Camera distance (mm) of the training renders (the object sits at t = [0, 0, RADIUS]); empty: the z of "
        "an explicit [Rendering] T, as the original, else the AAE's 700.", optional=True),
    Key("Dataset", "PAD_FACTOR", FloatType(min=1.0), "1.2",
        "Side of the square crop window relative to the larger side of the object's 2D box."),
    Key("Dataset", "NOOF_TRAINING_IMGS", IntType(min=0), "10000",
        "Clean views rendered once into the view cache (the training pool); 0: render every batch."),
    Key("Dataset", "NOOF_BG_IMGS", _INT_GE1, "15000", "Most background images loaded from BACKGROUND_IMAGES."),
    Key("Dataset", "NOOF_VALID_IMGS", _INT_GE1, "256",
        "Size of the validation set generated when VALID_DATA_PATH is empty."),
    Key("Dataset", "VIEW_SEED", IntType(min=0, max=2**32 - 1), "0",
        "Seed of the view cache's poses, crop offsets and lights (runs with any RANDOM_SEED share it)."),
    # [Rendering]
    Key("Rendering", "SHADER", ChoiceType(("hard-depth", "soft-depth")), "hard-depth",
        "Depth shader of the loss renderer."),
    Key("Rendering", "FACES_PER_PIXEL", _INT_GE1, "1", "Faces kept per pixel by the rasterizer."),
    Key("Rendering", "NORMALIZE_VERTICES", BoolType(), "false",
        "Centre the model on its vertex mean and scale it so that its largest absolute coordinate is 100 mm, for "
        "the training and the loss renders alike (the original normalised its loss renders only, without "
        "centring: docs/original.md)."),
    Key("Rendering", "IMAGE_SIZE", IntType(min=8), "64",
        "Side of the loss renderer's square depth maps (pixels)."),
    Key("Rendering", "T", TranslationType(), "auto",
        "Object translation for the loss renders (mm), one [x, y, z] per object; auto: from T_FILL, FOV and the "
        "model's size."),
    Key("Rendering", "T_FILL", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.6",
        "With T auto, the fraction of the loss view's width the model's bounding sphere fills."),
    Key("Rendering", "FOV", FloatType(min=0.0, max=180.0, min_inclusive=False, max_inclusive=False), "15.0",
        "Vertical field of view of the loss camera (degrees; the original's renderer used 15)."),
    Key("Rendering", "VIEWS", ViewsType(), "1",
        "Number of pose hypotheses K: an int, or a list whose length is K (the original's form)."),
    Key("Rendering", "LOSS_MESH_FACES", IntType(min=0), "800",
        "Face count of the decimated loss mesh (0 = full mesh)."),
    Key("Rendering", "LOSS_VIEWPOINTS", EulerListType(), "[[0, 0, 0]]",
        "Viewpoint rotations (Euler, degrees) of the multi-view loss; the depth term is averaged over them."),
    Key("Rendering", "DEPTH_GRADIENT", ChoiceType(("auto", "torch", "pytorch3d")), "auto",
        "Depth gradients: torch (recomputed from pix_to_face), pytorch3d (its backward), auto (per device)."),
    # [Training]
    Key("Training", "NUM_ITER", _INT_GE1, "100", "Number of epochs."),
    Key("Training", "NUM_SAMPLES", _INT_GE1, "1000", "Training samples per epoch."),
    Key("Training", "BATCH_SIZE", _INT_GE1, "32", "Training batch size."),
    Key("Training", "LEARNING_RATE", _FLOAT_GT0, "1e-3",
        "Adam learning rate, constant as the original (unless LR_STEP_EPOCHS, or LOW/HIGH, are set)."),
    Key("Training", "LEARNING_RATE_LOW", _FLOAT_GT0, "",
        "With LEARNING_RATE_HIGH: the original's one-cycle policy over NUM_ITER epochs, stepped per epoch: "
        "LOW -> HIGH -> LOW over the first 90 % of the epochs, then down to LOW x 0.01.", optional=True),
    Key("Training", "LEARNING_RATE_HIGH", _FLOAT_GT0, "",
        "With LEARNING_RATE_LOW: the peak of the one-cycle policy; equal to LOW: a constant rate (as the original's "
        "final version).", optional=True),
    Key("Training", "LR_STEP_EPOCHS", _INT_GE1, "",
        "Step schedule (not in the original): LEARNING_RATE times LR_STEP_GAMMA every LR_STEP_EPOCHS epochs; "
        "empty: constant.", optional=True),
    Key("Training", "LR_STEP_GAMMA", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.5",
        "Factor applied to the learning rate every LR_STEP_EPOCHS epochs (step schedule)."),
    Key("Training", "KEEP_CHECKPOINTS", _INT_GE1, "3",
        "Newest epoch checkpoints kept in OUTPUT_PATH/models (model-best.pt is kept too)."),
    Key("Training", "NUM_SAVED_IMAGES", IntType(min=0), "4",
        "With SAVE_IMAGES: validation samples (and hardest samples) drawn per epoch."),
    Key("Training", "LOSS", ChoiceType(("vsd-union", "vsd-union-var-gamma", "vsd-union-multi-object")), "vsd-union",
        "Multi-pose loss: gamma = 1/K (vsd-union) or gamma from GAMMA / LOSS_PARAMS (var-gamma); "
        "vsd-union-multi-object: the original's final version's loss for a head of several objects (vsd-union on "
        "each sample's object block plus CLASSIFY_WEIGHT x the classification term)."),
    Key("Training", "CLASSIFY_OBJECTS", BoolType(), "false",
        "The original's final version: a classifier of the objects on the code (its layers c1 ... c3), trained with "
        "the loss's classification term (needs several objects)."),
    Key("Training", "CLASSIFICATION_LOSS", ChoiceType(("logits", "original")), "logits",
        "For the classification term: cross-entropy on the classifier's logits (logits), or on its softmax outputs "
        "as the original computed it (original: a second softmax, so the term cannot fall below ~0.9 for 5 "
        "objects)."),
    Key("Training", "MODEL_RANDOM_SEED", IntType(min=0, max=2**32 - 1), "",
        "Seed of the head's initial weights alone (the original's final version); empty: from RANDOM_SEED.",
        optional=True),
    Key("Training", "LOSS_PARAMS", _FLOAT_GT0, "",
        "Original form: depth clamp in mm for vsd-union, gamma for vsd-union-var-gamma.", optional=True),
    Key("Training", "VIEW_SAMPLING", ViewSamplingType(), "sundermeyer-random",
        "How training rotations are drawn: one of the original's methods (docs/data.md, Synthetic training data) "
        "or a rotation file."),
    Key("Training", "HARD_MINING_RATIO", FloatType(min=0.0, max=1.0), "0.3",
        "With -hard sampling: the worst int(ratio x batch) samples of each batch (by loss) are kept for "
        "re-use (the original's 0.3)."),
    Key("Training", "HARD_SAMPLE_RATIO", FloatType(min=0.0, max=1.0), "0.2",
        "With -hard sampling: probability that a sample is a kept hard one, while any are left (the original's 0.2)."),
    Key("Training", "HARD_POOL", ChoiceType(HARD_POOLS), "replace",
        "With -hard sampling: replace (the original's: each batch's hard samples replace the pool, emptied every "
        "epoch) or accumulate (they join it, up to 10,000, across epochs)."),
    Key("Training", "OUTPUT_PATH", PathType(), "./output/default",
        "Run folder: config, checkpoints, metrics, images."),
    Key("Training", "RANDOM_SEED", IntType(min=0, max=2**32 - 1), "10", "Seed for torch, NumPy and Python."),
    Key("Training", "POSE_REPRESENTATION", ChoiceType(("6d-pose", "quat")), "6d-pose",
        "Rotation parametrisation of the pose head's output."),
    Key("Training", "HEAD", ChoiceType(("regression", "population")), "regression",
        "What the pose head outputs: regression (the paper's: K rotations, each moved by the multi-pose loss's "
        "gradient) or population (not in the original: a logit per anchor rotation of the ANCHOR_VIEWS x "
        "ANCHOR_INPLANE grid, trained towards soft targets from the rendered depth error; the K hypotheses are "
        "the K highest-scoring anchors)."),
    Key("Training", "HEAD_WIDTH", _INT_GE1, "",
        "Width of the pose head's dense layers; empty: 128 (the original's) for regression, 512 for population.",
        optional=True),
    Key("Training", "ANCHOR_VIEWS", _INT_GE1, "162",
        "Population head: at least this many viewpoints on the icosphere (162, 642, 2562, ...), as CODEBOOK_VIEWS."),
    Key("Training", "ANCHOR_INPLANE", _INT_GE1, "36",
        "Population head: in-plane rotations per viewpoint, as CODEBOOK_INPLANE."),
    Key("Training", "ANCHOR_TEMPERATURE", _FLOAT_GT0, "0.03",
        "Population head: tau of the soft targets softmax(-depth term / tau) over the candidate anchors."),
    Key("Training", "ANCHOR_DECODING", ChoiceType(("peaks", "top")), "peaks",
        "Population head: its K hypotheses are the K highest local peaks of the anchor logits, each refined to the "
        "probability-weighted mean of its 27 nearest anchors (peaks), or the K highest anchors as they are (top)."),
    Key("Training", "ANCHOR_CANDIDATES", _INT_GE1, "64",
        "Population head: anchors per sample that get target mass (those whose coarse depth is closest)."),
    Key("Training", "FINETUNE_ENCODER", BoolType(), "false",
        "As the original's later versions: the encoder's dense layer (feature maps -> code) is trained with the "
        "pose head, in its optimiser and learning-rate schedule; the convolutions and their batch norm stay frozen "
        "(eval mode) and the code is not L2-normalised. Checkpoints hold the layer as the head's encoder.weight and "
        "encoder.bias, as the original's."),
    Key("Training", "WEIGHT_INIT_NAME", ChoiceType(WEIGHT_INIT_NAMES), "",
        "Initialisation of the pose head's linear weights (torch.nn.init, as the original's names); empty: "
        "PyTorch's default.", optional=True),
    Key("Training", "INIT_CHECKPOINT", PathType(), "",
        "Start a new run from the head weights of this checkpoint (ours, or a models/model-epochN.pt of the "
        "original's train.py); empty: a fresh head.", optional=True),
    Key("Training", "VALIDATION_METRIC", ChoiceType(("auto", "loss", "top_depth")), "auto",
        "What picks models/model-best.pt and drives EARLY_STOPPING: loss (the validation multi-pose loss, as the "
        "original) or top_depth (the mean depth term of each sample's most confident hypothesis: what the "
        "evaluation's head recall scores; not in the original); auto: loss for HEAD regression, top_depth for "
        "population (whose K hypotheses are neighbouring peaks, so the loss's diversity term rises as it learns)."),
    Key("Training", "SAVE_IMAGES", BoolType(), "true", "Save example input and depth images while training."),
    Key("Training", "EARLY_STOPPING", BoolType(), "false",
        "Stop when the moving average of the validation loss stops improving (STOPPING_WINDOW, STOPPING_TIME_LIMIT)."),
    Key("Training", "STOPPING_WINDOW", _INT_GE1, "10",
        "Early stopping: length (epochs) of the moving average of validation losses, as the original."),
    Key("Training", "STOPPING_TIME_LIMIT", IntType(min=0), "10",
        "Early stopping: epochs without a new lowest moving average before training stops (the original's patience)."),
    Key("Training", "MAX_HOURS", _FLOAT_GT0, "",
        "Stop training after the epoch that passes this many hours of training (not in the original); empty: no limit.",
        optional=True),
    Key("Training", "MAX_REL_OFFSET", FloatType(min=0.0, max=1.0, max_inclusive=False), "0.2",
        "Random crop offset relative to the object's bounding box."),
    Key("Training", "AUGMENT_IMGS", BoolType(), "true", "Augment the training images."),
    Key("Training", "DEVICE", ChoiceType(("auto", "cpu", "cuda")), "auto",
        "Device: auto uses CUDA when available, else the CPU."),
    # [Augmentation] (the AAE's imgaug set, applied in this order; each op on a sample with its PROB)
    Key("Augmentation", "AFFINE_PROB", _PROB, "0.5", "Probability of a random zoom about the crop centre."),
    Key("Augmentation", "AFFINE_SCALE", FloatRangeType(min=0.1), "[1.0, 1.2]", "Zoom factor range."),
    Key("Augmentation", "DROPOUT_PROB", _PROB, "0.2",
        "Probability of coarse dropout: cells of a coarse grid set to black."),
    Key("Augmentation", "DROPOUT_RATE", FloatRangeType(min=0.0, max=1.0), "[0.2, 0.2]",
        "Fraction of the grid cells dropped."),
    Key("Augmentation", "DROPOUT_SIZE", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.05",
        "Dropout grid resolution relative to the crop (imgaug size_percent; 0.05: 6x6 cells at 128 px)."),
    Key("Augmentation", "CUTOUT_PROB", _PROB, "0.4",
        "Probability of a cut-out: one square filled with a random grey, colour or white."),
    Key("Augmentation", "CUTOUT_SIZE", FloatRangeType(min=0.0, max=1.0), "[0.2, 0.2]",
        "Side of the cut-out square relative to the crop."),
    Key("Augmentation", "BLUR_PROB", _PROB, "0.5", "Probability of a Gaussian blur."),
    Key("Augmentation", "BLUR_SIGMA", FloatRangeType(min=0.0), "[0.0, 1.2]", "Blur sigma range (pixels)."),
    Key("Augmentation", "ADD_PROB", _PROB, "0.5",
        "Probability of adding a brightness offset (per channel for 30% of those samples)."),
    Key("Augmentation", "ADD_RANGE", FloatRangeType(min=-1.0, max=1.0), "[-0.098, 0.098]",
        "Brightness offset range (intensities in [0, 1]; the AAE's +-25 of 255)."),
    Key("Augmentation", "INVERT_PROB", _PROB, "0.3",
        "Probability of colour inversion (then each channel is inverted with probability 0.2)."),
    Key("Augmentation", "MULTIPLY_PROB", _PROB, "0.5",
        "Probability of each of two brightness multiplications (the first per channel half the time)."),
    Key("Augmentation", "MULTIPLY_RANGE", FloatRangeType(min=0.0), "[0.6, 1.4]", "Brightness factor range."),
    Key("Augmentation", "CONTRAST_PROB", _PROB, "0.5",
        "Probability of a contrast change about mid-grey (per channel for 30% of those samples)."),
    Key("Augmentation", "CONTRAST_RANGE", FloatRangeType(min=0.0), "[0.5, 2.2]", "Contrast factor range."),
    Key("Augmentation", "SQUARE_OCCLUSION_PROB", _PROB, "0.0",
        "Training crops: probability of square occluders cut out of the object, showing the background (the "
        "original's DatasetGeneratorSquareOcc: 0.7); 0: off."),
    Key("Augmentation", "SQUARE_OCCLUSION_GRID", _INT_GE1, "3",
        "Square occluders: cells per side of the coarse grid (imgaug's 3 x 3 at 128 px)."),
    Key("Augmentation", "SQUARE_OCCLUSION_RATE", _PROB, "0.4", "Square occluders: probability that a cell is cut."),
    Key("Augmentation", "SQUARE_OCCLUSION_MAX", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.25",
        "Square occluders: a draw must cut less than this share of the object's pixels (else it is drawn again)."),
    # [Encoder] (architecture presets and their numbers: multipose/models/encoder.py)
    Key("Encoder", "ARCH", ChoiceType(("auto", "aae", "small")), "auto",
        "Encoder: aae (original, 128 px), small (CPU preset, 64 px); auto: a .pt's own, aae for .npy, else small."),
    Key("Encoder", "CHANNELS", IntListType(length=4), "",
        "Channels of the 4 stride-2 convolutions; empty: ARCH's (aae [128, 256, 512, 512], small [32, 64, 128, 128]).",
        optional=True),
    Key("Encoder", "LATENT_SIZE", _INT_GE1, "", "Size of the encoder's code; empty: ARCH's (128).", optional=True),
    Key("Encoder", "BATCH_NORMALIZATION", BoolType(), "",
        "Batch norm after each convolution's ReLU; empty: ARCH's (true).", optional=True),
    Key("Encoder", "BOOTSTRAP_RATIO", _INT_GE1, "4",
        "Pretraining loss: squared error averaged over the worst 1/BOOTSTRAP_RATIO of each image (1: plain MSE)."),
    # Encoder pretraining (train_encoder.py; names and meaning of the AAE's [Training] section)
    Key("Encoder", "NUM_ITER", _INT_GE1, "1500",
        "Pretraining iterations (batches); the AAE trained 40000 on a GPU, 1500 take ~14 min on a 2-core CPU."),
    Key("Encoder", "BATCH_SIZE", IntType(min=2), "64", "Pretraining batch size (>= 2 for batch norm)."),
    Key("Encoder", "LEARNING_RATE", _FLOAT_GT0, "2e-4", "Adam learning rate of pretraining (constant)."),
    Key("Encoder", "SAVE_INTERVAL", _INT_GE1, "100",
        "Pretraining: checkpoint, loss curve and reconstruction preview every SAVE_INTERVAL iterations (and "
        "at the end)."),
    Key("Encoder", "LOG_INTERVAL", _INT_GE1, "10",
        "Pretraining: mean loss of every LOG_INTERVAL iterations written to OUTPUT_PATH/encoder/train-loss.csv."),
    # [Loss_parameters]
    Key("Loss_parameters", "DEPTH_MAX", _FLOAT_GT0, "",
        f"Depth error clamp d_max (mm); empty: LOSS_PARAMS for vsd-union, else {_num(DEFAULT_DEPTH_MAX)}.",
        optional=True),
    Key("Loss_parameters", "POSE_MAX", _FLOAT_GT0, "40.0",
        "Angle (degrees) beyond which two hypotheses no longer pay the diversity penalty."),
    Key("Loss_parameters", "DEPTH_NORMALIZATION", ChoiceType(("union", "image")), "union",
        "Depth term's denominator: the union of both silhouettes (the authors' corrected code), or every "
        "pixel of the image (the paper-era code; the depth term then shrinks with the object's share of "
        "the image, so the diversity term weighs relatively more)."),
    Key("Loss_parameters", "GAMMA", FloatType(min=0.0), "",
        "Confidence weight gamma; empty: 1/K (vsd-union) or LOSS_PARAMS (vsd-union-var-gamma).",
        optional=True),
    Key("Loss_parameters", "CLASSIFY_WEIGHT", FloatType(min=0.0), "1.0",
        "vsd-union-multi-object with CLASSIFY_OBJECTS: weight of the classification term (the original's "
        "fallback: 1.0)."),
    # [Evaluation]
    Key("Evaluation", "BATCH_SIZE", _INT_GE1, "50", "Evaluation batch size."),
    Key("Evaluation", "SAVE_IMAGES", BoolType(), "true",
        "Save evaluation figures (recall curves, rotation-error histogram, examples)."),
    Key("Evaluation", "TEST_DATA_PATH", PathType(), "",
        "Test set: empty (synthetic samples like the validation set's), a dataset file (.npz or the original's "
        "pickle) or a BOP split folder (e.g. tless/test_primesense).", optional=True),
    Key("Evaluation", "AFTER_TRAINING", BoolType(), "true",
        "train.py evaluates models/model-best.pt when training ends (results in OUTPUT_PATH/evaluation)."),
    Key("Evaluation", "NUM_SAMPLES", _INT_GE1, "100",
        "Test samples generated when TEST_DATA_PATH is empty; for a file or BOP folder, at most this many "
        "(evenly spaced)."),
    Key("Evaluation", "OBJ_ID", ObjectIdsType(), "",
        "BOP object id to evaluate (needed with a BOP folder, e.g. 10 for T-LESS obj_000010); a head of N objects: "
        "a JSON list of their N ids, in the order of MODEL_PATH_DATA; with CHECKPOINTS: all, or a list of its ids.",
        optional=True),
    Key("Evaluation", "CHECKPOINTS", CheckpointMapType(), "",
        "evaluate.py on a BOP split: one train.py run per object, a JSON object of BOP id -> run folder (its "
        "config.cfg and models/model-best.pt) or a checkpoint in one; every object (OBJ_ID all or a list) is "
        "evaluated and one results file holds all their rows.", optional=True),
    Key("Evaluation", "MODELS_INFO", PathType(), "",
        "BOP models_info.json giving the object's symmetries (symmetry-aware rotation error); empty: looked for "
        "beside a BOP folder (models*/models_info.json), else none.", optional=True),
    Key("Evaluation", "MIN_VISIB_FRACT", FloatType(min=0.0, max=1.0), "0.1",
        "BOP, PROTOCOL sixd17: ground-truth instances with a smaller visible fraction are skipped (BOP's 0.1)."),
    Key("Evaluation", "PROTOCOL", ChoiceType(("sixd17", "bop19")), "sixd17",
        "sixd17: VSD recall at VSD_TAU and VSD_THRESHOLD (the AAE paper's); bop19 (a BOP folder with "
        "test_targets_bop19.json beside it): BOP's average recalls AR_VSD, AR_MSSD, AR_MSPD and AR."),
    Key("Evaluation", "TARGETS_FILE", PathType(), "",
        "PROTOCOL bop19: the BOP targets file (scene_id, im_id, obj_id, inst_count) to evaluate; empty: "
        "test_targets_bop19.json beside the BOP folder (e.g. targets of another split, such as T-LESS's train split).",
        optional=True),
    Key("Evaluation", "DETECTIONS", PathType(), "",
        "BOP, PROTOCOL bop19: a BOP detections file (JSON: scene_id, image_id, category_id, bbox, score, time) "
        "whose boxes replace the ground-truth boxes for the BOP19 results; empty: ground-truth boxes.",
        optional=True),
    Key("Evaluation", "MODEL_PATH_EVAL", PathType(), "",
        "BOP: the model whose points MSSD and MSPD measure (PLY/OBJ, mm; BOP's models_eval); empty: "
        "models_eval/obj_<OBJ_ID>.ply beside the BOP folder if present, else MODEL_PATH_DATA.", optional=True),
    Key("Evaluation", "VSD_DELTA", _FLOAT_GT0, "15.0", "VSD visibility tolerance delta (mm)."),
    Key("Evaluation", "VSD_TAU", _FLOAT_GT0, "20.0", "VSD misalignment tolerance tau (mm)."),
    Key("Evaluation", "VSD_THRESHOLD", FloatType(min=0.0, max=1.0, min_inclusive=False), "0.3",
        "A pose is correct when its VSD error is below this (the recall's threshold)."),
    Key("Evaluation", "VSD_MESH_FACES", IntType(min=0), "0",
        "Faces of the mesh rendered for VSD (quadric decimation, cached in CACHE_DIR); 0: the full MODEL_PATH_DATA."),
    Key("Evaluation", "CODEBOOK_BASELINE", BoolType(), "false",
        "Also evaluate the AAE codebook baseline (nearest code among clean renders; evaluate.py --baseline codebook)."),
    Key("Evaluation", "CODEBOOK_VIEWS", _INT_GE1, "2562",
        "Codebook: at least this many viewpoints on the sphere, the vertices of a refined icosahedron as in "
        "the AAE (12, 42, 162, 642, 2562, ...)."),
    Key("Evaluation", "CODEBOOK_INPLANE", _INT_GE1, "36",
        "Codebook: in-plane rotations per viewpoint (the AAE's 36: 2562 x 36 = 92,232 entries)."),
    Key("Evaluation", "OBJECT_ID_SOURCE", ChoiceType(("gt", "classifier")), "gt",
        "A head of several objects: each test sample's output block is its ground-truth object's (gt), or the one "
        "the head's classifier picks (classifier, as the original's eval-pickle.py -oid model)."),
    Key("Evaluation", "CODEBOOK_ENCODER", ChoiceType(("pretrained", "finetuned")), "pretrained",
        "The encoder the codebook baseline is built with: pretrained (ENCODER_WEIGHTS) or finetuned (its dense layer "
        "replaced by the head's fine-tuned one: the head's own codes; needs a head trained with FINETUNE_ENCODER)."),
    Key("Evaluation", "NUM_EXAMPLES", IntType(min=0), "8",
        "With SAVE_IMAGES: test samples drawn in examples.png (input, GT depth, top hypothesis)."),
    # [Sampling]
    Key("Sampling", "NUM_SAMPLES", _INT_GE1, "2000", "Points on the sphere for the loss landscape."),
    Key("Sampling", "REFERENCE_NUM", IntType(min=0), "500",
        "Index of the reference pose (modulo the number of samples)."),
    Key("Sampling", "INPLANE_STEPS", _INT_GE1, "1", "In-plane rotations per sphere point."),
    Key("Sampling", "BATCH_SIZE", _INT_GE1, "64", "Batch size of the landscape renders."),
)

#: Section names, in file order.
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in SCHEMA))

_KEYS: Mapping[tuple[str, str], Key] = MappingProxyType({(k.section, k.name): k for k in SCHEMA})
_SECTION_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {s: tuple(k.name for k in SCHEMA if k.section == s) for s in SECTIONS}
)

#: Keys of the original repository that multipose accepts and ignores (with a warning).
DEPRECATED: Mapping[tuple[str, str], str] = MappingProxyType({
    ("Dataset", "TRAIN_DATA_PATH"): "training images are rendered on the fly",
})


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def schema_markdown() -> str:
    """A Markdown reference table of every key (generated from :data:`SCHEMA`)."""
    rows = [
        "| Section | Key | Type / allowed values | Default | Meaning |",
        "|---|---|---|---|---|",
    ]
    for key in SCHEMA:
        kind = key.type.summary + (", or empty" if key.optional else "")
        default = f"`{key.default}`" if key.default else "*(empty)*"
        rows.append(
            f"| {key.section} | `{key.name}` | {_md(kind)} | {_md(default)} | {_md(key.meaning)} |"
        )
    ignored = ", ".join(f"`[{s}] {k}`" for s, k in DEPRECATED)
    rows += [
        "",
        f"Accepted for compatibility with the original repository and ignored (with a warning): {ignored}.",
        "Relative paths are relative to the working directory.",
    ]
    return "\n".join(rows) + "\n"


