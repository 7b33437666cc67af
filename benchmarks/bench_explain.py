"""P4 attention-map benchmark (issue 3): cost of one Grad-CAM map, measured in this one run.

Prints per backbone (CPU, one 512 px image, fp32):
- one attention map (model_zoo.explain.GradCAM) / one grad-enabled forward     (goal <= 1.2)
- one attention map / a full-backward Grad-CAM (.backward() on the whole graph) (goal <= 0.4)
plus, for context, the no-grad forward and the "gradient to the activation only, but with a
graph recorded for the whole forward" variant (what the hook's graph cut saves). When the model's
default map (``cam_default()``, issue 18) is another layer or method than Grad-CAM on the last
block, it is timed too and compared with that: default map / last-block Grad-CAM (goal <= 2).
``--demo`` measures the bundled demo model at its own input size instead of fresh backbones.

Each case runs once to warm up, then ``--reps`` times interleaved with the others; the ratios use
the best (minimum) time, the least disturbed by other jobs, and the medians are printed too. On a
CPU shared with other jobs use ``--threads 1``: spinning OpenMP threads distort every number.

Run: ``.venv/bin/python benchmarks/bench_explain.py [--threads N] [--reps R] [--size 512]
[--backbones resnet50 resnet18] [--demo]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from model_zoo.explain import GradCAM

HEAD, CLASS = "dr", 3


def build(backbone: str) -> tuple[nn.Module, nn.Module, str]:
    """The registry's SALL student, or a torchvision ResNet with two heads if it is missing.

    ``backbone == "demo"``: the bundled demo model.
    """
    if backbone == "demo":
        from model_zoo.checkpoints import load_checkpoint
        from model_zoo.weights import demo_model_dir

        demo, _ = load_checkpoint(demo_model_dir(), device="cpu")
        return demo, demo.cam_target_layer(), "the bundled demo model"  # type: ignore[operator]
    try:
        from model_zoo.architectures.student import SallStudent
        from model_zoo.registry import get_model

        model = get_model("sall_student", backbone=backbone)
        assert isinstance(model, SallStudent)
        return model, model.cam_target_layer(), "model_zoo sall_student"
    except ImportError:
        model, layer = _fallback(backbone)
        return model, layer, "torchvision fallback"


def _fallback(backbone: str) -> tuple[nn.Module, nn.Module]:
    import torchvision

    net = getattr(torchvision.models, backbone)(weights=None)
    width = net.fc.in_features
    net.fc = nn.Identity()

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.heads = nn.ModuleDict({"dr": nn.Linear(width, 5), "amd": nn.Linear(width, 4)})

        def forward(self, x: Tensor) -> dict[str, Tensor]:
            f = self.net(x)
            return {k: h(f) for k, h in self.heads.items()}

    return TwoHeads(), net.layer4


def _logits(out: object) -> Tensor:
    logits = getattr(out, "logits", out)
    assert isinstance(logits, dict)
    head: Tensor = logits[HEAD]
    return head


def full_backward_cam(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    """Textbook Grad-CAM: retain_grad on the activation, .backward() through everything."""
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
        output.retain_grad()
        store["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            _logits(model(x))[0, CLASS].backward()  # type: ignore[no-untyped-call]
    finally:
        handle.remove()
    a, g = store["a"].detach(), store["a"].grad
    assert g is not None
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear")
    model.zero_grad(set_to_none=True)
    return cam


def activation_grad_full_graph(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    """autograd.grad to the activation only, but with the whole forward recorded."""
    store: dict[str, Tensor] = {}

    def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
        store["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            score = _logits(model(x))[0, CLASS]
            (g,) = torch.autograd.grad(score, store["a"])
    finally:
        handle.remove()
    a = store["a"].detach()
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    return torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear")


def bench(backbone: str, size: int, reps: int) -> None:
    torch.manual_seed(0)
    model, layer, source = build(backbone)
    model.eval()
    x = torch.randn(1, 3, size, size)

    def fwd_grad() -> None:
        with torch.enable_grad():
            _logits(model(x))

    def fwd_nograd() -> None:
        with torch.no_grad():
            _logits(model(x))

    finder = getattr(model, "cam_default", None)
    default = finder() if finder is not None else (layer, "gradcam")
    fine = default[0] is not layer or default[1] != "gradcam"
    with GradCAM(model, target_layer=layer) as cam, GradCAM(model) as own:

        def one_map() -> None:
            cam(x, head=HEAD, target_class=CLASS)

        def default_map() -> None:
            own(x, head=HEAD, target_class=CLASS)

        cases: dict[str, Callable[[], object]] = {
            "forward (no grad)": fwd_nograd,
            "forward (grad enabled)": fwd_grad,
            "GradCAM, model_zoo.explain": one_map,
            "activation grad, full graph": lambda: activation_grad_full_graph(model, layer, x),
            "full-backward Grad-CAM": lambda: full_backward_cam(model, layer, x),
        }
        if fine:
            cases[f"default map ({default[1]})"] = default_map
        for fn in cases.values():  # warm-up: oneDNN primitive creation, allocator
            fn()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(reps):
            for name, fn in cases.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    assert all(p.grad is None for p in model.parameters()), "parameter grads left behind"
    best = {name: min(ts) for name, ts in times.items()}
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"\n{backbone} @ {size}px ({source}), {torch.get_num_threads()} thread(s), {reps} reps")
    print(f"  {'':32s} {'best':>9s}    {'median':>9s}")
    for name in times:
        print(f"  {name:32s} {best[name] * 1000:9.1f} ms {med[name] * 1000:9.1f} ms")
    ours = "GradCAM, model_zoo.explain"
    for label, other, goal in (
        ("P4a map / grad-enabled forward  ", "forward (grad enabled)", 1.2),
        ("P4b map / full-backward Grad-CAM", "full-backward Grad-CAM", 0.4),
    ):
        ratio, ratio_med = best[ours] / best[other], med[ours] / med[other]
        verdict = "OK" if ratio <= goal else "MISSED"
        print(f"  {label} = {ratio:5.2f} (median {ratio_med:5.2f})  goal <= {goal}: {verdict}")
    if fine:
        name = f"default map ({default[1]})"
        ratio, ratio_med = best[name] / best[ours], med[name] / med[ours]
        verdict = "OK" if ratio <= 2.0 else "MISSED"
        print(
            f"  default map / last-block Grad-CAM = {ratio:5.2f} (median {ratio_med:5.2f})  "
            f"goal <= 2: {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "resnet18"])
    parser.add_argument("--demo", action="store_true", help="the demo model at its input size")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.demo:
        from model_zoo.cards import read_card
        from model_zoo.weights import CARD_FILENAME, demo_model_dir

        bench("demo", read_card(demo_model_dir() / CARD_FILENAME).input_size, args.reps)
        return
    for backbone in args.backbones:
        bench(backbone, args.size, args.reps)


if __name__ == "__main__":
    main()
