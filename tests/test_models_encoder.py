"""The AAE encoder, its decoder, the bootstrapped L2 loss and the encoder weight files."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

from multipose.config import default_config, load_config_text
from multipose.experiment.encoders import load_encoder, requested_encoder_config
from multipose.experiment.run_folder import encoder_weights_path
from multipose.infra.errors import ConfigError, UserInputError
from multipose.models import (
    PRESETS,
    Autoencoder,
    Decoder,
    Encoder,
    EncoderConfig,
    ModelFileError,
    aae_weights_dict,
    bootstrapped_l2_loss,
    encoder_config,
    l2_normalize,
    load_aae_npy,
    load_encoder_pt,
    minmax_normalize,
    nhwc_flatten,
    read_aae_npy,
    same_padding,
    save_aae_npy,
    save_encoder,
)

TINY = EncoderConfig(image_size=32, channels=(4, 6, 8, 8), latent_size=16, kernel_size=5)


def randomized(config: EncoderConfig, seed: int = 0) -> Encoder:
    """An encoder in eval mode whose batch-norm parameters and statistics are not the identity."""
    torch.manual_seed(seed)
    encoder = Encoder(config)
    with torch.no_grad():
        for norm in encoder.norms:
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)
                norm.running_mean.uniform_(-0.2, 0.2)
                norm.running_var.uniform_(0.5, 2.0)
    return encoder.eval()


def one_line_error(exc_type: type[Exception], fn, *args, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


# --------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("arch", ["aae", "small"])
def test_preset_output_shapes_and_unit_codes(arch, device):
    config = PRESETS[arch]
    encoder = Encoder(config).to(device).eval()
    images = torch.rand(2, 3, config.image_size, config.image_size, device=device)
    with torch.no_grad():
        raw, unit = encoder(images), encoder.encode(images)
        features = encoder.feature_maps(images)
    assert raw.shape == unit.shape == (2, config.latent_size) == (2, 128)
    assert features.shape == (2, config.channels[-1], config.image_size // 16, config.image_size // 16)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(2, device=device))
    torch.testing.assert_close(unit, raw / raw.norm(dim=1, keepdim=True))


def test_presets_are_the_documented_architectures():
    aae, small = PRESETS["aae"], PRESETS["small"]
    assert (aae.image_size, aae.channels, aae.latent_size, aae.kernel_size, aae.batch_norm) == (
        128, (128, 256, 512, 512), 128, 5, True)
    assert (small.image_size, small.channels, small.latent_size, small.kernel_size) == (64, (32, 64, 128, 128), 128, 5)
    assert aae.flat_features == 8 * 8 * 512 == Encoder(aae).dense.in_features
    assert encoder_config("small", latent_size=64, channels=None).latent_size == 64
    with pytest.raises(ValueError, match="unknown encoder architecture 'big'; known: aae, small"):
        encoder_config("big")


def test_aae_spatial_sizes_halve_with_same_padding():
    encoder = Encoder(PRESETS["aae"]).eval()
    sizes = []
    for conv in encoder.convs:
        conv.register_forward_hook(lambda m, i, o: sizes.append((i[0].shape[-1], o.shape[-1])))
    with torch.no_grad():
        encoder(torch.rand(1, 3, 128, 128))
    # each conv sees its input padded by 1 + 2 pixels
    assert sizes == [(131, 64), (67, 32), (35, 16), (19, 8)]


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (128, 5, 2, (1, 2)), (8, 5, 2, (1, 2)), (127, 5, 2, (2, 2)), (64, 5, 1, (2, 2)),
    (8, 4, 1, (1, 2)), (8, 3, 2, (0, 1)), (8, 1, 2, (0, 0)), (3, 5, 2, (2, 2)),
])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_first_conv_equals_explicitly_padded_conv2d():
    encoder = Encoder(TINY).eval()
    captured = []
    encoder.convs[0].register_forward_hook(lambda m, i, o: captured.append(o))
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        encoder(images)
        conv = encoder.convs[0]
        expected = F.conv2d(F.pad(minmax_normalize(images), (1, 2, 1, 2)), conv.weight, conv.bias, stride=2)
        symmetric = F.conv2d(minmax_normalize(images), conv.weight, conv.bias, stride=2, padding=2)
    torch.testing.assert_close(captured[0], expected)
    assert symmetric.shape == expected.shape and not torch.allclose(symmetric, expected)


def test_nhwc_flatten_order():
    x = torch.randn(2, 5, 3, 4)  # (B, C, H, W)
    flat = nhwc_flatten(x)
    C, W = 5, 4
    for c, h, w in [(0, 0, 0), (4, 2, 3), (1, 0, 2), (3, 1, 0)]:
        assert torch.equal(flat[:, (h * W + w) * C + c], x[:, c, h, w])
    torch.testing.assert_close(flat, x.permute(0, 2, 3, 1).reshape(2, -1))


def test_dense_layer_reads_nhwc_features():
    """A dense kernel that picks feature (c, h, w) at TensorFlow's NHWC index returns that feature."""
    encoder = randomized(TINY)
    C, S = TINY.channels[-1], TINY.feature_size
    picks = [(0, 0, 0), (7, 1, 1), (3, 0, 1), (5, 1, 0)]
    with torch.no_grad():
        encoder.dense.weight.zero_()
        encoder.dense.bias.zero_()
        for j, (c, h, w) in enumerate(picks):
            encoder.dense.weight[j, (h * S + w) * C + c] = 1.0
        images = torch.rand(3, 3, 32, 32)
        code, features = encoder(images), encoder.feature_maps(images)
    for j, (c, h, w) in enumerate(picks):
        torch.testing.assert_close(code[:, j], features[:, c, h, w])


def test_minmax_normalisation_and_flat_images():
    images = torch.rand(3, 3, 8, 8) * 5 - 2
    images[1] = 0.7  # flat
    out = minmax_normalize(images)
    assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros(3, 8, 8))
    for b in (0, 2):
        assert out[b].min() == 0 and torch.isclose(out[b].max(), torch.tensor(1.0))
    encoder = Encoder(TINY).eval()
    with torch.no_grad():
        code = encoder.encode(torch.full((2, 3, 32, 32), 0.3))
    assert torch.isfinite(code).all()
    assert torch.equal(l2_normalize(torch.zeros(2, 4)), torch.zeros(2, 4))


def test_encoder_rejects_wrong_input_size():
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, 32, 32\)"):
        Encoder(TINY)(torch.rand(1, 3, 64, 64))


def test_encoder_config_validation_and_round_trip():
    assert EncoderConfig.from_dict(TINY.to_dict()) == TINY
    assert TINY.to_dict()["channels"] == [4, 6, 8, 8]
    with pytest.raises(ValueError, match="multiple of 2\\*\\*4 = 16"):
        EncoderConfig(image_size=40, channels=(4, 4, 4, 4))
    with pytest.raises(ValueError, match="channels must be a non-empty list"):
        EncoderConfig(channels=())
    with pytest.raises(ValueError, match="latent_size must be an int >= 1"):
        EncoderConfig(latent_size=0)
    with pytest.raises(ValueError, match="unknown encoder argument"):
        EncoderConfig.from_dict({**TINY.to_dict(), "depth": 3})


def test_without_batch_norm_has_no_norm_parameters():
    config = EncoderConfig(image_size=32, channels=(4, 4, 4, 4), latent_size=8, batch_norm=False)
    assert not any(k.startswith("norms.") for k in Encoder(config).state_dict())
    assert not any("norm" in k for k in Decoder(config).state_dict())


# --------------------------------------------------------------------------- decoder and autoencoder


@pytest.mark.parametrize("config", [PRESETS["small"], TINY], ids=["small", "tiny"])
def test_decoder_output_shape_and_range(config, device):
    decoder = Decoder(config).to(device).eval()
    codes = torch.randn(3, config.latent_size, device=device) * 10
    with torch.no_grad():
        out = decoder(codes)
    assert out.shape == (3, 3, config.image_size, config.image_size)
    assert out.min() >= 0 and out.max() <= 1
    assert [c.out_channels for c in decoder.convs] == [*reversed(config.channels[:-1]), 3]


def test_decoder_starts_from_an_nhwc_reshape():
    """The dense output is read as (H, W, C) with C fastest, as TensorFlow's reshape."""
    config = EncoderConfig(image_size=32, channels=(2, 2, 2, 3), latent_size=12, batch_norm=False)
    decoder = Decoder(config).eval()
    captured = []
    decoder.convs[0].register_forward_hook(lambda m, i, o: captured.append(i[0]))
    codes = torch.randn(2, 12)
    with torch.no_grad():
        decoder(codes)
        dense = F.relu(decoder.dense(codes))  # (B, 2*2*3)
    upsampled = captured[0][:, :, 2:-2, 2:-2]  # undo the SAME padding of the 4x4 map
    for c, h, w in [(0, 0, 0), (2, 1, 0), (1, 0, 1)]:
        torch.testing.assert_close(upsampled[:, c, 2 * h, 2 * w], dense[:, (h * 2 + w) * 3 + c])


def test_autoencoder_forward_and_mismatched_decoder():
    ae = Autoencoder.from_config(TINY)
    out = ae(torch.rand(2, 3, 32, 32))
    assert out.reconstruction.shape == (2, 3, 32, 32) and out.code.shape == (2, 16)
    assert ae.config == TINY and isinstance(ae.decoder, Decoder)
    other = EncoderConfig(image_size=32, channels=(4, 6, 8, 8), latent_size=8)
    with pytest.raises(ValueError, match="does not mirror"):
        Autoencoder(Encoder(TINY), Decoder(other))


def test_bootstrapped_l2_is_the_mean_of_the_worst_values():
    target = torch.zeros(2, 1, 2, 4)
    recon = torch.tensor([[[[0.1, 0.9, 0.2, 0.0], [0.5, 0.3, 0.4, 0.8]]],
                          [[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.6]]]])
    # worst 8 // 4 = 2 squared errors per image: (0.81, 0.64) and (1.0, 0.36)
    expected = torch.tensor((0.81 + 0.64 + 1.0 + 0.36) / 4)
    torch.testing.assert_close(bootstrapped_l2_loss(recon, target, 4), expected)
    torch.testing.assert_close(bootstrapped_l2_loss(recon, target, 1), F.mse_loss(recon, target))
    # against sorting, on random data
    a, b = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    errs = (a - b).square().flatten(1).sort(dim=1, descending=True).values[:, : 192 // 3]
    torch.testing.assert_close(bootstrapped_l2_loss(a, b, 3), errs.mean())


def test_bootstrapped_l2_gradient_only_reaches_the_worst_values():
    recon = torch.tensor([[0.1, 0.9, 0.2, 0.0]], requires_grad=True)
    bootstrapped_l2_loss(recon, torch.zeros(1, 4), 4).backward()
    assert recon.grad.nonzero().flatten().tolist() == [0, 1]


def test_bootstrapped_l2_rejects_bad_arguments():
    with pytest.raises(ValueError, match="same shape"):
        bootstrapped_l2_loss(torch.zeros(1, 4), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="int >= 1"):
        bootstrapped_l2_loss(torch.zeros(1, 4), torch.zeros(1, 4), 0)


# --------------------------------------------------------------------------- original .npy


def tf_reference_codes(weights: dict, scope: str, images: np.ndarray, n_layers: int) -> np.ndarray:
    """The AAE encoder computed in NumPy the TensorFlow way: NHWC, HWIO kernels, SAME padding,
    ReLU then batch norm (eps 1e-3), NHWC flatten, dense ``x @ W[in, out] + b``."""
    x = images.transpose(0, 2, 3, 1).astype(np.float64)
    low = x.min(axis=(1, 2, 3), keepdims=True)
    x = (x - low) / np.maximum(x.max(axis=(1, 2, 3), keepdims=True) - low, 1e-6)
    for i in range(n_layers):
        conv = weights[f"{scope}conv2d{'' if i == 0 else f'_{i}'}/Conv2D"]
        bn = weights[f"{scope}batch_normalization{'' if i == 0 else f'_{i}'}/FusedBatchNorm"]
        kernel = conv["weights"]
        k, size = kernel.shape[0], x.shape[1]
        out = -(-size // 2)
        total = max((out - 1) * 2 + k - size, 0)  # TensorFlow's SAME rule, extra pixel after
        x = np.pad(x, ((0, 0), (total // 2, total - total // 2), (total // 2, total - total // 2), (0, 0)))
        patches = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::2, ::2]  # (B, out, out, C, k, k)
        x = np.maximum(np.einsum("bhwcij,ijco->bhwo", patches, kernel) + conv["bias"], 0.0)
        x = (x - bn["mean"]) / np.sqrt(bn["var"] + 1e-3) * bn["scale"] + bn["bias"]
    dense = weights[f"{scope}dense/MatMul"]
    return x.reshape(len(x), -1) @ dense["weights"] + dense["bias"]


def test_tensorflow_layout_weights_match_an_independent_numpy_encoder(tmp_path):
    """Random TF-layout weights built here (not by our writer) give the codes of a NumPy reference."""
    rng = np.random.default_rng(0)
    scope, weights, cin = "obj1_18_v2/", {}, 3
    for i, cout in enumerate(TINY.channels):
        suffix = "" if i == 0 else f"_{i}"
        weights[f"{scope}conv2d{suffix}/Conv2D"] = {
            "weights": rng.normal(0, 0.3, (5, 5, cin, cout)).astype(np.float32),
            "bias": rng.normal(0, 0.1, cout).astype(np.float32)}
        weights[f"{scope}batch_normalization{suffix}/FusedBatchNorm"] = {
            "scale": rng.uniform(0.5, 1.5, cout).astype(np.float32),
            "bias": rng.normal(0, 0.1, cout).astype(np.float32),
            "mean": rng.normal(0, 0.2, cout).astype(np.float32), "var": rng.uniform(0.5, 2, cout).astype(np.float32)}
        cin = cout
    weights[f"{scope}dense/MatMul"] = {"weights": rng.normal(0, 0.1, (TINY.flat_features, 16)).astype(np.float32),
                                       "bias": rng.normal(0, 0.1, 16).astype(np.float32)}
    path = tmp_path / "encoder.npy"
    np.save(path, weights, allow_pickle=True)
    images = rng.uniform(0, 1, (3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        codes = load_aae_npy(path, TINY)(torch.from_numpy(images)).double().numpy()
    np.testing.assert_allclose(codes, tf_reference_codes(weights, scope, images, 4), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["pytorch", "tensorflow"])
@pytest.mark.parametrize("scope", ["obj1_18_v2", ""])
def test_npy_round_trip_gives_identical_codes(tmp_path, layout, scope):
    encoder = randomized(PRESETS["small"])
    path = save_aae_npy(encoder, tmp_path / "w.npy", scope=scope, layout=layout)
    loaded = load_aae_npy(path, PRESETS["small"])
    assert not loaded.training
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(images), encoder(images))
    weights = read_aae_npy(path)
    prefix = f"{scope}/" if scope else ""
    first = weights[f"{prefix}conv2d/Conv2D"]["weights"].shape
    assert first == ((32, 3, 5, 5) if layout == "pytorch" else (5, 5, 3, 32))
    assert set(weights[f"{prefix}batch_normalization_3/FusedBatchNorm"]) == {"scale", "bias", "mean", "var"}
    assert weights[f"{prefix}dense/MatMul"]["weights"].shape == ((128, 2048) if layout == "pytorch" else (2048, 128))


def test_npy_reader_accepts_bytes_keys_v3_batch_norm_and_a_deeper_decoder_scope(tmp_path):
    encoder = randomized(TINY)
    weights = aae_weights_dict(encoder, scope="obj")
    weights = {k.replace("/FusedBatchNorm", "/FusedBatchNormV3"): v for k, v in weights.items()}
    # a full AAE export also has decoder layers one scope deeper; they must not be picked
    weights["obj/decoder_0/conv2d/Conv2D"] = {"weights": np.zeros((1, 1, 1, 1), np.float32)}
    weights = {k.encode(): {kk.encode(): vv for kk, vv in v.items()} for k, v in weights.items()}
    path = tmp_path / "w.npy"
    np.save(path, weights, allow_pickle=True)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_aae_npy(path, TINY)(images), encoder(images))


def _saved(tmp_path, weights: dict) -> str:
    path = tmp_path / "w.npy"
    np.save(path, weights, allow_pickle=True)
    return str(path)


def test_npy_missing_tensor_is_named(tmp_path):
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    del weights["obj/conv2d_2/Conv2D"]["bias"]
    path = _saved(tmp_path, weights)
    msg = one_line_error(ModelFileError, load_aae_npy, path, TINY)
    assert msg == f"{path}: missing tensor 'obj/conv2d_2/Conv2D' 'bias' (convolution 3 of 4)"
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    del weights["obj/batch_normalization_1/FusedBatchNorm"]
    msg = one_line_error(ModelFileError, load_aae_npy, _saved(tmp_path, weights), TINY)
    assert "missing tensor 'obj/batch_normalization_1/FusedBatchNorm' 'scale' (batch norm 2 of 4)" in msg
    assert "BATCH_NORMALIZATION: false" in msg


def test_npy_misshaped_tensor_is_named_with_both_layouts(tmp_path):
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    weights["obj/conv2d/Conv2D"]["weights"] = np.zeros((4, 3, 3, 3), np.float32)
    path = _saved(tmp_path, weights)
    msg = one_line_error(ModelFileError, load_aae_npy, path, TINY)
    assert msg == (f"{path}: tensor 'obj/conv2d/Conv2D' 'weights' has shape [4, 3, 3, 3], expected "
                   "[4, 3, 5, 5] (PyTorch layout) or [5, 5, 3, 4] (TensorFlow layout) for an encoder with "
                   "image 32, channels 4-6-8-8, latent 16, kernel 5, batch norm ([Encoder])")
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    weights["obj/dense/MatMul"]["weights"] = np.zeros((16, 100), np.float32)
    msg = one_line_error(ModelFileError, load_aae_npy, _saved(tmp_path, weights), TINY)
    assert "tensor 'obj/dense/MatMul' 'weights' has shape [16, 100], expected [16, 32] (PyTorch layout, as " in msg
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    weights["obj/conv2d_3/Conv2D"]["bias"] = np.zeros(7, np.float32)
    msg = one_line_error(ModelFileError, load_aae_npy, _saved(tmp_path, weights), TINY)
    assert "tensor 'obj/conv2d_3/Conv2D' 'bias' has shape [7], expected [8] for an encoder" in msg
    # the original's weights do not fit the small preset
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    msg = one_line_error(ModelFileError, load_aae_npy, _saved(tmp_path, weights), PRESETS["small"])
    assert "tensor 'obj/conv2d/Conv2D' 'weights' has shape [4, 3, 5, 5], expected [32, 3, 5, 5]" in msg


def test_npy_mixed_layouts_and_bad_values_are_named(tmp_path):
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    weights["obj/conv2d_1/Conv2D"]["weights"] = weights["obj/conv2d_1/Conv2D"]["weights"].transpose(2, 3, 1, 0)
    msg = one_line_error(ModelFileError, load_aae_npy, _saved(tmp_path, weights), TINY)
    assert "'obj/conv2d_1/Conv2D' 'weights' has shape [5, 5, 4, 6], expected [6, 4, 5, 5] (PyTorch layout, as" in msg
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    weights["obj/batch_normalization/FusedBatchNorm"]["var"][0] = np.nan
    msg = one_line_error(ModelFileError, load_aae_npy, _saved(tmp_path, weights), TINY)
    assert "'obj/batch_normalization/FusedBatchNorm' 'var' holds NaN or infinite values" in msg


def test_npy_batch_norm_tensors_without_batch_norm_is_an_error(tmp_path):
    weights = aae_weights_dict(randomized(TINY), scope="obj")
    no_bn = EncoderConfig(image_size=32, channels=TINY.channels, latent_size=16, batch_norm=False)
    msg = one_line_error(ModelFileError, load_aae_npy, _saved(tmp_path, weights), no_bn)
    assert "has batch norm tensors" in msg and "BATCH_NORMALIZATION: true" in msg
    # and a file without batch norm loads into an encoder without it
    encoder = Encoder(no_bn).eval()
    path = save_aae_npy(encoder, tmp_path / "nobn.npy")
    assert not any("batch_normalization" in k for k in read_aae_npy(path))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_aae_npy(path, no_bn)(x), encoder(x))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_npy_unreadable_files(tmp_path):
    missing = tmp_path / "nope.npy"
    assert one_line_error(ModelFileError, read_aae_npy, missing) == f"{missing}: original AAE weights (.npy) not found"
    assert "is a folder" in one_line_error(ModelFileError, read_aae_npy, tmp_path)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"this is not numpy")
    assert "not a .npy file" in one_line_error(ModelFileError, read_aae_npy, garbage)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((2, 3), np.float32))
    assert "holds a plain float32 array of shape (2, 3)" in one_line_error(ModelFileError, read_aae_npy, plain)
    good = save_aae_npy(randomized(TINY), tmp_path / "good.npy")
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(good.read_bytes()[:2000])
    assert "truncated or corrupt" in one_line_error(ModelFileError, read_aae_npy, truncated)
    listed = tmp_path / "list.npy"
    np.save(listed, np.array([1, "a"], dtype=object), allow_pickle=True)
    assert "expected a dictionary" in one_line_error(ModelFileError, read_aae_npy, listed)
    no_conv = tmp_path / "noconv.npy"
    np.save(no_conv, {"x/dense/MatMul": {}}, allow_pickle=True)
    assert "missing '<scope>/conv2d/Conv2D'" in one_line_error(ModelFileError, load_aae_npy, no_conv, TINY)


def test_npy_reader_runs_no_code_from_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array({"a/conv2d/Conv2D": _Evil()}, dtype=object), allow_pickle=True)
    msg = one_line_error(ModelFileError, read_aae_npy, evil)
    assert "refused to unpickle: it pickles posix.system" in msg or "pickles os.system" in msg
    assert not (tmp_path / "pwned.txt").exists()
    assert isinstance(pickle.loads(pickle.dumps(1)), int)  # pickle itself untouched


# --------------------------------------------------------------------------- our .pt


def test_pt_round_trip_rebuilds_from_stored_arguments(tmp_path):
    config = EncoderConfig(image_size=32, channels=(4, 4, 8, 8), latent_size=12, batch_norm=False)
    torch.manual_seed(1)
    encoder = Encoder(config).eval()
    path = save_encoder(encoder, tmp_path / "run" / "encoder.pt", metadata={"iterations": 3})
    assert [p.name for p in path.parent.iterdir()] == ["encoder.pt"]  # atomic: no temporary left
    loaded = load_encoder_pt(path)
    assert loaded.config == config and not loaded.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))
    payload = torch.load(path, weights_only=True)
    assert payload["metadata"] == {"iterations": 3} and payload["encoder_config"]["latent_size"] == 12


def test_pt_errors_name_file_and_tensor(tmp_path):
    encoder = randomized(TINY)
    good = save_encoder(encoder, tmp_path / "good.pt")
    payload = torch.load(good, weights_only=True)

    def write(name: str, obj) -> str:
        path = tmp_path / name
        torch.save(obj, path)
        return str(path)

    msg = one_line_error(ModelFileError, load_encoder_pt, write("other.pt", {"model": {}}))
    assert "not a multipose encoder file" in msg
    bad = {**payload, "state_dict": {**payload["state_dict"], "dense.weight": torch.zeros(16, 3)}}
    path = write("shape.pt", bad)
    assert one_line_error(ModelFileError, load_encoder_pt, path).startswith(
        f"{path}: tensor 'dense.weight' has shape [16, 3], expected [16, 32] for an encoder with image 32")
    state = dict(payload["state_dict"])
    del state["norms.2.running_var"]
    assert "missing tensor 'norms.2.running_var'" in one_line_error(
        ModelFileError, load_encoder_pt, write("missing.pt", {**payload, "state_dict": state}))
    extra = {**payload, "state_dict": {**payload["state_dict"], "head.weight": torch.zeros(1)}}
    assert "unexpected tensor 'head.weight'" in one_line_error(ModelFileError, load_encoder_pt, write("x.pt", extra))
    cfg_bad = {**payload, "encoder_config": {**payload["encoder_config"], "image_size": 33}}
    assert "invalid 'encoder_config'" in one_line_error(ModelFileError, load_encoder_pt, write("c.pt", cfg_bad))
    garbage = tmp_path / "garbage.pt"
    for junk in (b"\x00\x01 not a zip", b"broken", b""):  # b"broken": the unpickler raises IndexError
        garbage.write_bytes(junk)
        assert "not a readable PyTorch file" in one_line_error(ModelFileError, load_encoder_pt, garbage)
    msg = one_line_error(ModelFileError, load_encoder_pt, good, expected=PRESETS["small"])
    assert "holds an encoder with image 32" in msg and "asks for image 64" in msg


# --------------------------------------------------------------------------- from the config


def _cfg(tmp_path, *lines: str):
    text = f"[Training]\nOUTPUT_PATH: {tmp_path / 'run'}\n" + "\n".join(lines) + "\n"
    return load_config_text(text, "exp.cfg")


def test_encoder_section_defaults_and_parsing(tmp_path):
    enc = default_config().Encoder
    assert dict(enc) == {"ARCH": "auto", "CHANNELS": None, "LATENT_SIZE": None, "BATCH_NORMALIZATION": None,
                         "BOOTSTRAP_RATIO": 4, "NUM_ITER": 1500, "BATCH_SIZE": 64, "LEARNING_RATE": 2e-4,
                         "SAVE_INTERVAL": 100, "LOG_INTERVAL": 10}
    cfg = _cfg(tmp_path, "[Encoder]", "ARCH: small", "CHANNELS: [8, 8, 16, 16]", "LATENT_SIZE: 32")
    assert cfg.Encoder.CHANNELS == (8, 8, 16, 16)
    assert requested_encoder_config(cfg) == EncoderConfig(64, (8, 8, 16, 16), 32, 5)
    for value in ("[8, 8, 16]", "[8, 8, 16, 0]", "[8, 8, 16, 1.5]", "8"):
        with pytest.raises(ConfigError, match=r"\[Encoder\] CHANNELS = .*expected a JSON list of 4 ints >= 1"):
            _cfg(tmp_path, "[Encoder]", f"CHANNELS: {value}")
    with pytest.raises(ConfigError, match="expected one of auto, aae, small"):
        _cfg(tmp_path, "[Encoder]", "ARCH: resnet")


def test_arch_auto_follows_the_weights(tmp_path):
    assert requested_encoder_config(_cfg(tmp_path)) == PRESETS["small"]  # ENCODER_WEIGHTS auto: pretrain small
    npy = _cfg(tmp_path, "[Dataset]", "ENCODER_WEIGHTS: ./data/encoder.npy")
    assert requested_encoder_config(npy) == PRESETS["aae"]
    assert requested_encoder_config(_cfg(tmp_path, "[Dataset]", "ENCODER_WEIGHTS: x.pt"), stored=TINY) == TINY
    assert encoder_weights_path(_cfg(tmp_path)) == tmp_path / "run" / "encoder.pt"


def test_load_encoder_auto_missing_says_to_pretrain(tmp_path):
    cfg = _cfg(tmp_path)
    msg = one_line_error(ModelFileError, load_encoder, cfg)
    assert msg.startswith(f"{tmp_path / 'run' / 'encoder.pt'}: no pretrained encoder yet") and "train_encoder.py" in msg
    assert issubclass(ModelFileError, UserInputError)


def test_load_encoder_from_config(tmp_path):
    encoder = randomized(TINY)
    save_encoder(encoder, tmp_path / "run" / "encoder.pt")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_encoder(_cfg(tmp_path))(x), encoder(x))  # auto: the file's architecture
    msg = one_line_error(ModelFileError, load_encoder, _cfg(tmp_path, "[Encoder]", "ARCH: small"))
    assert "holds an encoder with image 32, channels 4-6-8-8" in msg and "ARCH: auto" in msg
    # an original .npy with ARCH auto is the aae architecture (here with narrow channels to stay fast)
    narrow = encoder_config("aae", channels=(4, 4, 8, 8), latent_size=16)
    aae = randomized(narrow)
    save_aae_npy(aae, tmp_path / "aae.npy", scope="obj1_18_v2")
    cfg = _cfg(tmp_path, "[Dataset]", f"ENCODER_WEIGHTS: {tmp_path / 'aae.npy'}",
               "[Encoder]", "CHANNELS: [4, 4, 8, 8]", "LATENT_SIZE: 16")
    loaded = load_encoder(cfg)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert loaded.config == narrow and torch.equal(loaded(x), aae(x))
