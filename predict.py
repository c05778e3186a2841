"""Poses of objects in your own images, from their 2D boxes (a detector's, or drawn by hand).

    python predict.py my.cfg --image rgb.png --camera camera.json --boxes boxes.json --out poses/
    python predict.py my.cfg --image scene/rgb/ --camera camera.json --boxes detections.json --out poses/ --vis

The head of --checkpoint (default <OUTPUT_PATH>/models/model-best.pt) on the config's encoder poses every box:
the crop around the box, K rotation hypotheses with confidences, the translation from the box (the AAE's way,
as evaluate.py does for BOP images). camera.json holds "K" (3x3, pixels) and optionally "width" and "height";
boxes.json a list of {"bbox": [x, y, w, h], "obj_id", "score"} for one image (COCO's box convention; "bbox_obj"
for BOP's ground-truth one), an object keyed by image file name for a folder, or a BOP detections file.
Writes --out/poses.json (per box: R 3x3 row-major, OpenCV camera as BOP, t in mm, score, every hypothesis;
seconds per box) and with --vis <image>-poses.png per image (the hypotheses' silhouette outlines and the box).
Every input is checked before anything is written; a bad one is one error line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from multipose.app.cli import make_parser, run
from multipose.config import Config


def main(args: argparse.Namespace, cfg: Config) -> int:
    from multipose.experiment.prediction import predict_images  # heavy imports after the config is known to be valid

    result = predict_images(cfg, args.image, args.camera, args.boxes, args.out, checkpoint=args.checkpoint,
                            vis=args.vis, trust=args.trust_checkpoint)
    ms = {k: 1000.0 * v for k, v in result.seconds_per_box.items()}
    print(f"{result.num_boxes} box(es) in {len(result.poses)} image(s) posed ({ms['encoder+head']:.1f} ms per box "
          f"for encoder+head, {ms['translation']:.1f} ms for the translation); {result.files[0]}"
          + (f" and {len(result.files) - 1} overlay(s)" if args.vis else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--image", required=True, metavar="PATH", help="an image file, or a folder of images")
    parser.add_argument("--camera", required=True, metavar="JSON", help='camera file: {"K": [[fx, 0, cx], ...]}')
    parser.add_argument("--boxes", required=True, metavar="JSON",
                        help="boxes file: a list of {bbox, obj_id, score}, an object keyed by image name, or a BOP "
                             "detections file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (poses.json, overlays)")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="pose-head checkpoint (default <OUTPUT_PATH>/models/model-best.pt)")
    parser.add_argument("--vis", action="store_true", help="also write <image>-poses.png per image")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that needs Python objects rebuilt (runs code named in the file); "
                             "only for files from a source you trust")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), several_objects=True))
