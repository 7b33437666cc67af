"""model_zoo.explain against an independent, plainly written Grad-CAM / Grad-CAM++ reference."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model_zoo.explain import COLORMAPS, AttentionMap, GradCAM, overlay

SIZE = 48


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    # On a CPU shared with other jobs, OpenMP's spinning threads make small convolutions up to
    # 30x slower than one thread; restore the setting for the rest of the session.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class MultiTaskOutput(NamedTuple):
    logits: dict[str, Tensor]
    features: Tensor


class TinyMultiTask(nn.Module):
    """Two heads on a small CNN. The layers after the target block are non-linear, so the
    gradient varies over space (with plain GAP + linear, Grad-CAM degenerates to CAM)."""

    def __init__(self, *, inplace_after: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        )  # fmt: skip
        # Ends with BN (like DenseNet's norm5): the ReLU after it is in forward().
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.post = nn.Sequential(nn.Conv2d(16, 24, 1), nn.ReLU())
        self.heads = nn.ModuleDict(
            {
                "dr": nn.Sequential(nn.Dropout(0.5), nn.Linear(24, 5)),
                "amd": nn.Sequential(nn.Linear(24, 12), nn.Tanh(), nn.Linear(12, 4)),
            }
        )
        self.inplace_after = inplace_after

    def forward(self, x: Tensor) -> MultiTaskOutput:
        a = F.relu(self.block(self.stem(x)), inplace=self.inplace_after)
        features = self.post(a).mean(dim=(2, 3))
        return MultiTaskOutput({k: h(features) for k, h in self.heads.items()}, features)

    def cam_target_layer(self) -> nn.Module:
        return self.block


def _model(seed: int, **kwargs: bool) -> TinyMultiTask:
    torch.manual_seed(seed)
    model = TinyMultiTask(**kwargs)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode is not the identity
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _images(seed: int, batch: int = 1, size: int = SIZE) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- reference
def _reference(
    model: nn.Module,
    layer_name: str,
    x: Tensor,
    head: str,
    cls: int,
    out_size: tuple[int, int],
    plusplus: bool = False,
) -> np.ndarray:
    """Textbook Grad-CAM on ONE image: full .backward(), forward hook + retain_grad.

    ``model`` must be a copy: .backward() fills its parameter grads.
    """
    model.zero_grad(set_to_none=True)
    layer = model.get_submodule(layer_name)
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
        output.retain_grad()
        store["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            out = model(x)
            out.logits[head][0, cls].backward()
    finally:
        handle.remove()
    a = store["a"].detach()[0].double().numpy()  # [K, h, w]
    grad = store["a"].grad
    assert grad is not None
    g = grad[0].double().numpy()
    if plusplus:
        # Chattopadhay et al. 2018, eq. 19 with S = exp(y): alpha = g^2 / (2g^2 + sum(A) g^3),
        # zero denominators replaced by 1 (the authors' code); w_k = sum alpha * relu(g).
        weights = np.zeros(a.shape[0])
        for k in range(a.shape[0]):
            denom = 2 * g[k] ** 2 + a[k].sum() * g[k] ** 3
            denom[denom == 0] = 1.0
            weights[k] = np.sum(g[k] ** 2 / denom * np.maximum(g[k], 0))
    else:
        weights = g.mean(axis=(1, 2))
    cam = np.maximum(np.tensordot(weights, a, axes=1), 0.0)
    up = F.interpolate(
        torch.from_numpy(cam)[None, None], size=out_size, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    span = up.max() - up.min()
    return (up - up.min()) / span if span > 0 else np.zeros_like(up)


def _assert_agrees(ours: np.ndarray, ref: np.ndarray) -> bool:
    """Check agreement; return False when both maps are flat (no positive evidence at all)."""
    assert ours.shape == ref.shape
    if ref.max() == 0:
        assert np.all(ours == 0)
        return False
    corr = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
    assert corr >= 0.99, corr
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    return True


# ----------------------------------------------------------------------------- agreement
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("head", "num_classes"), [("dr", 5), ("amd", 4)])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_agrees_with_reference(seed: int, head: str, num_classes: int, method: str) -> None:
    model = _model(seed)
    reference_model = copy.deepcopy(model)
    x = _images(seed + 10, batch=3)
    with torch.no_grad():
        logits = model(x).logits[head]
    informative = 0
    with GradCAM(model, method=method) as cam:  # type: ignore[arg-type]
        for cls in [None, *range(num_classes)]:
            maps = cam(x, head=head, target_class=cls, output_size=(40, 56))
            assert len(maps) == 3
            for i, m in enumerate(maps):
                expected_cls = int(logits[i].argmax()) if cls is None else cls
                assert (m.head, m.target_class, m.method) == (head, expected_cls, method)
                assert m.score == pytest.approx(float(logits[i, expected_cls]), abs=1e-5)
                ref = _reference(
                    reference_model,
                    "block",
                    x[i : i + 1],
                    head,
                    expected_cls,
                    (40, 56),
                    plusplus=method == "gradcam++",
                )
                informative += _assert_agrees(m.cam, ref)
    # Flat maps (no positive evidence) agree trivially; most must carry a real map.
    assert informative >= 2 * num_classes, informative


def test_agrees_with_reference_on_registry_student() -> None:
    from model_zoo.architectures.student import SallStudent
    from model_zoo.registry import get_model

    torch.manual_seed(0)
    model = get_model("sall_student", backbone="resnet18").eval()
    assert isinstance(model, SallStudent)
    reference_model = copy.deepcopy(model)
    x = _images(3, batch=1, size=96)
    layer = model.cam_target_layer()
    layer_name = next(name for name, mod in model.named_modules() if mod is layer)
    informative = 0
    with GradCAM(model) as cam:
        for head, cls in (("dr", 0), ("dr", 3), ("amd", 0), ("amd", 3)):
            [m] = cam(x, head=head, target_class=cls)
            ref = _reference(reference_model, layer_name, x, head, cls, (96, 96))
            informative += _assert_agrees(m.cam, ref)
    assert informative >= 3
    assert all(p.grad is None for p in model.parameters())


def test_in_place_op_after_target_layer_does_not_change_the_map() -> None:
    plain, inplace = _model(4), _model(4, inplace_after=True)
    x = _images(5)
    with GradCAM(plain) as a, GradCAM(inplace) as b:
        ref, got = a(x, head="amd", target_class=1), b(x, head="amd", target_class=1)
    np.testing.assert_allclose(got[0].cam, ref[0].cam, atol=1e-6)
    assert got[0].score == pytest.approx(ref[0].score)


def test_batch_maps_equal_single_image_maps() -> None:
    model = _model(6)
    x = _images(7, batch=3)
    with GradCAM(model, method="gradcam++") as cam:
        batch = cam(x, head="dr")
        single = [cam(x[i : i + 1], head="dr")[0] for i in range(3)]
    for b, s in zip(batch, single, strict=True):
        assert b.target_class == s.target_class
        np.testing.assert_allclose(b.cam, s.cam, atol=1e-5)


# ----------------------------------------------------------------------------- gradients, modes
def test_no_parameter_gradient_is_populated() -> None:
    model = _model(0)
    flags = [p.requires_grad for p in model.parameters()]
    with GradCAM(model) as cam:
        cam(_images(0, batch=2), head="dr")
        cam(_images(1), head="amd", target_class=3)
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_works_inside_no_grad_and_inference_mode(context: str) -> None:
    model = _model(1)
    with GradCAM(model) as cam:
        expected = cam(_images(2), head="amd", target_class=0)[0].cam
        outer = torch.no_grad() if context == "no_grad" else torch.inference_mode()
        with outer:
            x = _images(2)  # an inference tensor under inference_mode
            got = cam(x, head="amd", target_class=0)[0].cam
            # The caller's mode is restored afterwards.
            assert not torch.is_grad_enabled()
            assert torch.is_inference_mode_enabled() == (context == "inference_mode")
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("training", [False, True])
def test_never_changes_train_eval_mode(training: bool) -> None:
    model = _model(2)
    model.train(training)
    model.block.eval()  # a mixed state must survive as well
    before = [m.training for m in model.modules()]
    with GradCAM(model) as cam:
        if training:
            with pytest.warns(RuntimeWarning, match="eval"):
                cam(_images(0, batch=2), head="dr")
        else:
            cam(_images(0), head="dr")
    assert [m.training for m in model.modules()] == before


# ----------------------------------------------------------------------------- hooks
def test_hooks_released_after_with_block_and_after_exceptions() -> None:
    model = _model(0)
    layer = model.block
    assert len(layer._forward_hooks) == 0
    with GradCAM(model) as cam:
        assert len(layer._forward_hooks) == 1
        # Plain use of the model inside the block is unaffected by the idle hook.
        with torch.no_grad():
            plain = model(_images(0)).logits["dr"]
        assert not plain.requires_grad
        with pytest.raises(ValueError, match="unknown head"):
            cam(_images(0), head="glaucoma")
        assert len(layer._forward_hooks) == 1
        assert cam(_images(0), head="dr")[0].cam.shape == (SIZE, SIZE)  # still usable
    assert len(layer._forward_hooks) == 0

    with pytest.raises(KeyError), GradCAM(model) as cam:
        assert len(layer._forward_hooks) == 1
        raise KeyError("boom")
    assert len(layer._forward_hooks) == 0
    assert torch.is_grad_enabled()


def test_exception_in_model_forward_releases_hooks_and_restores_grad_mode() -> None:
    model = _model(0)

    def failing_post(module: nn.Module, inputs: object) -> None:
        raise RuntimeError("forward failed")

    handle = model.post.register_forward_pre_hook(failing_post)
    try:
        with torch.no_grad():
            with pytest.raises(RuntimeError, match="forward failed"), GradCAM(model) as cam:
                cam(_images(0), head="dr")  # the hook has switched grad on when post fails
            assert not torch.is_grad_enabled()
    finally:
        handle.remove()
    assert len(model.block._forward_hooks) == 0
    assert torch.is_grad_enabled()


def test_misuse_gives_clear_errors() -> None:
    model = _model(0)
    cam = GradCAM(model)
    with pytest.raises(RuntimeError, match="context manager"):
        cam(_images(0), head="dr")
    with cam:
        with pytest.raises(RuntimeError, match="entered twice"):
            cam.__enter__()
        with pytest.raises(ValueError, match="out of range"):
            cam(_images(0), head="dr", target_class=5)
        with pytest.raises(ValueError, match="image tensor"):
            cam(torch.zeros(3, 4), head="dr")
    assert len(model.block._forward_hooks) == 0
    with pytest.raises(TypeError, match="cam_target_layer"):
        GradCAM(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ValueError, match="method"):
        GradCAM(model, method="cam")  # type: ignore[arg-type]
    stranger = nn.Conv2d(16, 16, 1)
    with GradCAM(model, target_layer=stranger) as cam, pytest.raises(RuntimeError, match="0 times"):
        cam(_images(0), head="dr")


# ----------------------------------------------------------------------------- results
def test_result_shapes_ranges_and_immutability() -> None:
    model = _model(3)
    with GradCAM(model) as cam:
        maps = cam(_images(1, batch=2)[0], head="amd")  # one [3, H, W] image
        sized = cam(_images(1, batch=2), head="dr", target_class=2, output_size=(17, 23))
    assert len(maps) == 1 and isinstance(maps[0], AttentionMap)
    assert maps[0].cam.shape == (SIZE, SIZE) and maps[0].cam.dtype == np.float32
    for m in [*maps, *sized]:
        assert m.cam.min() == 0.0 and m.cam.max() == pytest.approx(1.0)
        assert not m.cam.flags.writeable
    assert [m.cam.shape for m in sized] == [(17, 23), (17, 23)]


def test_map_without_positive_evidence_is_all_zero() -> None:
    model = _model(0)
    with torch.no_grad():
        for p in model.block.parameters():
            p.zero_()  # block output == 0 everywhere: nothing to weight
    with GradCAM(model, method="gradcam++") as cam:
        [m] = cam(_images(0), head="dr", target_class=1)
    assert m.cam.shape == (SIZE, SIZE)
    assert np.all(m.cam == 0.0) and np.all(np.isfinite(m.cam))


# ----------------------------------------------------------------------------- overlay
def test_overlay_shape_dtype_and_blending() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    cam = rng.random((6, 8)).astype(np.float32)
    out = overlay(rgb, cam)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert not np.array_equal(out, rgb)
    np.testing.assert_array_equal(overlay(rgb, cam, opacity=0.0), rgb)
    # Full opacity over a zero map is the colour map's lowest colour everywhere (jet: dark blue).
    blue = overlay(rgb, np.zeros((3, 3)), opacity=1.0)
    assert np.all(blue == blue[0, 0]) and blue[0, 0, 2] > 100 and blue[0, 0, :2].max() == 0
    for name in ("jet", "inferno", "viridis", "Turbo"):
        assert overlay(rgb, cam, colormap=name, opacity=0.5).shape == rgb.shape
    assert "viridis" in COLORMAPS


@pytest.mark.parametrize(
    ("rgb", "cam", "kwargs", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), np.zeros((2, 2)), {}, "uint8"),
        (np.zeros((4, 4), np.uint8), np.zeros((2, 2)), {}, "uint8"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 2)), {}, "cam"),
        (np.zeros((4, 4, 3), np.uint8), np.full((2, 2), np.nan), {}, "finite"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2)), {"colormap": "rainbowz"}, "colormap"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2)), {"opacity": 1.5}, "opacity"),
    ],
)
def test_overlay_rejects_bad_input(
    rgb: np.ndarray, cam: np.ndarray, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        overlay(rgb, cam, **kwargs)  # type: ignore[arg-type]
