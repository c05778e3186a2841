"""Benchmark poses of one's own images: milliseconds per box of ``predict.py``'s steps on this machine.

    python benchmarks/predict.py
    python benchmarks/predict.py --boxes 1 8 --repeats 20 --json output/bench/predict.json

For each encoder (the AAE's, 128 px crops, and the committed small one, 64 px) with the template's head (K and
head settings of experiment_template.cfg; weights untrained: time does not depend on them), and B boxes per
image: the crop (cutting B squares out of a 720 x 540 image), encoder + head (``PoseEstimator.hypotheses``), the
translation from the box (the AAE's box-to-pose step), all three together (``PoseEstimator.predict``), and
encoder + head as exported TorchScript and ONNX (onnxruntime, where installed) on the same crops. Medians over
``--repeats`` runs after a warm-up, per box.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from multipose.config import load_config  # noqa: E402
from multipose.core.mesh import load_mesh  # noqa: E402
from multipose.experiment.factories import view_settings  # noqa: E402
from multipose.experiment.pose_training import build_head  # noqa: E402
from multipose.inference.estimator import PosedObject, PoseEstimator  # noqa: E402
from multipose.inference.export import export_model  # noqa: E402
from multipose.infra.timing import median_seconds  # noqa: E402
from multipose.models import encoder_config  # noqa: E402
from multipose.models.encoder import Encoder  # noqa: E402


def _estimator(arch: str) -> PoseEstimator:
    """The template's head on an untrained encoder of ``arch``, posing the committed part."""
    encoder = Encoder(encoder_config(arch)).eval()
    size = encoder.config.image_size
    cfg = load_config(REPO / "experiment_template.cfg", [f"Dataset.CROP_SIZE={size}", "Training.DEVICE=cpu"])
    head = build_head(cfg, encoder)
    mesh = load_mesh(REPO / "data" / "cad-files" / "tless_like_2fold.ply")
    return PoseEstimator(encoder, head, [PosedObject(1, mesh, view_settings(cfg))])


def _rows(estimator: PoseEstimator, boxes: int, repeats: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (540, 720, 3), generator=gen, dtype=torch.uint8).numpy()
    centre = torch.rand(boxes, 2, generator=gen) * torch.tensor([520.0, 340.0]) + 100
    box = torch.cat([centre - 40, centre + 40], dim=1).double()
    K = torch.tensor(estimator.objects[0].view.K, dtype=torch.float32).reshape(3, 3)
    zero = torch.zeros(boxes, dtype=torch.int64)
    crops = estimator.crops(image, box)
    R_view, _, _ = estimator.hypotheses(crops, zero)
    steps = {
        "crop": partial(estimator.crops, image, box),
        "encoder+head": partial(estimator.hypotheses, crops, zero),
        "translation": partial(estimator.poses, R_view, box.float(), K.expand(boxes, 3, 3), zero),
        "predict (all)": partial(estimator.predict, image, K, box),
    }
    out = {name: 1000.0 * median_seconds(fn, "cpu", repeats) / boxes for name, fn in steps.items()}
    uint8 = (crops.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).contiguous()
    with tempfile.TemporaryDirectory() as folder:
        scripted = torch.jit.load(str(export_model(estimator.encoder, estimator.head, "torchscript",
                                                   Path(folder) / "m.pt")))
        with torch.no_grad():
            out["encoder+head TorchScript"] = 1000.0 * median_seconds(partial(scripted, uint8), "cpu", repeats) / boxes
        try:
            import onnxruntime as ort
        except ImportError:
            return out
        session = ort.InferenceSession(str(export_model(estimator.encoder, estimator.head, "onnx",
                                                        Path(folder) / "m.onnx")))
        feed = {"crops": np.ascontiguousarray(uint8.numpy())}
        out["encoder+head ONNX Runtime"] = 1000.0 * median_seconds(partial(session.run, None, feed), "cpu",
                                                                    repeats) / boxes
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, nargs="+", default=[1, 8], help="boxes per image")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "rows": []}
    for arch in ("aae", "small"):
        estimator = _estimator(arch)
        for boxes in args.boxes:
            row = {"encoder": arch, "crop_px": estimator.crop_size, "head": estimator.head.config.output,
                   "K": estimator.num_hypotheses, "boxes": boxes,
                   **{f"ms_per_box {k}": round(v, 3) for k, v in _rows(estimator, boxes, args.repeats).items()}}
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
