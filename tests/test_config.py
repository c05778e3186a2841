"""The config schema: the original templates load, every bad input gets one clear line, round trips."""

from __future__ import annotations

import argparse
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multipose.app import cli
from multipose.config import (
    SCHEMA,
    SECTIONS,
    LossParameters,
    ViewSampling,
    default_config,
    load_config,
    load_config_text,
    loss_parameters,
    num_hypotheses,
    num_objects,
    resolve_device,
    schema_markdown,
    validation_metric,
    view_sampling,
)
from multipose.experiment.run_folder import write_resolved_config
from multipose.infra.errors import ConfigError, MeshError

DATA = Path(__file__).parent / "data"
REPO_ROOT = Path(__file__).resolve().parents[1]
EARLY = DATA / "original_experiment_template.cfg"
FINAL = DATA / "original_experiment_template_final.cfg"
BROKEN = DATA / "original_experiment_template_broken.cfg"

ZEROS_10 = ((0, 0, 0),) * 10


def write(tmp_path: Path, text: str, name: str = "exp.cfg") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(path_or_text: Path | str, overrides: tuple[str, ...] = ()) -> str:
    """The message of the ConfigError that loading raises; asserts it is one line."""
    with pytest.raises(ConfigError) as info:
        if isinstance(path_or_text, Path):
            load_config(path_or_text, overrides)
        else:
            load_config_text(path_or_text, "t.cfg", overrides)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


def expected_values(**changes: dict) -> dict:
    """The defaults with some sections' values replaced."""
    values = default_config().to_dict()
    for section, updates in changes.items():
        values[section].update(updates)
    return values


# --------------------------------------------------------------------------- schema and defaults


def test_schema_is_consistent():
    names = [(k.section, k.name) for k in SCHEMA]
    assert len(names) == len(set(names))
    assert SECTIONS == (
        "Dataset", "Rendering", "Training", "Augmentation", "Encoder", "Loss_parameters", "Evaluation", "Sampling")
    for key in SCHEMA:
        assert key.name == key.name.upper() and key.meaning and "\n" not in key.meaning
        value = key.parse(key.default)  # every default is valid for its own key
        assert key.parse(key.format(value)) == value
        if key.default == "":
            assert key.optional or key.name == "BACKGROUND_IMAGES"


def test_defaults():
    cfg = default_config()
    assert cfg.source is None
    assert cfg.Dataset.MODEL_PATH_DATA == "./data/cad-files/tless_like_2fold.ply"
    assert cfg.Dataset.MODEL_PATH_LOSS == cfg.Dataset.MODEL_PATH_DATA  # empty = same as DATA
    assert cfg.Dataset.VALID_DATA_PATH is None
    assert cfg.Dataset.ENCODER_WEIGHTS == "auto"
    assert cfg.Dataset.BACKGROUND_IMAGES == "procedural"
    assert cfg.Dataset.CACHE_DIR == "./cache"
    d = cfg.Dataset
    assert (d.PBR_PATH, d.PBR_OBJ_IDS, d.PBR_MIX, d.PBR_CROP, d.PBR_ROTATION, d.PBR_OBJECTS, d.PBR_WORKERS) == (
        None, None, 1.0, "aae", "corrected", "uniform", 1)
    r = cfg.Rendering
    assert (r.SHADER, r.FACES_PER_PIXEL, r.NORMALIZE_VERTICES, r.IMAGE_SIZE) == ("hard-depth", 1, False, 64)
    assert (r.T, r.T_FILL, r.FOV, r.VIEWS, r.LOSS_MESH_FACES) == (None, 0.6, 15.0, 1, 800)
    assert r.LOSS_VIEWPOINTS == ((0.0, 0.0, 0.0),) and r.DEPTH_GRADIENT == "auto"
    t = cfg.Training
    assert (t.NUM_ITER, t.NUM_SAMPLES, t.BATCH_SIZE, t.LEARNING_RATE) == (100, 1000, 32, 1e-3)
    assert t.LEARNING_RATE_LOW is None and t.LEARNING_RATE_HIGH is None and t.LOSS_PARAMS is None
    assert (t.LOSS, t.VIEW_SAMPLING, t.OUTPUT_PATH, t.RANDOM_SEED) == (
        "vsd-union", "sundermeyer-random", "./output/default", 10)
    assert (t.POSE_REPRESENTATION, t.SAVE_IMAGES, t.EARLY_STOPPING, t.STOPPING_WINDOW) == (
        "6d-pose", True, False, 10)
    assert (t.STOPPING_TIME_LIMIT, t.MAX_REL_OFFSET, t.AUGMENT_IMGS, t.DEVICE) == (10, 0.2, True, "auto")
    assert (t.HEAD, t.FINETUNE_ENCODER, t.VALIDATION_METRIC, t.ANCHOR_DECODING) == (
        "regression", False, "auto", "peaks")  # the paper's head on the frozen encoder
    assert (t.CLASSIFY_OBJECTS, t.CLASSIFICATION_LOSS, t.MODEL_RANDOM_SEED) == (False, "logits", None)
    assert dict(cfg.Loss_parameters) == {
        "DEPTH_MAX": None,
        "POSE_MAX": 40.0,
        "GAMMA": None,
        "DEPTH_NORMALIZATION": "union",
        "CLASSIFY_WEIGHT": 1.0,
    }
    assert dict(cfg.Evaluation) == {
        "BATCH_SIZE": 50, "SAVE_IMAGES": True, "TEST_DATA_PATH": None, "AFTER_TRAINING": True, "NUM_SAMPLES": 100,
        "OBJ_ID": None, "CHECKPOINTS": None, "MODELS_INFO": None, "MIN_VISIB_FRACT": 0.1, "PROTOCOL": "sixd17",
        "TARGETS_FILE": None,
        "DETECTIONS": None,
        "MODEL_PATH_EVAL": None,
        "VSD_DELTA": 15.0, "VSD_TAU": 20.0,
        "VSD_THRESHOLD": 0.3, "VSD_MESH_FACES": 0, "CODEBOOK_BASELINE": False, "CODEBOOK_VIEWS": 2562,
        "CODEBOOK_INPLANE": 36, "OBJECT_ID_SOURCE": "gt", "CODEBOOK_ENCODER": "pretrained", "NUM_EXAMPLES": 8,
    }
    assert dict(cfg.Sampling) == {
        "NUM_SAMPLES": 2000, "REFERENCE_NUM": 500, "INPLANE_STEPS": 1, "BATCH_SIZE": 64}
    assert num_hypotheses(cfg) == 1
    assert loss_parameters(cfg) == LossParameters(depth_max=30.0, pose_max=40.0, gamma=1.0)
    assert [k.name for k in SCHEMA if k.section == "Training"] == list(cfg.Training)


def test_empty_file_is_all_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing\n")) == default_config()


# --------------------------------------------------------------------------- the original templates


def test_fixture_fixes_only_the_views_line():
    broken = BROKEN.read_text().splitlines()
    fixed = EARLY.read_text().splitlines()
    diff = [(a, b) for a, b in zip(broken, fixed, strict=True) if a != b]
    assert diff == [("VIEWS: [[0,0,0]]", "VIEWS: [[0,0,0],")]


def test_original_template_loads_every_key():
    cfg = load_config(EARLY)
    assert cfg.source == EARLY
    assert cfg.to_dict() == expected_values(
        Dataset={
            "MODEL_PATH_DATA": "./data/cad-files/ply-files/obj_10.ply",
            "MODEL_PATH_LOSS": "./data/cad-files/obj-files/obj_10.obj",
            "VALID_DATA_PATH": ("./data/validationsets/tless-train-obj10.p",),
            "ENCODER_WEIGHTS": "./data/obj1-18/encoder.npy",
            "BACKGROUND_IMAGES": "./data/VOC2012/JPEGImages/",
        },
        Rendering={"SHADER": "hard-depth", "FACES_PER_PIXEL": 1, "IMAGE_SIZE": 64,
                   "T": (0.0, 0.0, 375.0), "VIEWS": ZEROS_10},
        Training={"NUM_ITER": 201, "NUM_SAMPLES": 10000, "BATCH_SIZE": 64, "LEARNING_RATE": 1e-3,
                  "LOSS": "vsd-union", "LOSS_PARAMS": 30.0, "VIEW_SAMPLING": "sundermeyer-random",
                  "OUTPUT_PATH": "./output/test", "RANDOM_SEED": 10, "POSE_REPRESENTATION": "6d-pose",
                  "SAVE_IMAGES": True, "EARLY_STOPPING": False, "STOPPING_WINDOW": 10,
                  "STOPPING_TIME_LIMIT": 10.0},
        Evaluation={"BATCH_SIZE": 50, "SAVE_IMAGES": True,
                    "TEST_DATA_PATH": "./data/validationsets/tless-train-obj10.p"},
        Sampling={"NUM_SAMPLES": 2000, "REFERENCE_NUM": 500},
    )
    assert num_hypotheses(cfg) == 10
    # LOSS_PARAMS is the depth clamp for vsd-union; gamma = 1/K.
    assert loss_parameters(cfg) == LossParameters(depth_max=30.0, pose_max=40.0, gamma=0.1)


def test_original_final_template_loads_every_key():
    cfg = load_config(FINAL)
    assert cfg.to_dict() == expected_values(
        Dataset={
            "MODEL_PATH_DATA": "./data/cad-files/ply-files/obj_10.ply",
            "MODEL_PATH_LOSS": "./data/cad-files/obj-files/obj_10.obj",
            "VALID_DATA_PATH": ("./data/validationsets/tless-train-obj10.p",),
            "ENCODER_WEIGHTS": "./data/encoder/obj1-18/encoder.npy",
            "BACKGROUND_IMAGES": "./data/VOC2012/JPEGImages/",
        },
        Rendering={"SHADER": "hard-depth", "FACES_PER_PIXEL": 1, "NORMALIZE_VERTICES": True,
                   "IMAGE_SIZE": 64, "T": (0.0, 0.0, 1000.0), "VIEWS": ZEROS_10},
        Training={"NUM_ITER": 201, "NUM_SAMPLES": 500, "BATCH_SIZE": 64,
                  "LEARNING_RATE_LOW": 5e-4, "LEARNING_RATE_HIGH": 5e-3, "LOSS": "vsd-union",
                  "VIEW_SAMPLING": "sundermeyer-random", "OUTPUT_PATH": "./output/test", "RANDOM_SEED": 10,
                  "POSE_REPRESENTATION": "6d-pose", "SAVE_IMAGES": True, "EARLY_STOPPING": False,
                  "STOPPING_WINDOW": 10, "STOPPING_TIME_LIMIT": 10.0, "MAX_REL_OFFSET": 0.0,
                  "AUGMENT_IMGS": True, "WEIGHT_INIT_NAME": "kaiming_uniform_leakyrelu_fanout"},
        Loss_parameters={"DEPTH_MAX": 30.0, "POSE_MAX": 40.0, "GAMMA": 0.01},
        Evaluation={"BATCH_SIZE": 50, "SAVE_IMAGES": True,
                    "TEST_DATA_PATH": "./data/validationsets/tless-train-obj10.p"},
        Sampling={"NUM_SAMPLES": 2000, "REFERENCE_NUM": 500},
    )
    assert num_hypotheses(cfg) == 10
    assert loss_parameters(cfg) == LossParameters(depth_max=30.0, pose_max=40.0, gamma=0.01)


def test_original_deprecated_keys_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="multipose.config"):
        cfg = load_config(FINAL)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert any("[Dataset] TRAIN_DATA_PATH is not used by multipose" in m and "remove it" in m for m in warned)
    assert "TRAIN_DATA_PATH" not in cfg.Dataset
    assert cfg.Training.WEIGHT_INIT_NAME == "kaiming_uniform_leakyrelu_fanout"  # used, not ignored
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="multipose.config"):
        assert load_config(FINAL, ["dataset.train_data_path=x"]) == cfg
    assert any(m.startswith("--set dataset.train_data_path=x: [Dataset] TRAIN_DATA_PATH is not used")
               for m in caplog.messages)


def test_broken_original_template_names_views(caplog):
    with caplog.at_level(logging.WARNING):
        msg = config_error(BROKEN)
    assert msg.startswith(f"{BROKEN}: [Rendering] VIEWS = '[[0,0,0]] [0,0,0],")
    assert "expected an int >= 1 or a non-empty JSON list" in msg and "Extra data at line 2" in msg
    assert not caplog.records  # no deprecation noise before the error


# --------------------------------------------------------------------------- access and round trips


def test_access_styles_and_immutability():
    cfg = load_config(EARLY)
    assert cfg.Training.NUM_ITER == cfg["Training"]["NUM_ITER"] == cfg["training"]["num_iter"] == 201
    assert list(cfg) == list(SECTIONS)
    with pytest.raises(AttributeError, match="immutable"):
        cfg.Training.NUM_ITER = 5
    with pytest.raises(AttributeError, match="immutable"):
        cfg.Training = None
    with pytest.raises(TypeError):
        cfg["Training"]["NUM_ITER"] = 5
    with pytest.raises(AttributeError, match="did you mean NUM_ITER"):
        _ = cfg.Training.NUM_ITR
    with pytest.raises(KeyError, match=r"did you mean \[Training\]"):
        cfg["Trainig"]


ROUND_TRIP_OVERRIDES = (
    "Rendering.T=auto",
    "Rendering.VIEWS=[[1, 2.5], 3, [[4]]]",
    "Rendering.LOSS_VIEWPOINTS=[[0, 0, 0], [90, 0, 0], [0, 45.5, -30]]",
    "Dataset.MODEL_PATH_DATA=[\"./weird [x].ply\"]",
    "Dataset.VALID_DATA_PATH=[\"a.p\", \"b.p\"]",
    "Dataset.BACKGROUND_IMAGES=",
    "Training.LOSS=vsd-union-var-gamma",
    "Training.LOSS_PARAMS=0.25",
    "Loss_parameters.GAMMA=",
    "Training.VIEW_SAMPLING=views.npy-reuse-hard",
    "Training.LEARNING_RATE=1e-7",
    "Evaluation.TEST_DATA_PATH=./bop/tless",
)


@pytest.mark.parametrize("make", [
    default_config,
    lambda: load_config(EARLY),
    lambda: load_config(FINAL),
    lambda: load_config(FINAL, ROUND_TRIP_OVERRIDES),
], ids=["defaults", "early", "final", "overrides"])
def test_to_ini_round_trip(make, tmp_path):
    cfg = make()
    text = cfg.to_ini()
    back = load_config_text(text, "resolved.cfg")
    assert back == cfg and back.to_dict() == cfg.to_dict()
    assert back.to_ini().splitlines()[2:] == text.splitlines()[2:]  # header names the source
    for key in SCHEMA:  # every key is written
        assert sum(line.split(":")[0] == key.name for line in text.splitlines()
                   if not line.startswith("#")) == sum(k.name == key.name for k in SCHEMA)


def test_round_trip_keeps_changed_values():
    cfg = load_config(FINAL, ROUND_TRIP_OVERRIDES)
    assert cfg.Rendering.VIEWS == ((1, 2.5), 3, ((4,),)) and num_hypotheses(cfg) == 3
    assert cfg.Dataset.MODEL_PATH_DATA == "./weird [x].ply"
    assert cfg.Dataset.BACKGROUND_IMAGES == "procedural"
    assert cfg.Loss_parameters.GAMMA is None
    assert loss_parameters(cfg) == LossParameters(depth_max=30.0, pose_max=40.0, gamma=0.25)
    assert load_config_text(cfg.to_ini()) != load_config(FINAL)


def test_write_resolved_config(tmp_path):
    cfg = load_config(FINAL, ["Training.NUM_ITER=3"])
    path = write_resolved_config(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.cfg"
    assert load_config(path) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.cfg"]


def test_pickle_round_trip():
    cfg = load_config(FINAL, ["Training.NUM_ITER=3"])
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg and back.Training.NUM_ITER == 3
    assert back.origin("Training", "NUM_ITER") == "--set Training.NUM_ITER=3"


def test_schema_markdown_lists_every_key():
    md = schema_markdown()
    lines = md.splitlines()
    assert lines[0] == "| Section | Key | Type / allowed values | Default | Meaning |"
    rows = [line for line in lines if line.startswith("| ") and "`" in line.split("|")[2]]
    assert len(rows) == len(SCHEMA)
    for row, key in zip(rows, SCHEMA, strict=True):
        cells = [c.strip() for c in row.replace("\\|", "/").split("|")[1:-1]]
        assert len(cells) == 5 and cells[0] == key.section and cells[1] == f"`{key.name}`"
    assert "`[[0, 0, 0]]`" in md and "one of hard-depth, soft-depth" in md and "TRAIN_DATA_PATH" in md


# --------------------------------------------------------------------------- overrides


def test_overrides_are_typed_and_case_insensitive():
    cfg = load_config(EARLY, [
        "Training.NUM_ITER=5",
        "rendering.t=[1, 2, 3.5]",
        "RENDERING.views=4",
        "training.save_images=no",
        "Loss_Parameters.GAMMA=0",
        "Training.OUTPUT_PATH=./out/a=b",  # '=' in the value is fine
    ])
    assert cfg.Training.NUM_ITER == 5 and isinstance(cfg.Training.NUM_ITER, int)
    assert cfg.Rendering.T == (1.0, 2.0, 3.5)
    assert num_hypotheses(cfg) == 4
    assert cfg.Training.SAVE_IMAGES is False
    assert loss_parameters(cfg).gamma == 0.0  # an explicit 0 is not "unset"
    assert cfg.Training.OUTPUT_PATH == "./out/a=b"
    assert cfg.origin("Training", "NUM_ITER") == "--set Training.NUM_ITER=5"
    assert cfg.origin("Training", "BATCH_SIZE") == str(EARLY)


def test_override_fixes_a_bad_file_value():
    cfg = load_config(BROKEN, ["Rendering.VIEWS=10"])
    assert num_hypotheses(cfg) == 10


@pytest.mark.parametrize("override, expected", [
    ("Training.NUM_ITR=5",
     "--set Training.NUM_ITR=5: [Training] NUM_ITR: unknown key; did you mean NUM_ITER?"),
    ("Trainig.NUM_ITER=5", "--set Trainig.NUM_ITER=5: [Trainig]: unknown section; did you mean [Training]?"),
    ("Training.NUM_ITER=ten",
     "--set Training.NUM_ITER=ten: [Training] NUM_ITER = 'ten': expected an int >= 1"),
    ("Training.NUM_ITER",
     "--set 'Training.NUM_ITER': expected SECTION.KEY=VALUE, e.g. --set Training.NUM_ITER=10"),
    ("NUM_ITER=5", "--set 'NUM_ITER=5': expected SECTION.KEY=VALUE, e.g. --set Training.NUM_ITER=10"),
    (".NUM_ITER=5", "--set '.NUM_ITER=5': expected SECTION.KEY=VALUE, e.g. --set Training.NUM_ITER=10"),
])
def test_bad_overrides(override, expected):
    assert config_error(EARLY, (override,)) == expected


def test_overrides_must_be_a_list():
    with pytest.raises(TypeError, match="sequence"):
        load_config(EARLY, "Training.NUM_ITER=5")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("section, key, value, expected", [
    ("Training", "NUM_ITER", "ten", "an int >= 1"),
    ("Training", "NUM_ITER", "0", "an int >= 1"),
    ("Training", "NUM_ITER", "", "an int >= 1"),  # empty is not "unset" for a required key
    ("Training", "BATCH_SIZE", "3.5", "an int >= 1"),
    ("Training", "RANDOM_SEED", "-1", "an int in [0, 4294967295]"),
    ("Rendering", "IMAGE_SIZE", "4", "an int >= 8"),
    ("Training", "LEARNING_RATE", "-1e-3", "a float > 0"),
    ("Training", "LEARNING_RATE", "nan", "a float > 0 (not a finite number)"),
    ("Training", "MAX_REL_OFFSET", "1.0", "a float in [0, 1)"),
    ("Rendering", "FOV", "180", "a float in (0, 180)"),
    ("Rendering", "T_FILL", "0", "a float in (0, 1]"),
    ("Loss_parameters", "POSE_MAX", "abc", "a float > 0"),
    ("Loss_parameters", "GAMMA", "-0.5", "a float >= 0, or empty (unset)"),
    ("Rendering", "SHADER", "phong", "one of hard-depth, soft-depth"),
    ("Training", "DEVICE", "gpu", "one of auto, cpu, cuda"),
    ("Training", "SAVE_IMAGES", "maybe", "a bool: true/false, yes/no, on/off or 1/0"),
    ("Rendering", "VIEWS", "[[0,0,0]", "invalid JSON"),
    ("Rendering", "VIEWS", "[]", "a non-empty JSON list"),
    ("Rendering", "VIEWS", "0", "an int >= 1 or"),
    ("Rendering", "LOSS_VIEWPOINTS", "[[0, 0]]", "[x, y, z] Euler angles"),
    ("Rendering", "LOSS_VIEWPOINTS", "[[0, 0, true]]", "true is not a finite number"),
    ("Rendering", "LOSS_VIEWPOINTS", "[[0, 0, NaN]]", "NaN is not a finite number"),
    ("Rendering", "T", "[0, 0, -5]", "z must be > 0"),
    ("Rendering", "T", "[0, 0]", "[x, y, z], or [[x, y, z], ...] with one triple per object"),
    ("Rendering", "T", "375", "auto, or [x, y, z]"),
    ("Training", "VIEW_SAMPLING", "random", "one of sundermeyer-random, sphere, sphere-simple"),
    ("Training", "VIEW_SAMPLING", "views.txt-hard", "optionally followed by -hard and/or -reuse"),
    ("Training", "VIEW_SAMPLING", "sphere-hard-hard", "sundermeyer-random, sphere"),
    ("Dataset", "MODEL_PATH_DATA", "[1]", "the list must hold strings"),
    ("Dataset", "MODEL_PATH_DATA", "", "a path or a JSON list of paths, one per object"),
    ("Dataset", "ENCODER_WEIGHTS", "weights.h5", "auto, or a path to a .npy"),
    ("Training", "LOSS", "vsd", "one of vsd-union, vsd-union-var-gamma"),
])
def test_bad_value(tmp_path, section, key, value, expected):
    path = write(tmp_path, f"[{section}]\n{key}: {value}\n")
    msg = config_error(path)
    assert msg.startswith(f"{path}: [{section}] {key} = '{value}': expected ")
    assert expected in msg


def test_long_multiline_value_is_shown_on_one_line(tmp_path):
    path = write(tmp_path, "[Rendering]\nVIEWS: [[0,0,0]]\n" + "    [1,1,1],\n" * 40)
    msg = config_error(path)
    assert "' [1,1,1]" not in msg and "[[0,0,0]] [1,1,1], [1,1,1]," in msg and "...'" in msg


@pytest.mark.parametrize("text, views, k", [
    ("VIEWS: 7", 7, 7),
    ("views = [[0,0,0],\n  [1,1,1]]", ((0, 0, 0), (1, 1, 1)), 2),
])
def test_views_forms(text, views, k):
    cfg = load_config_text(f"[rendering]\n{text}\n")
    assert cfg.Rendering.VIEWS == views and num_hypotheses(cfg) == k
    assert loss_parameters(cfg).gamma == pytest.approx(1 / k)


@pytest.mark.parametrize("text, expected", [
    ("auto", None),
    ("[0, 0, 375]", (0.0, 0.0, 375.0)),
    ("[[10, -5.5, 1000]]", (10.0, -5.5, 1000.0)),
    ("AUTO", None),
])
def test_translation_forms(text, expected):
    assert load_config_text(f"[Rendering]\nT: {text}\n").Rendering.T == expected


@pytest.mark.parametrize("text, expected", [
    ("sundermeyer-random", ViewSampling("sundermeyer-random")),
    ("sphere-hard", ViewSampling("sphere", hard=True)),
    ("Sundermeyer-Random-reuse", ViewSampling("sundermeyer-random", reuse=True)),
    ("./views/sphere-2562.npy-hard-reuse", ViewSampling("./views/sphere-2562.npy", hard=True, reuse=True)),
    ("data/rots.pickle-reuse-hard", ViewSampling("data/rots.pickle", hard=True, reuse=True)),
    ("data/rots.p", ViewSampling("data/rots.p")),
])
def test_view_sampling_forms(text, expected):
    assert view_sampling(load_config_text(f"[Training]\nVIEW_SAMPLING: {text}\n")) == expected


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("Yes", True), ("on", True), ("1", True),
    ("FALSE", False), ("no", False), ("off", False), ("0", False),
])
def test_bool_forms(text, expected):
    assert load_config_text(f"[Training]\nEARLY_STOPPING: {text}\n").Training.EARLY_STOPPING is expected


@pytest.mark.parametrize("text, expected", [
    ('[""]', None), ("", None), ('["a.p", ""]', ("a.p",)), ("a.p", ("a.p",)),
])
def test_valid_data_path_forms(text, expected):
    assert load_config_text(f"[Dataset]\nVALID_DATA_PATH: {text}\n").Dataset.VALID_DATA_PATH == expected


def test_model_path_loss_defaults_to_data():
    cfg = load_config_text('[Dataset]\nMODEL_PATH_DATA: ["m.ply"]\n')
    assert cfg.Dataset.MODEL_PATH_DATA == cfg.Dataset.MODEL_PATH_LOSS == "m.ply"


# --------------------------------------------------------------------------- keys that depend on each other


@pytest.mark.parametrize("lines, expected", [
    ("LEARNING_RATE_LOW: 5e-4", "t.cfg: [Training] LEARNING_RATE_LOW = '5e-4': expected [Training] "
                                "LEARNING_RATE_HIGH to be set too"),
    ("LEARNING_RATE_HIGH: 5e-3", "t.cfg: [Training] LEARNING_RATE_HIGH = '5e-3': expected [Training] "
                                 "LEARNING_RATE_LOW to be set too"),
    ("LEARNING_RATE_LOW: 5e-3\nLEARNING_RATE_HIGH: 5e-4",
     "t.cfg: [Training] LEARNING_RATE_LOW = '5e-3': expected at most "
     "[Training] LEARNING_RATE_HIGH = '5e-4'"),
])
def test_cyclic_learning_rate_needs_both(lines, expected):
    assert config_error(f"[Training]\n{lines}\n").startswith(expected)


def test_loss_params_conflicts_with_depth_max():
    msg = config_error("[Training]\nLOSS_PARAMS: 20\n[Loss_parameters]\nDEPTH_MAX: 30\n")
    assert msg.startswith("t.cfg: [Training] LOSS_PARAMS = '20': expected the same value as "
                          "[Loss_parameters] DEPTH_MAX = '30'")
    # the same value twice is fine
    cfg = load_config_text("[Training]\nLOSS_PARAMS: 30\n[Loss_parameters]\nDEPTH_MAX: 30.0\n")
    assert loss_parameters(cfg).depth_max == 30.0


def test_loss_params_conflict_from_override_names_the_override():
    msg = config_error(FINAL, ("Training.LOSS_PARAMS=25",))
    assert msg.startswith("--set Training.LOSS_PARAMS=25: [Training] LOSS_PARAMS = '25': expected the same "
                          "value as [Loss_parameters] DEPTH_MAX = '30.0'")


def test_var_gamma_loss_parameters():
    base = "[Training]\nLOSS: vsd-union-var-gamma\n"
    assert loss_parameters(load_config_text(base + "LOSS_PARAMS: 0.3\n")) == LossParameters(30.0, 40.0, 0.3)
    cfg = load_config_text(base + "[Loss_parameters]\nGAMMA: 0.02\nDEPTH_MAX: 15\nPOSE_MAX: 20\n")
    assert loss_parameters(cfg) == LossParameters(15.0, 20.0, 0.02)
    msg = config_error(base + "LOSS_PARAMS: 0.3\n[Loss_parameters]\nGAMMA: 0.02\n")
    assert ("[Training] LOSS_PARAMS = '0.3': expected the same value as "
            "[Loss_parameters] GAMMA = '0.02'") in msg
    msg = config_error(base)
    assert msg.startswith("t.cfg: [Training] LOSS = 'vsd-union-var-gamma': expected [Loss_parameters] GAMMA")


def test_vsd_union_loss_parameters_precedence():
    cfg = load_config_text("[Training]\nLOSS_PARAMS: 12\n[Rendering]\nVIEWS: 4\n")
    assert loss_parameters(cfg) == LossParameters(12.0, 40.0, 0.25)
    cfg = load_config_text("[Loss_parameters]\nDEPTH_MAX: 8\nGAMMA: 0.5\n")
    assert loss_parameters(cfg) == LossParameters(8.0, 40.0, 0.5)


# --------------------------------------------------------------------------- INI syntax and names


@pytest.mark.parametrize("text, expected", [
    ("[Training]\nNUM_ITR: 5\n", "t.cfg: [Training] NUM_ITR: unknown key; did you mean NUM_ITER?"),
    ("[Training]\nnum_samples: 5\nbatch_sise: 4\n",
     "t.cfg: [Training] BATCH_SISE: unknown key; did you mean BATCH_SIZE?"),
    ("[Rendering]\nLEARNING_RATE: 1e-3\n",
     "t.cfg: [Rendering] LEARNING_RATE: unknown key; did you mean [Training] LEARNING_RATE?"),
    ("[Sampling]\nXYZZY: 1\n",
     "t.cfg: [Sampling] XYZZY: unknown key; known keys in [Sampling]: NUM_SAMPLES, REFERENCE_NUM, "
     "INPLANE_STEPS, BATCH_SIZE"),
    ("[Trainig]\nNUM_ITER: 5\n", "t.cfg: [Trainig]: unknown section; did you mean [Training]?"),
    ("[Loss_params]\nGAMMA: 1\n", "t.cfg: [Loss_params]: unknown section; did you mean [Loss_parameters]?"),
    ("[DEFAULT]\nNUM_ITER: 5\n", "t.cfg: [DEFAULT]: unknown section; known sections: [Dataset], [Rendering]"),
    ("[Training]\nNUM_ITER: 5\nNUM_ITER: 6\n",
     "t.cfg:3: [Training] NUM_ITER: duplicate key; set each key once per section"),
    ("[Training]\nNUM_ITER: 5\nnum_iter: 6\n",
     "t.cfg:3: [Training] NUM_ITER: duplicate key; set each key once per section"),
    ("[Training]\nNUM_ITER: 5\n[Training]\nBATCH_SIZE: 6\n",
     "t.cfg:3: [Training]: duplicate section; write each section once"),
    ("[Training]\nNUM_ITER: 5\n[training]\nBATCH_SIZE: 6\n",
     "t.cfg: [training]: duplicate section (also written [Training]); write each section once"),
    ("NUM_ITER: 5\n[Training]\n", "t.cfg:1: 'NUM_ITER: 5': a value before any [Section] header"),
    ("[Training]\nNUM_ITER 5\n", "t.cfg:2: 'NUM_ITER 5\\n': cannot parse this line"),
])
def test_bad_ini(text, expected):
    assert config_error(text).startswith(expected)


def test_missing_and_unreadable_files(tmp_path):
    assert config_error(tmp_path / "nope.cfg") == f"{tmp_path / 'nope.cfg'}: config file not found"
    assert config_error(tmp_path).startswith(f"{tmp_path}: is a folder")
    bad = tmp_path / "bin.cfg"
    bad.write_bytes(b"[Training]\nNUM_ITER: \xff\xfe\n")
    assert config_error(bad).startswith(f"{bad}: not a UTF-8 text file")


def test_keys_and_sections_are_case_insensitive_and_bom_is_ok(tmp_path):
    path = tmp_path / "bom.cfg"
    path.write_text("[training]\nnum_iter = 7\nLoss: VSD-UNION\n", encoding="utf-8-sig")
    cfg = load_config(path)
    assert cfg.Training.NUM_ITER == 7 and cfg.Training.LOSS == "vsd-union"


# --------------------------------------------------------------------------- device


def test_device_cuda_without_gpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    msg = config_error("[Training]\nDEVICE: cuda\n")
    assert msg.startswith("t.cfg: [Training] DEVICE = 'cuda': expected auto or cpu")
    assert resolve_device(load_config_text("[Training]\nDEVICE: auto\n")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_device_cuda_on_this_cpu_machine():
    msg = config_error(EARLY, ("Training.DEVICE=cuda",))
    assert msg.startswith("--set Training.DEVICE=cuda: [Training] DEVICE = 'cuda': expected auto or cpu")


def test_resolve_device():
    assert resolve_device(load_config_text("[Training]\nDEVICE: cpu\n")) == torch.device("cpu")
    auto = resolve_device(default_config())
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert resolve_device(load_config_text("[Training]\nDEVICE: cuda\n")).type == "cuda"


# --------------------------------------------------------------------------- cli.run in process


def _parser() -> argparse.ArgumentParser:
    return cli.make_parser("test")


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """cli.run installs a handler on the root logger; take it away again after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_run_calls_main_with_loaded_config(tmp_path):
    seen = {}

    def main(args, cfg):
        seen["cfg"], seen["args"] = cfg, args
        return 3

    argv = [str(EARLY), "--set", "Training.NUM_ITER=4", "--set", "Rendering.VIEWS=2"]
    assert cli.run(main, _parser(), argv) == 3
    assert seen["cfg"].Training.NUM_ITER == 4 and num_hypotheses(seen["cfg"]) == 2
    assert seen["args"].overrides == ["Training.NUM_ITER=4", "Rendering.VIEWS=2"]
    assert cli.run(lambda a, c: None, _parser(), [str(EARLY)]) == 0


def test_run_does_not_call_main_on_a_bad_config(tmp_path, capsys):
    called = []
    path = write(tmp_path, "[Training]\nNUM_ITER: -1\n")
    assert cli.run(lambda a, c: called.append(1), _parser(), [str(path)]) == 2
    assert not called
    err = capsys.readouterr().err
    assert err == f"error: {path}: [Training] NUM_ITER = '-1': expected an int >= 1\n"


def test_run_maps_user_errors_and_interrupts(tmp_path, capsys):
    good = str(write(tmp_path, "[Training]\nNUM_ITER: 2\n"))

    def mesh_error(args, cfg):
        raise MeshError("model.ply: no faces")

    def interrupted(args, cfg):
        raise KeyboardInterrupt

    def bug(args, cfg):
        raise RuntimeError("a bug")

    assert cli.run(mesh_error, _parser(), [good]) == 1
    assert capsys.readouterr().err == "error: model.ply: no faces\n"
    assert cli.run(interrupted, _parser(), [good]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    with pytest.raises(RuntimeError):  # bugs keep their traceback
        cli.run(bug, _parser(), [good])
    assert cli.run(lambda a, c: None, _parser(), []) == 2  # argparse usage error


def test_setup_logging_is_idempotent(monkeypatch):
    root = logging.getLogger()
    # start without the handler, whatever earlier in-process entry-point calls installed
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if not isinstance(h, cli._TqdmHandler)])
    before = list(root.handlers)
    cli.setup_logging()
    cli.setup_logging()
    assert len([h for h in root.handlers if h not in before]) == 1
    assert root.level == logging.INFO


# --------------------------------------------------------------------------- python -m multipose.config


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "multipose.config", *args], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])


def test_cli_bad_file_gives_one_error_line(tmp_path):
    path = write(tmp_path, "[Dataset]\nCACHE_DIR: ./c\n\n[Rendering]\nSHADER: phong\n", name="my_exp.cfg")
    proc = _check(str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert lines[0] == f"error: {path}: [Rendering] SHADER = 'phong': expected one of hard-depth, soft-depth"
    assert "Traceback" not in proc.stderr


def test_cli_bad_override_and_missing_file(tmp_path):
    proc = _check(str(EARLY), "--set", "Training.NUM_ITER=many")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == ("error: --set Training.NUM_ITER=many: [Training] NUM_ITER = 'many': "
                           "expected an int >= 1\n")
    proc = _check(str(tmp_path / "missing.cfg"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "missing.cfg" in proc.stderr


def test_cli_good_file_prints_resolved_config():
    proc = _check(str(FINAL), "--set", "training.num_iter=3")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "TRAIN_DATA_PATH is not used" in proc.stderr
    cfg = load_config_text(proc.stdout)
    assert cfg == load_config(FINAL, ["Training.NUM_ITER=3"])
    assert cfg.Training.NUM_ITER == 3


def test_checking_a_config_does_not_import_torch():
    code = ("import sys, multipose.app.cli, multipose.config as c; "
            "c.load_config(sys.argv[1]); print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(EARLY)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_python_m_multipose_config_uses_the_one_config_module_and_no_torch():
    """``python -m multipose.config`` runs the package's __main__: one copy of the schema and Config (a
    module that ran as __main__ and was imported again by cli built two), and checking loads no torch."""
    code = ("import runpy, sys, multipose.config as c; g = runpy.run_module('multipose.config', run_name='m'); "
            "rc = g['main']([sys.argv[1]]); print(rc, g['Config'] is c.Config, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(EARLY)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0 True False"
    assert "[Training]" in proc.stdout


def test_weight_init_names_are_the_heads_initialisers():
    from multipose.config import WEIGHT_INIT_NAMES
    from multipose.models.head import WEIGHT_INITS

    assert set(WEIGHT_INIT_NAMES) == set(WEIGHT_INITS) - {""}
    with pytest.raises(ConfigError, match=r"\[Training\] WEIGHT_INIT_NAME = 'xavier': expected one of kaiming"):
        load_config_text("[Training]\nWEIGHT_INIT_NAME: xavier\n")


def test_render_distance_follows_radius_then_an_explicit_t_like_the_original():
    from multipose.config import DEFAULT_RADIUS_MM, render_distance

    assert render_distance(default_config()) == DEFAULT_RADIUS_MM == 700.0  # T auto, RADIUS empty: the AAE's
    assert render_distance(load_config_text("[Rendering]\nT: [0, 0, 375]\n")) == 375.0  # the original's T z
    assert render_distance(load_config(FINAL)) == 1000.0  # T: [[0.0, 0.0, 1000.0]]
    both = load_config_text("[Rendering]\nT: [0, 0, 375]\n[Dataset]\nRADIUS: 650\n")
    assert render_distance(both) == 650.0  # an explicit RADIUS wins


def test_step_schedule_and_one_cycle_exclude_each_other():
    with pytest.raises(ConfigError, match=r"LR_STEP_EPOCHS = '5': expected it empty with LEARNING_RATE_LOW/HIGH"):
        load_config_text("[Training]\nLEARNING_RATE_LOW: 1e-4\nLEARNING_RATE_HIGH: 1e-3\nLR_STEP_EPOCHS: 5\n")
    assert load_config_text("[Training]\nLR_STEP_EPOCHS: 5\n").Training.LR_STEP_EPOCHS == 5
    assert default_config().Training.LR_STEP_EPOCHS is None  # constant, as the original


AAE = DATA / "original_aae_encoder_test.cfg"


def test_the_aae_training_config_reads_as_encoder_pretraining(caplog):
    """aae_encoder_test.cfg: its [Training] is the encoder's, H x W the crop, [Network] the encoder, K's
    arithmetic (720/2) evaluated without executing anything; its imgaug CODE is noted as unused."""
    with caplog.at_level(logging.WARNING, logger="multipose.config"):
        cfg = load_config(AAE)
    e, d = cfg.Encoder, cfg.Dataset
    assert (e.ARCH, e.CHANNELS, e.LATENT_SIZE, e.BATCH_NORMALIZATION, e.BOOTSTRAP_RATIO) == (
        "aae", (128, 256, 512, 512), 128, False, 4)
    assert (e.NUM_ITER, e.BATCH_SIZE, e.LEARNING_RATE, e.SAVE_INTERVAL) == (40000, 64, 2e-4, 1000)
    assert d.K == (1075.65, 0.0, 360.0, 0.0, 1073.9, 270.0, 0.0, 0.0, 1.0)
    assert (d.CROP_SIZE, d.RADIUS, d.PAD_FACTOR, d.NOOF_TRAINING_IMGS, d.NOOF_BG_IMGS) == (
        128,
        700.0,
        1.2,
        10000,
        15000,
    )
    assert d.BACKGROUND_IMAGES == "/shared-folder/AugmentedAutoencoder/pytorch3d/data/VOC2012/JPEGImages"
    assert d.MODEL_PATH_DATA == "/shared-folder/autoencoder_ws/data/T-LESS/models_reconst/obj_19.ply"
    assert (cfg.Training.MAX_REL_OFFSET, cfg.Evaluation.CODEBOOK_VIEWS, cfg.Evaluation.CODEBOOK_INPLANE) == (
        0.2,
        2562,
        36,
    )
    assert cfg.Training.NUM_ITER == 100  # the head's epochs keep their default
    assert any("[Augmentation] CODE" in m and "not used" in m for m in caplog.messages)
    assert load_config(AAE, ["Encoder.NUM_ITER=3"]).Encoder.NUM_ITER == 3  # overrides use multipose's names


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            ("STRIDES: [2, 2, 2, 2]", "STRIDES: [2, 2, 1, 2]"),
            r"\[Network\] STRIDES = '\[2, 2, 1, 2\]': multipose's encoder supports only",
        ),
        (
            ("K: [1075.65, 0, 720/2,", "K: [__import__('os').system('touch /tmp/x'), 0, 720/2,"),
            r"\[Dataset\] K = .*only numbers",
        ),
        (("H: 128", "H: 96"), r"\[Dataset\] H and W differ"),
        (("OPTIMIZER: Adam", "OPTIMIZER: SGD"), r"OPTIMIZER = 'SGD'"),
    ],
)
def test_aae_config_settings_multipose_cannot_follow_are_errors(tmp_path, edit, match):
    text = AAE.read_text()
    assert edit[0] in text
    (tmp_path / "aae.cfg").write_text(text.replace(edit[0], edit[1]))
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / "aae.cfg")


def test_a_run_folder_resumes_across_sampling_keys_and_a_crop_size_read_from_the_encoder(tmp_path):
    """[Sampling] (the loss landscape's) never changes training: a run resumes when it differs. An empty
    CROP_SIZE stored by an older version equals the size the entry scripts now fill in from the same encoder."""
    from multipose.experiment.encoders import with_encoder_crop_size
    from multipose.experiment.run_folder import stored_config_changes
    from multipose.models import Encoder, EncoderConfig, save_encoder

    weights = save_encoder(Encoder(EncoderConfig(image_size=128, channels=(8, 8), latent_size=8)), tmp_path / "e.pt")
    base = [f"Training.OUTPUT_PATH={tmp_path / 'run'}", f"Dataset.ENCODER_WEIGHTS={weights}"]
    write_resolved_config(load_config_text("", "t.cfg", base), tmp_path / "run")  # CROP_SIZE empty in the file
    now = with_encoder_crop_size(load_config_text("", "t.cfg", [*base, "Sampling.NUM_SAMPLES=10"]))
    assert now.Dataset.CROP_SIZE == 128 and stored_config_changes(now) == []
    other = load_config_text("", "t.cfg", [*base, "Dataset.CROP_SIZE=96"])
    assert stored_config_changes(other) == ["[Dataset] CROP_SIZE: None -> 96"]


def test_a_model_path_that_looks_like_a_list_reads_back():
    cfg = load_config_text('[Dataset]\nMODEL_PATH_DATA: ["[weird].ply"]\n')
    assert cfg.Dataset.MODEL_PATH_DATA == "[weird].ply"
    assert load_config_text(cfg.to_ini()).Dataset.MODEL_PATH_DATA == "[weird].ply"


def test_the_tless_recipe_loads_with_a_models_paths_replaced():
    part = REPO_ROOT / "data" / "cad-files" / "tless_like_2fold.ply"
    cfg = load_config(REPO_ROOT / "configs" / "tless.cfg",
                      [f"Dataset.MODEL_PATH_DATA={part}", f"Dataset.MODEL_PATH_LOSS={part}"])
    assert cfg.Training.HEAD == "population" and cfg.Dataset.ENCODER_WEIGHTS == "auto" and cfg.Training.FINETUNE_ENCODER
    assert (cfg.Evaluation.CODEBOOK_VIEWS, cfg.Evaluation.CODEBOOK_INPLANE) == (2562, 36)  # the AAE's full codebook
    assert cfg.Dataset.MODEL_PATH_DATA == str(part)


@pytest.mark.parametrize(("head", "setting", "expected"), [
    ("regression", "auto", "loss"), ("population", "auto", "top_depth"),
    ("regression", "top_depth", "top_depth"), ("population", "loss", "loss"),
])
def test_validation_metric_follows_the_head_unless_set(head, setting, expected):
    cfg = load_config_text(f"[Training]\nHEAD: {head}\nVALIDATION_METRIC: {setting}\n")
    assert validation_metric(cfg) == expected


# --------------------------------------------------------------------------- several objects (post-paper)

MULTI_TEMPLATE = Path(__file__).resolve().parent / "data" / "original_experiment_template_multi_objects_classify.cfg"


def test_the_originals_multi_object_template_loads():
    """The original's final template for one head of five T-LESS objects: lists of five model paths and
    translations, vsd-union-multi-object, FINETUNE_ENCODER, CLASSIFY_OBJECTS, CLASSIFY_WEIGHT."""
    cfg = load_config(MULTI_TEMPLATE)
    assert num_objects(cfg) == 5 and len(cfg.Dataset.MODEL_PATH_LOSS) == 5 and len(cfg.Dataset.VALID_DATA_PATH) == 5
    assert cfg.Rendering.T == ((0.0, 0.0, 1000.0),) * 5 and cfg.Training.LOSS == "vsd-union-multi-object"
    assert (cfg.Training.CLASSIFY_OBJECTS, cfg.Training.FINETUNE_ENCODER, cfg.Loss_parameters.CLASSIFY_WEIGHT) == (
        True, True, 0.1)
    again = load_config_text(cfg.to_ini())  # the resolved lists read back the same
    assert {s: dict(again[s]) for s in again} == {s: dict(cfg[s]) for s in cfg}


PATHS = 'MODEL_PATH_DATA: ["a.ply", "b.ply", "c.ply"]\nENCODER_WEIGHTS: encoder.npy\n'
MULTI = f"[Dataset]\n{PATHS}[Training]\nLOSS: vsd-union-multi-object\n"


@pytest.mark.parametrize(("text", "expected"), [
    (f'[Dataset]\n{PATHS}MODEL_PATH_LOSS: ["a.obj", "b.obj"]\n[Training]\nLOSS: vsd-union-multi-object\n',
     "[Dataset] MODEL_PATH_LOSS names 2 object(s), but [Dataset] MODEL_PATH_DATA names 3"),
    (f"{MULTI}[Rendering]\nT: [[0, 0, 700], [0, 0, 700]]\n", "[Rendering] T names 2 object(s), but [Dataset] "
                                                             "MODEL_PATH_DATA names 3"),
    (f"{MULTI}[Rendering]\nT: [0, 0, 700]\n", "[Rendering] T names 1 object(s)"),
    (f'[Dataset]\n{PATHS}VALID_DATA_PATH: ["a.p"]\n[Training]\nLOSS: vsd-union-multi-object\n',
     "[Dataset] VALID_DATA_PATH names 1 object(s)"),
    (f"[Dataset]\n{PATHS}", "a head of 3 objects needs LOSS: vsd-union-multi-object"),
    (f"{MULTI}HEAD: population\n", "HEAD = population poses one object"),
    (f"{MULTI}[Evaluation]\nOBJ_ID: 10\n", "[Evaluation] OBJ_ID names 1 object(s), but [Dataset] MODEL_PATH_DATA"),
    (f"{MULTI}[Evaluation]\nOBJ_ID: [5, 10, 5]\n", "an id appears twice"),
    (f"{MULTI}[Evaluation]\nOBJ_ID: [5, 0, 17]\n", "[Evaluation] OBJ_ID = '[5, 0, 17]'"),
])
def test_per_object_keys_must_name_every_object_and_the_loss_must_read_blocks(text, expected):
    assert expected in config_error(text)


def test_several_objects_read_back_and_one_object_stays_a_string():
    cfg = load_config_text(MULTI + "[Rendering]\nT: [[0, 0, 700], [0, 0, 800], [0, 0, 900]]\n")
    assert cfg.Dataset.MODEL_PATH_DATA == ("a.ply", "b.ply", "c.ply") == cfg.Dataset.MODEL_PATH_LOSS
    assert cfg.Rendering.T[2] == (0.0, 0.0, 900.0) and num_objects(cfg) == 3
    assert load_config_text(MULTI + "[Evaluation]\nOBJ_ID: [5, 10, 17]\n").Evaluation.OBJ_ID == (5, 10, 17)
    one = load_config_text('[Dataset]\nMODEL_PATH_DATA: ["a.ply"]\n[Rendering]\nT: [[0, 0, 700]]\n'
                           '[Evaluation]\nOBJ_ID: [10]\n')
    assert one.Dataset.MODEL_PATH_DATA == "a.ply" and one.Rendering.T == (0.0, 0.0, 700.0) and num_objects(one) == 1
    assert one.Evaluation.OBJ_ID == 10


def test_equal_low_and_high_learning_rates_are_a_constant_rate_as_the_originals_final_version():
    cfg = load_config_text("[Training]\nLEARNING_RATE_LOW: 5e-4\nLEARNING_RATE_HIGH: 5e-4\n")
    from multipose.experiment.pose_training import build_scheduler

    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=5e-4)
    scheduler = build_scheduler(cfg, optimizer)
    rates = []
    for _ in range(cfg.Training.NUM_ITER):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == [5e-4] * cfg.Training.NUM_ITER


def test_scripts_that_take_one_object_refuse_several_with_one_line(tmp_path):
    path = tmp_path / "multi.cfg"
    path.write_text(MULTI)
    proc = subprocess.run([sys.executable, "train_encoder.py", str(path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "MODEL_PATH_DATA names 3 objects" in proc.stderr and not (tmp_path / "output").exists()
    shown = _check(str(path))
    assert shown.returncode == 0 and 'MODEL_PATH_DATA: ["a.ply", "b.ply", "c.ply"]' in shown.stdout


def test_model_random_seed_alone_sets_the_heads_initial_weights():
    """``MODEL_RANDOM_SEED`` (the original's final version) seeds the head's initial weights whatever
    ``RANDOM_SEED`` is; without it the weights follow ``RANDOM_SEED``."""
    from multipose.experiment.pose_training import build_head
    from multipose.models import Encoder, EncoderConfig

    encoder = Encoder(EncoderConfig(image_size=32, channels=(8, 8), latent_size=16))

    def first_weights(text: str) -> torch.Tensor:
        cfg = load_config_text(text)
        torch.manual_seed(cfg.Training.RANDOM_SEED)
        return build_head(cfg, encoder).l01.weight.detach().clone()

    a = first_weights("[Training]\nRANDOM_SEED: 1\nMODEL_RANDOM_SEED: 7\n")
    b = first_weights("[Training]\nRANDOM_SEED: 2\nMODEL_RANDOM_SEED: 7\n")
    c = first_weights("[Training]\nRANDOM_SEED: 2\n")
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_several_objects_need_their_own_encoder_file():
    assert "ENCODER_WEIGHTS = auto pretrains an encoder of one object" in config_error(
        MULTI.replace("ENCODER_WEIGHTS: encoder.npy\n", ""))
    assert "a classifier needs several objects" in config_error("[Training]\nCLASSIFY_OBJECTS: true\n")
