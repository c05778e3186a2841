"""Generate a file of synthetic samples (AAE-style crops of the config's CAD model on backgrounds,
augmented as in training), e.g. a fixed validation set for [Dataset] VALID_DATA_PATH; or, with
--from-bop, convert a BOP split into the original's pickle as its bop2pickle.py did.

    python generate_dataset.py experiment_template.cfg --num 256 --out data/validationsets/template.npz
    python generate_dataset.py my.cfg --num 1000 --out valid.p --format pickle --seed 3
    python generate_dataset.py my.cfg --from-bop data/tless/test_primesense --obj-id 10 --out test-obj10.p

.npz: images (uint8 [N,S,S,3] RGB), Rs, ts, Ks (crop intrinsics, OpenCV), masks (object silhouette
before augmentation and occlusion) and meta (JSON: resolved config, mesh, seed). --format pickle
writes the original repository's {"Rs": [...], "images": [...]}. Rotations are OpenCV model-to-camera.
--from-bop: every instance of the object (--obj-id, else [Evaluation] OBJ_ID) with a visible box,
cropped around that box (side 1.2 x its larger side, clipped at the image border) and resized to --size
(128) px, as {"images", "Rs", "ts", "visib_fract", "scene_ids", "img_ids", "obj_ids"}; --num keeps at
most N, evenly spaced. evaluate.py reads such a file as a test set ([Evaluation] TEST_DATA_PATH) and
writes the scene ids and translations into its results files.
The file is written atomically; on any error nothing is written.

Several processes: torchrun --standalone --nproc_per_node=N generate_dataset.py CFG --num-samples N --out FILE
(each renders its share of the crops; rank 0 writes the same file as one process would; --from-bop runs
on rank 0 alone).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from multipose.app.cli import make_parser, run
from multipose.config import Config, resolve_device
from multipose.infra.errors import UserInputError

logger = logging.getLogger("generate_dataset")

_PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")


def _output_format(out: Path, requested: str | None) -> str:
    suffix = out.suffix.lower()
    fmt = requested or ("pickle" if suffix in _PICKLE_SUFFIXES else "npz")
    if fmt == "npz" and suffix != ".npz":
        raise UserInputError(f"--out {out}: an .npz dataset file must end in .npz (or pass --format pickle)")
    if fmt == "pickle" and suffix not in _PICKLE_SUFFIXES:
        raise UserInputError(f"--out {out}: a pickle dataset file must end in {', '.join(_PICKLE_SUFFIXES)}")
    if out.is_dir():
        raise UserInputError(f"--out {out}: is a folder; give a file name")
    return fmt


def _from_bop(args: argparse.Namespace, cfg: Config, out: Path) -> int:
    import io
    import pickle

    from multipose.infra.atomic import atomic_write_bytes
    from multipose.tools.pickle_export import bop_split_pickle

    obj_id = args.obj_id if args.obj_id is not None else cfg.Evaluation.OBJ_ID
    if obj_id is None:
        raise UserInputError("--from-bop: which object? pass --obj-id N (or set [Evaluation] OBJ_ID)")
    if args.size < 8:
        raise UserInputError(f"--size {args.size}: expected the crop side in pixels, >= 8")
    data = bop_split_pickle(args.from_bop, obj_id, size=args.size, limit=args.num)
    buf = io.BytesIO()
    pickle.dump(data, buf, protocol=2)
    try:
        atomic_write_bytes(out, buf.getvalue())
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write the file ({exc.strerror or exc})") from None
    logger.info("wrote %d crops of object %d (%d px) from %s to %s", len(data["images"]), obj_id, args.size,
                args.from_bop, out)
    return 0


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.num is not None and args.num < 1:
        raise UserInputError(f"--num {args.num}: expected the number of samples, >= 1")
    out = Path(args.out)
    fmt = _output_format(out, args.format)
    if args.from_bop is not None:
        if fmt != "pickle":
            raise UserInputError(f"--out {out}: --from-bop writes the original's pickle; name it .p/.pkl/.pickle")
        if int(os.environ.get("RANK", "0")) != 0:
            return 0  # under torchrun the conversion (file reading, no rendering) is rank 0's alone
        return _from_bop(args, cfg, out)
    if args.num is None:
        raise UserInputError("--num N is needed: how many synthetic samples to generate")
    from multipose.data.io import save_samples
    from multipose.experiment.datasets import generate_samples
    from multipose.infra.distributed import process_group

    seed = cfg.Training.RANDOM_SEED if args.seed is None else args.seed
    with process_group(resolve_device(cfg)) as (dist, device):  # torchrun: each rank renders its share
        samples = generate_samples(cfg, args.num, seed, device, progress=dist.is_main, dist=dist)
    if not dist.is_main:
        return 0
    try:
        save_samples(out, samples, fmt)
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write the file ({exc.strerror or exc})") from None
    logger.info("wrote %d samples (%d px, seed %d, %d process(es)) to %s", len(samples), samples.image_size, seed,
                dist.world_size, out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--num", "--num-samples", dest="num", type=int, default=None, metavar="N",
                        help="number of samples (with --from-bop: at most N crops); under torchrun write "
                             "--num-samples (torchrun's own parser takes --num)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output file (.npz, or .p/.pkl/.pickle)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: [Training] RANDOM_SEED)")
    parser.add_argument("--format", choices=("npz", "pickle"), default=None,
                        help="file format (default: from the file name)")
    parser.add_argument(
        "--from-bop",
        metavar="FOLDER",
        default=None,
        help="convert this BOP split folder (e.g. data/tless/test_primesense) into the original's pickle",
    )
    parser.add_argument("--obj-id", type=int, default=None, metavar="N",
                        help="with --from-bop: the object (default [Evaluation] OBJ_ID)")
    parser.add_argument("--size", type=int, default=128, metavar="PX", help="with --from-bop: crop side (128)")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), preflight=True))
