"""The pose head: shapes, valid rotations, softmax confidences, both representations."""

from __future__ import annotations

import pytest
import torch

from multipose.models import PoseHead, PoseHeadConfig


@pytest.mark.parametrize("representation", ["6d-pose", "quat"])
def test_head_outputs_k_rotations_and_softmax_confidences(representation, device):
    torch.manual_seed(0)
    head = PoseHead(PoseHeadConfig(num_hypotheses=5, representation=representation)).to(device)
    code = torch.nn.functional.normalize(torch.randn(8, 128, device=device), dim=1)
    out = head(code)
    assert out.confidence.shape == (8, 5) and out.R.shape == (8, 5, 3, 3)
    torch.testing.assert_close(out.confidence.sum(1), torch.ones(8, device=device))
    eye = torch.eye(3, device=device).expand(8, 5, 3, 3)
    torch.testing.assert_close(out.R @ out.R.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(out.R), torch.ones(8, 5, device=device), atol=1e-5)
    # hypotheses differ from each other at initialisation
    assert (out.R[:, 0] - out.R[:, 1]).abs().amax() > 0.1
    out.R.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def test_head_uses_skip_concatenations_of_the_code():
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, width=32))
    widths = [layer[0].in_features for layer in head.layers]
    assert widths == [16, 48, 48, 48] and head.out.out_features == 2 * 7


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown representation"):
        PoseHeadConfig(num_hypotheses=2, representation="euler")
    head = PoseHead(PoseHeadConfig(num_hypotheses=2))
    with pytest.raises(ValueError, match="code must be"):
        head(torch.zeros(4, 64))
