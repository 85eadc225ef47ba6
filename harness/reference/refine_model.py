"""Refine a trained reference model: fine-tune on its own hardest false positives.

Stage 2 of the reference vendor (stage 1 is ``train_model``). A detector whose exam score is the
maximum over ~50 000 heatmap cells is limited by the few cells in each normal exam that respond
most, and random crops almost never contain them. So this stage runs the current model over the
training exams, takes each view's strongest responses outside any cancer (hard negatives, benign
findings included), and fine-tunes on crops centred there, alongside stage 1's cancer, benign and
random crops; it mines again every ``MINE_EVERY`` steps. Platt calibration and the operating point
are refitted on the same training split.

It starts from a vendor package's ``model.onnx``, whose convolutions carry the exported, BatchNorm-
folded weights; the network is rebuilt with those weights and BatchNorm frozen as the identity
(fine-tuning with small batches must not re-estimate normalisation statistics).

Measured on the shipped package (README.md): +0.02 AUC on the dev split, but it fails the
resampling invariance the stage-1 model passes, so the shipped package is stage 1 alone.

Run: ``python -m harness.reference.refine_model --init PKG --train-cases DIR --out DIR``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from harness.cases.manifest import load_manifest
from harness.errors import UsageError
from harness.jsonutil import sha256_file
from harness.reference import train_model as tm

SEED = 20261128
STEPS = 2400
BATCH = 16
LR = 3e-4
HARD_SHARE = 0.25  # crops centred on mined false positives
MINE_EVERY = 600
PEAKS_PER_VIEW = 3  # separated local maxima per view
PEAK_SEPARATION = 8  # heatmap cells (32 model px) suppressed around a mined peak
HOT_KEEP = 3000  # the hottest peaks over the whole split are the crop centres
VERSION = "2.1.0"


def net_from_onnx(model: Path):
    """The reference network rebuilt from an exported model: its fixed prewhitening filter (if the
    graph has one) and its (BatchNorm-folded) convolution weights; each BatchNorm becomes the
    identity plus the folded bias, so in eval mode the network computes the exported graph."""
    torch = tm._torch()
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    # the exporter shares equal constants through Identity nodes
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in init:
            init[node.output[0]] = init[node.input[0]]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    pw = None
    if convs and init.get(convs[0].input[1], np.zeros(0)).shape == (1, 1, tm.PW_SIZE, tm.PW_SIZE):
        pw = init[convs[0].input[1]][0, 0]
        convs = convs[1:]
    net = tm.make_net(pw)
    layers = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m is not net.pw]
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if len(convs) != len(layers) or len(norms) != len(layers) - 1:
        raise UsageError(
            f"{model}: {len(convs)} convolutions, the reference network has {len(layers)}; "
            "pass a package written by harness.reference.train_model"
        )
    with torch.no_grad():
        for k, (node, layer) in enumerate(zip(convs, layers, strict=True)):
            weight, bias = init[node.input[1]], init[node.input[2]]
            if tuple(layer.weight.shape) != weight.shape:
                raise UsageError(
                    f"{model}: convolution {k} has shape {weight.shape}, expected "
                    f"{tuple(layer.weight.shape)}; pass a package written by train_model"
                )
            layer.weight.copy_(torch.from_numpy(weight.copy()))
            if k < len(norms):
                bn = norms[k]
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(math.sqrt(1.0 + bn.eps))
                bn.bias.copy_(torch.from_numpy(bias.copy()))
            else:
                layer.bias.copy_(torch.from_numpy(bias.copy()))
    return net


def hot_spots(model: Path, split: tm.Split) -> list[tuple[int, int, float, float]]:
    """The ``HOT_KEEP`` strongest responses outside cancers: (exam, view, row, col) in model px,
    hottest first. Runs the exported graph with onnxruntime (as the harness would)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = tm.THREADS
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    peaks = []
    for i in range(0, len(split.labels), 4):
        heat = session.run([tm.HEATMAP], {tm.INPUT: split.planes[i : i + 4].astype(np.float32)})[0]
        for j, views in enumerate(heat):
            e = i + j
            for v, cells in enumerate(views):
                cells = cells.copy()
                lesion = tm.target_map(split.malignant[e][v], *cells.shape)
                cells[lesion > 0] = 0.0
                for _ in range(PEAKS_PER_VIEW):
                    r, c = np.unravel_index(int(cells.argmax()), cells.shape)
                    peaks.append((-float(cells[r, c]), e, v, int(r), int(c)))
                    s = PEAK_SEPARATION
                    cells[max(0, r - s) : r + s + 1, max(0, c - s) : c + s + 1] = 0.0
    peaks.sort()  # hottest first; ties by exam, view, position (deterministic)
    half = tm.STRIDE / 2
    return [
        (e, v, r * tm.STRIDE + half, c * tm.STRIDE + half) for _, e, v, r, c in peaks[:HOT_KEEP]
    ]


def sample(split: tm.Split, rng: np.random.Generator, n: int, hot) -> tuple:
    """Stage 1's crop mix with ``HARD_SHARE`` of it replaced by crops around mined hot spots."""
    x, t, y = tm.sample_crops(split, rng, n)
    for i in range(round(HARD_SHARE * n)):
        e, v, r, c = hot[int(rng.integers(len(hot)))]
        x[i], t[i, 0], y[i] = tm.crop_at(split, e, v, *tm.jitter(rng, (c, r, c, r)))
    return x, t, y


def refine(net, split: tm.Split, steps: int, work: Path, log=print):
    """Fine-tune ``net`` (BatchNorm frozen) on hard negatives mined every ``MINE_EVERY`` steps."""
    torch = tm._torch()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(SEED)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.05)
    hot = []

    def crops_for(step: int):
        nonlocal hot
        if step % MINE_EVERY == 0:
            tm.export(net.eval(), 1.0, 0.0, work / "mining.onnx")
            hot = hot_spots(work / "mining.onnx", split)
            log(f"step {step}: mined {len(hot)} hot spots")
        return sample(split, rng, BATCH, hot)

    # BatchNorm stays frozen: small fine-tuning batches must not re-estimate its statistics
    return tm.fit(net, opt, sched, steps, crops_for, rng, log, batchnorm=False)


def starting_package(init: Path) -> tuple:
    """The network of a package a later stage starts from (``net_from_onnx``), with its torch
    threads fixed, and what the package says of itself: ``training.json`` (if any) plus its
    model's digest."""
    torch = tm._torch()
    torch.set_num_threads(tm.THREADS)
    model = Path(init) / "model.onnx"
    if not model.is_file():
        raise UsageError(f"{model}: not found; --init takes a package written by train_model")
    trained = Path(init) / "training.json"
    report = json.loads(trained.read_text(encoding="utf-8")) if trained.is_file() else {}
    return net_from_onnx(model), {"model": f"sha256:{sha256_file(model)}", **report}


def stage_arguments(
    ap: argparse.ArgumentParser, init_from: str, out_note: str, steps: int | None
) -> None:
    """The arguments every later stage takes: its starting package, the training set, where to
    write, how many steps (none for a stage that does not train)."""
    ap.add_argument("--init", required=True, help=f"package written by {init_from}")
    ap.add_argument(
        "--train-cases", required=True, help="training reference set (never the evaluation set)"
    )
    ap.add_argument("--out", required=True, help=f"package directory to write {out_note}".strip())
    if steps is not None:
        ap.add_argument("--steps", type=int, default=steps, help="optimizer steps")


def build(init: Path, train_cases: Path, out: Path, steps: int = STEPS, log=print) -> dict:
    """Refine the package ``init`` on ``train_cases`` and write it to ``out`` (may be ``init``)."""
    net, stage1 = starting_package(init)
    split = tm.load_split(train_cases)
    log(f"refining on {len(split.labels)} exams, {int(split.labels.sum())} cancers")
    work = Path(out) / ".refine"
    work.mkdir(parents=True, exist_ok=True)
    try:
        net = refine(net, split, steps, work, log)
    finally:
        (work / "mining.onnx").unlink(missing_ok=True)
        work.rmdir()
    report = {
        "stage1": stage1,
        "train_cases": load_manifest(train_cases).digest,
        "train_exams": len(split.labels),
        "steps": steps,
        "batch": BATCH,
        "hard_share": HARD_SHARE,
        "seed": SEED,
    }
    # a package exported with the flip mean stays one
    flip = bool(stage1.get("test_time_flip"))
    return tm.write_package(net, split, Path(out), report, VERSION, flip)


def stage_main(argv, prog: str, doc: str, init_from: str, out_note: str, steps: int, build) -> int:
    """A later stage as a script: ``stage_arguments``, then ``build(init, train_cases, out, steps,
    log)`` through ``train_model.run_build``."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    stage_arguments(ap, init_from, out_note, steps)
    args = ap.parse_args(argv)
    return tm.run_build(
        ap.prog,
        lambda log: build(Path(args.init), Path(args.train_cases), Path(args.out), args.steps, log),
    )


def main(argv: list[str] | None = None) -> int:
    return stage_main(
        argv,
        "python -m harness.reference.refine_model",
        __doc__,
        "train_model (stage 1)",
        "(may be --init)",
        STEPS,
        build,
    )


if __name__ == "__main__":
    sys.exit(main())
