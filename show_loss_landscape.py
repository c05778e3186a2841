"""Draw a loss landscape computed by plot_loss_landscape.py and list its local minima.

    python show_loss_landscape.py output/template            # writes the PNGs, prints the minima
    python show_loss_landscape.py output/template --show     # also opens interactive windows

Writes to OUTPUT_DIR: flat_landscape.png (theta/phi map, Voronoi cells coloured by loss),
landscape.png (spherical Voronoi cells on the sphere), regions.png (basins of attraction of the
steepest descent over neighbouring cells), minima.json; marks the reference pose and the local minima.
Reads the original repository's points.npy / losses.npy too (give --reference for those).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from multipose.app.cli import run_without_config


def main(args: argparse.Namespace) -> int:
    from multipose.infra.atomic import atomic_write_text
    from multipose.infra.visualize import save_figure
    from multipose.tools.landscape import basins, load_landscape, minima_table, plot_flat, plot_regions, plot_sphere

    data = load_landscape(args.output_dir, reference=args.reference)
    labels, minima = basins(data.cartesian, data.point_losses)
    figures = {
        "flat_landscape.png": plot_flat(data, minima),
        "landscape.png": plot_sphere(data, minima),
        "regions.png": plot_regions(data, minima, labels),
    }
    for name, fig in figures.items():
        save_figure(fig, args.output_dir / name, dpi=120)
    rows = minima_table(data, minima, labels)
    atomic_write_text(args.output_dir / "minima.json", json.dumps(rows, indent=2) + "\n")
    ref_loss = data.point_losses[data.reference]
    print(
        f"{len(data.point_losses)} points, reference {data.reference} (loss {ref_loss:.4f}), {len(rows)} local minima"
    )
    print(f"{'rank':>4} {'point':>6} {'loss':>8} {'angle to ref (deg)':>19} {'basin %':>8} {'theta':>7} {'phi':>7}")
    for rank, r in enumerate(rows[: args.top], 1):
        print(f"{rank:>4} {r['index']:>6} {r['loss']:>8.4f} {r['angle_to_reference_deg']:>19.1f} "
              f"{100 * r['basin_fraction']:>8.1f} {r['theta_deg']:>7.1f} {r['phi_deg']:>7.1f}")
    if len(rows) > args.top:
        print(f"... {len(rows) - args.top} more in {args.output_dir / 'minima.json'}")
    if args.show:
        import matplotlib.pyplot as plt

        for name in figures:
            fig = plt.figure()
            fig.figimage(plt.imread(args.output_dir / name))
            fig.canvas.manager.set_window_title(name)
        plt.show()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path, help="folder written by plot_loss_landscape.py")
    parser.add_argument("--show", action="store_true", help="open the figures in windows (needs a display)")
    parser.add_argument("--reference", type=int, help="reference index (only for the original's files)")
    parser.add_argument("--top", type=int, default=10, help="minima listed on the terminal (default 10)")
    sys.exit(run_without_config(main, parser))
