"""The pose head: the original's architecture and parameter names, shapes, valid rotations, softmax
confidences, both representations, the original's 6D decoding and weight initialisations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch3d.transforms import matrix_to_quaternion, quaternion_to_matrix
from support.original import original_forward, original_multi_object_forward, original_state_dict, ortho6d_columns

from multipose.core.geometry import geodesic_angle_deg
from multipose.models import PoseHead, PoseHeadConfig
from multipose.models.head import WEIGHT_INITS, anchor_neighbours, init_head_weights, with_decoding


def test_head_is_the_originals_architecture_with_its_parameter_count():
    head = PoseHead(PoseHeadConfig(num_hypotheses=4))
    assert sum(p.numel() for p in head.parameters()) == 159_580
    state = original_state_dict(K=4)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_an_original_state_dict_loads_strictly_and_computes_the_originals_forward():
    K = 4
    state = original_state_dict(K)
    head = PoseHead(PoseHeadConfig(num_hypotheses=K))
    head.load_state_dict(state, strict=True)
    head.eval()
    code = F.normalize(torch.randn(5, 128, generator=torch.Generator().manual_seed(1)), dim=1)
    with torch.no_grad():
        out = head(code)
        expected = original_forward(state, code, K)
    torch.testing.assert_close(out.confidence, expected[:, :K], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits.softmax(1), expected[:, :K], atol=1e-5, rtol=1e-5)


def test_original_convention_returns_the_physical_pose_of_the_originals_camera_rotation():
    torch.manual_seed(3)
    cfg = PoseHeadConfig(num_hypotheses=2, input_dim=16, width=32, convention="original")
    head = PoseHead(cfg).eval()
    ours = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, width=32)).eval()
    ours.load_state_dict(head.state_dict())
    code = torch.randn(3, 16)
    raw = []
    head.l3.register_forward_hook(lambda module, inputs, output: raw.append(output))
    with torch.no_grad():
        R, R_ours = head(code).R, ours(code).R
    params = raw[0][:, 2:].reshape(3, 2, 6)
    flip = np.diag([-1.0, -1.0, 1.0])
    for b in range(3):
        for k in range(2):
            R_orig = ortho6d_columns(params[b, k].double().numpy())  # the original's PyTorch3D camera R
            np.testing.assert_allclose(R[b, k].double().numpy(), flip @ R_orig.T, atol=1e-5)
            # ours and the original's decoding of the same vector differ by a 180-degree roll about z
            np.testing.assert_allclose(R[b, k].numpy(), flip @ R_ours[b, k].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="6d-pose heads only"):
        PoseHeadConfig(num_hypotheses=2, representation="quat", convention="original")


@pytest.mark.parametrize("name", sorted(n for n in WEIGHT_INITS if n))
def test_weight_initialisations_change_linear_weights_only(name):
    torch.manual_seed(0)
    head = PoseHead(PoseHeadConfig(num_hypotheses=2))
    before = {k: v.clone() for k, v in head.state_dict().items()}
    init_head_weights(head, name)
    after = head.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    linear = {f"{n}.weight" for n in ("l01", "l02", "l03", "l04", "l1", "l2", "l3")}
    assert changed == linear
    if name == "orthogonal":
        w = head.l2.weight  # (64, 128): orthogonal rows scaled by the ReLU gain sqrt(2)
        torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(64), atol=1e-4, rtol=0)
    else:  # kaiming with a = sqrt(5): std = sqrt(2 / (1 + 5) / fan) for leaky_relu, sqrt(2 / fan) for relu
        fan = 128 if "fanout" in name else 256  # l1: 256 -> 128
        gain2 = 2.0 if "_relu_" in name else 2.0 / 6.0
        assert head.l1.weight.std().item() == pytest.approx((gain2 / fan) ** 0.5, rel=0.05)


def test_unknown_weight_initialisation_is_rejected():
    with pytest.raises(ValueError, match="unknown weight initialisation"):
        init_head_weights(PoseHead(PoseHeadConfig(num_hypotheses=2)), "xavier")


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


def test_head_layer_widths_follow_code_and_width():
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, width=32))
    widths = [head.l01.in_features, head.l02.in_features, head.l03.in_features, head.l04.in_features,
              head.l1.in_features, head.l2.in_features, head.l3.in_features]
    assert widths == [16, 48, 64, 64, 64, 32, 64] and head.l3.out_features == 2 * 7


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown representation"):
        PoseHeadConfig(num_hypotheses=2, representation="euler")
    head = PoseHead(PoseHeadConfig(num_hypotheses=2))
    with pytest.raises(ValueError, match="code must be"):
        head(torch.zeros(4, 64))


def test_population_head_returns_its_k_best_anchors_with_softmax_confidences():
    from multipose.models import codebook_rotations

    config = PoseHeadConfig(num_hypotheses=3, input_dim=16, width=32, output="population", anchor_views=12,
                            anchor_inplane=4, decoding="top")
    head = PoseHead(config).eval()
    anchors = codebook_rotations(12, 4)
    assert len(head.anchors) == len(anchors) == 48 and head.l3.out_features == 48 and head.l2.out_features == 32
    torch.testing.assert_close(head.anchors, anchors)
    assert "anchors" not in head.state_dict()  # rebuilt from the config, not stored
    out = head(torch.randn(5, 16))
    assert out.anchor_logits is not None and out.anchor_logits.shape == (5, 48)
    best = out.anchor_logits.topk(3, dim=1)
    torch.testing.assert_close(out.logits, best.values)
    torch.testing.assert_close(out.R, anchors[best.indices])
    torch.testing.assert_close(out.confidence, torch.softmax(best.values, dim=1))
    code = torch.randn(5, 16)
    logits_only = head(code, hypotheses=False)  # what training uses: the same logits, no hypotheses
    torch.testing.assert_close(logits_only.anchor_logits, head(code).anchor_logits)
    assert logits_only.R.shape == (5, 0, 3, 3) and logits_only.confidence.shape == (5, 0)
    assert PoseHead(PoseHeadConfig(num_hypotheses=3)).eval()(torch.randn(2, 128)).anchor_logits is None
    with pytest.raises(ValueError, match="unknown output"):
        PoseHeadConfig(num_hypotheses=3, output="classes")
    with pytest.raises(ValueError, match="convention"):
        PoseHeadConfig(num_hypotheses=3, output="population", convention="original")


def _bumps(anchors: torch.Tensor, centres: torch.Tensor, width_deg: float) -> torch.Tensor:
    """Logits ``(1, A)``: the highest of Gaussian bumps in the geodesic angle to each of ``centres (C, 3, 3)``."""
    angle = geodesic_angle_deg(anchors[None], centres[:, None])  # (C, A)
    return (-(angle / width_deg) ** 2).amax(dim=0, keepdim=True)


def test_anchor_neighbours_are_the_nearest_anchors_by_angle_itself_first():
    from multipose.models import codebook_rotations

    anchors = codebook_rotations(12, 8)
    nearest = anchor_neighbours(anchors, 5)
    angle = geodesic_angle_deg(anchors[:, None], anchors[None])  # (A, A)
    assert nearest.shape == (96, 5) and torch.equal(nearest[:, 0], torch.arange(96))
    got = angle.gather(1, nearest)
    torch.testing.assert_close(got, angle.sort(dim=1).values[:, :5], atol=1e-2, rtol=0)


def test_peaks_decoding_finds_separate_modes_and_refines_them_between_anchors():
    """The ``peaks`` decoding on logits made by hand (the 162 x 36 grid the recipe uses: anchors ~10 degrees
    apart in-plane): a bump centred on an anchor decodes to that anchor; a bump centred half-way between two
    anchors decodes nearer to its centre than any anchor is; two bumps 90 degrees apart give two hypotheses,
    one per bump (``top`` gives neighbours of the higher one); fewer peaks than K still give K finite ones."""
    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, width=32, output="population")).eval()
    anchors = head.anchors
    a, b = 1000, int(head.neighbours[1000, 1])  # an anchor and its nearest neighbour
    centre_on = anchors[a]
    out = head.decode_anchors(_bumps(anchors, centre_on[None], 8.0))
    assert float(geodesic_angle_deg(out.R[0, 0], centre_on)) < 1.0
    q = F.normalize(matrix_to_quaternion(anchors[a]) + matrix_to_quaternion(anchors[b]), dim=0)
    between = quaternion_to_matrix(q)
    out = head.decode_anchors(_bumps(anchors, between[None], 8.0))
    nearest_anchor = float(geodesic_angle_deg(anchors, between).min())
    assert nearest_anchor > 3.0  # half of the ~10 degrees between a and b
    assert float(geodesic_angle_deg(out.R[0, 0], between)) < 0.3 * nearest_anchor
    far = anchors[a] @ torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # 90 degrees from anchors[a]
    logits = _bumps(anchors, torch.stack([centre_on, far]), 8.0)
    logits[0, :] += 2.0 * (geodesic_angle_deg(anchors, centre_on) < 20)  # the first bump is the higher
    out = head.decode_anchors(logits)
    assert float(geodesic_angle_deg(out.R[0, 0], centre_on)) < 1.0
    assert float(geodesic_angle_deg(out.R[0, 1], far)) < 5.0
    assert out.confidence[0, 0] > out.confidence[0, 1]
    top = with_decoding(head, "top").decode_anchors(logits)
    assert float(geodesic_angle_deg(top.R[0, 1], centre_on)) < 20.0  # top: a neighbour of the same peak
    flat = head.decode_anchors(torch.zeros(3, len(anchors)))
    assert torch.isfinite(flat.R).all() and torch.isfinite(flat.confidence).all()
    assert with_decoding(head, "peaks") is head


def test_a_population_head_checkpoint_rebuilds_the_same_head(tmp_path):
    from multipose.models.head_checkpoint import load_head_checkpoint

    head = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, width=32, output="population", anchor_views=12,
                                   anchor_inplane=4)).eval()
    torch.save({"model": head.state_dict(), "head_args": head.config.to_dict()}, tmp_path / "model.pt")
    loaded, _ = load_head_checkpoint(tmp_path / "model.pt")
    assert loaded.config == head.config
    code = torch.randn(4, 16)
    torch.testing.assert_close(loaded(code).R, head(code).R)


def test_an_original_checkpoint_with_a_finetuned_encoder_layer_loads_and_computes_its_forward(tmp_path):
    """The original's FINETUNE_ENCODER checkpoints: ``Model``'s state dict with ``encoder.weight`` (128 x flat
    feature maps) and ``encoder.bias`` beside the head's layers; its forward applies that layer to the
    encoder's flat feature maps and feeds the code, not L2-normalised, to l01/l02."""
    from multipose.models.head_checkpoint import load_head_checkpoint
    from multipose.models.weights import ModelFileError

    K, flat = 4, 2048
    g = torch.Generator().manual_seed(2)
    state = {**original_state_dict(K), "encoder.weight": torch.randn(128, flat, generator=g) / flat**0.5,
             "encoder.bias": 0.1 * torch.randn(128, generator=g)}
    torch.save({"model": state, "optimizer": {}, "lr_reducer": None, "epoch": 3}, tmp_path / "model-epoch3.pt")
    head, _ = load_head_checkpoint(tmp_path / "model-epoch3.pt", K)
    assert head.config.encoder_features == flat and head.config.convention == "original"
    assert set(head.state_dict()) == set(state)  # loaded with strict=True: every name is the original's
    features = torch.randn(5, flat, generator=g)
    code = features @ state["encoder.weight"].T + state["encoder.bias"]
    assert not torch.allclose(code.norm(dim=1), torch.ones(5))
    with torch.no_grad():
        out = head(features)
    torch.testing.assert_close(out.confidence, original_forward(state, code, K)[:, :K], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"flat encoder features must be \(B, 2048\)"):
        head(code)
    state["encoder.weight"] = state["encoder.weight"][:64]
    torch.save({"model": state, "optimizer": {}, "lr_reducer": None, "epoch": 3}, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="encoder layer"):
        load_head_checkpoint(tmp_path / "bad.pt", K)


def test_head_input_is_the_normalised_code_or_the_flat_feature_maps_for_a_finetuned_layer():
    from multipose.models import Encoder, encoder_config
    from multipose.models.head import finetuned_encoder, head_input

    torch.manual_seed(0)
    encoder = Encoder(encoder_config("small", image_size=32, channels=(4, 8), latent_size=16)).eval()
    images = torch.rand(3, 3, 32, 32)
    plain = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, width=32)).eval()
    torch.testing.assert_close(head_input(encoder, plain, images), encoder.encode(images))
    assert finetuned_encoder(encoder, plain) is encoder
    tuned = PoseHead(PoseHeadConfig(num_hypotheses=2, input_dim=16, width=32,
                                    encoder_features=encoder.config.flat_features)).eval()
    assert tuned.encoder is not None
    tuned.encoder.load_state_dict(encoder.dense.state_dict())
    features = head_input(encoder, tuned, images)
    assert features.shape == (3, encoder.config.flat_features)
    torch.testing.assert_close(tuned.encoder(features), encoder(images))  # the raw code: no L2 normalisation
    with torch.no_grad():
        tuned.encoder.weight.mul_(2.0)
    copy = finetuned_encoder(encoder, tuned)
    torch.testing.assert_close(copy.dense.weight, tuned.encoder.weight)
    assert not torch.equal(encoder.dense.weight, copy.dense.weight)  # the frozen encoder is left as it was


def test_an_original_multi_object_classifier_checkpoint_loads_strictly_and_decodes_the_originals_way(tmp_path):
    """The original's final version, N objects with CLASSIFY_OBJECTS: l3 gives N * K * 7 outputs (N * K
    confidences, softmax within each object's K, then each object's K 6D vectors), the classifier c1..c3 on the
    code; every name loads with strict=True, N comes from c3, and each sample's block is the one its object
    id picks."""
    from multipose.models.head_checkpoint import load_head_checkpoint
    from multipose.models.weights import ModelFileError

    K, N = 3, 4
    state = original_state_dict(K, num_objects=N, classify=True, seed=5)
    torch.save({"model": state, "optimizer": {}, "lr_reducer": None, "epoch": 9}, tmp_path / "model-epoch9.pt")
    head, _ = load_head_checkpoint(tmp_path / "model-epoch9.pt", K)
    assert (head.config.num_objects, head.config.classify, head.config.convention) == (N, True, "original")
    assert set(head.state_dict()) == set(state)
    code = F.normalize(torch.randn(6, 128, generator=torch.Generator().manual_seed(2)), dim=1)
    with torch.no_grad():
        out = head(code)
    expected = original_multi_object_forward(state, code, K, N)
    classes, confs, poses = expected[:, :N], expected[:, N:N + N * K], expected[:, N + N * K:]
    torch.testing.assert_close(out.object_logits.softmax(1), classes, atol=1e-5, rtol=1e-5)
    ids = torch.tensor([0, 3, 1, 2, 3, 0])
    picked = out.select(ids)
    flip = np.diag([-1.0, -1.0, 1.0])
    for b, n in enumerate(ids.tolist()):
        torch.testing.assert_close(picked.confidence[b], confs[b, n * K:(n + 1) * K], atol=1e-5, rtol=1e-5)
        for k in range(K):
            v = poses[b, n * 6 * K + 6 * k: n * 6 * K + 6 * (k + 1)].double().numpy()
            np.testing.assert_allclose(picked.R[b, k].double().numpy(), flip @ ortho6d_columns(v).T, atol=1e-5)
    with pytest.raises(ModelFileError, match="classifier tells 4 objects, but the config names 5"):
        load_head_checkpoint(tmp_path / "model-epoch9.pt", K, num_objects=5)
    with pytest.raises(ModelFileError, match="N = 4 objects and K = 3, but the config asks for K = 2"):
        load_head_checkpoint(tmp_path / "model-epoch9.pt", 2)


def test_one_object_outputs_are_unchanged_and_several_objects_are_blocks_of_one_layer():
    """N = 1 keeps today's layout (same numbers from the same weights); N objects are the same trunk with an
    output layer N times as wide, ``select`` picking each sample's block."""
    torch.manual_seed(0)
    one = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16, width=32)).eval()
    torch.manual_seed(0)
    again = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16, width=32, num_objects=1)).eval()
    code = torch.randn(4, 16)
    assert one.state_dict().keys() == again.state_dict().keys()
    torch.testing.assert_close(one(code).R, again(code).R, rtol=0, atol=0)
    assert one(code).select(torch.zeros(4, dtype=torch.long)) is not None
    three = PoseHead(PoseHeadConfig(num_hypotheses=3, input_dim=16, width=32, num_objects=3)).eval()
    out = three(code)
    assert out.confidence.shape == (4, 3, 3) and out.R.shape == (4, 3, 3, 3, 3) and out.object_logits is None
    torch.testing.assert_close(out.confidence.sum(dim=2), torch.ones(4, 3))
    picked = out.select(torch.tensor([2, 0, 1, 2]))
    torch.testing.assert_close(picked.R[0], out.R[0, 2])
    assert picked.confidence.shape == (4, 3)
    with pytest.raises(ValueError, match="population head poses one object"):
        PoseHeadConfig(num_hypotheses=3, output="population", num_objects=2)
