"""Square occluders cut out of the object (the original's DatasetGeneratorSquareOcc variant)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from multipose.config import load_config_text
from multipose.data.occlusion import OcclusionSettings, square_occlusions
from multipose.experiment.factories import occlusion_settings

ORIGINAL = OcclusionSettings(prob=0.7, grid=3, rate=0.4, max_fraction=0.25)


def test_off_by_default_and_then_draws_nothing():
    assert occlusion_settings(load_config_text("")) == OcclusionSettings(prob=0.0, grid=3, rate=0.4, max_fraction=0.25)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert not square_occlusions(torch.ones(4, 30, 30, dtype=torch.bool), OcclusionSettings(), g).any()
    assert torch.equal(g.get_state(), state)


def test_cuts_are_whole_grid_cells_on_the_object_below_the_limit():
    mask = torch.zeros(200, 48, 48, dtype=torch.bool)
    mask[:, 6:42, 10:40] = True  # the object
    cut = square_occlusions(mask, OcclusionSettings(prob=1.0), torch.Generator().manual_seed(1))
    assert not (cut & ~mask).any()
    share = cut.sum(dim=(1, 2)) / mask.sum(dim=(1, 2))
    assert share.max() < 0.25 and (share > 0).float().mean() > 0.9
    # every cut is the object's part of whole cells of the 3 x 3 grid (16 px cells at 48 px)
    cells = F.avg_pool2d(cut.float()[:, None], 16).squeeze(1) > 0  # (B, 3, 3): cells with any cut
    whole = F.interpolate(cells.float()[:, None], size=(48, 48), mode="nearest").squeeze(1).bool() & mask
    assert torch.equal(cut, whole)


def test_the_originals_probability_of_occluding_a_sample():
    """prob 0.7; a draw that fits cuts at most 2 of 9 cells of a full-crop object, and cuts none 4 % of
    the time: about 0.7 x 0.96 = 0.67 of the samples get a cut."""
    cut = square_occlusions(torch.ones(3000, 24, 24, dtype=torch.bool), ORIGINAL, torch.Generator().manual_seed(2))
    assert 0.62 < cut.any(dim=(1, 2)).float().mean() < 0.72
    assert cut.sum(dim=(1, 2)).max() <= 2 * 64  # two 8 x 8 cells
