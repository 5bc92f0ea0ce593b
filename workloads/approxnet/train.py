"""``python -m bubbleup train approxnet``: train ApproxNet offline, staged as in the paper, and report accuracy.

Stage 1 trains the backbone with the deepest outport on multi-scale batches (every input
size of the grid); stage 2 freezes the backbone and trains every outport's head on the
features it sees. Then the folded inference weights are written (``.npz``) and every
(input size, outport) setting is evaluated on a held-out split of unseen clips, through the
same serving graphs the workload times; the table goes to stdout and to a JSON next to
the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workloads import MissingExtra, check_requirements
from workloads.approxnet import ApproxNetWorkload
from workloads.approxnet.spec import (
    APPROXNET_VARIANTS,
    DEFAULT_SIZES,
    presets_for,
    setting_name,
)
from workloads.nn import data
from workloads.nn.training import WEIGHT_DECAY, Schedule, batches, print_progress, train_stage
from workloads.nn.weights import file_sha256

if TYPE_CHECKING:  # imports Keras: only when training actually starts
    from workloads.nn.trainable import TrainNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_weights(variant: str) -> Path:
    """Where the shipped (or trained-by-default) weights of a variant live."""
    return WEIGHTS_DIR / f"{variant}.npz"


@dataclass(frozen=True)
class TrainPlan:
    """Everything that determines the trained weights (all of it is recorded in the files)."""

    variant: str = "default"
    seed: int = 0
    sizes: tuple[int, ...] = DEFAULT_SIZES
    backbone: Schedule = field(default_factory=lambda: Schedule(epochs=6, clips_per_epoch=800, frames_per_clip=4))
    outports: Schedule = field(default_factory=lambda: Schedule(epochs=2, clips_per_epoch=800, frames_per_clip=4))
    heldout_clips: int = 400
    heldout_frames: int = 3
    #: Side of the rendered frames (every input size is resized from it).
    frame_size: int = data.FRAME_SIZE
    intra_op_threads: int = 2
    inter_op_threads: int = 1


#: Per-variant defaults of the data volume (tiny trains in seconds, for tests and smoke runs).
VARIANT_PLANS: dict[str, dict[str, Any]] = {
    "default": {},
    "wide": {},  # same schedule as default; hours on 2 cores, not shipped
    "tiny": {
        "backbone": Schedule(epochs=4, clips_per_epoch=300, frames_per_clip=4),
        "outports": Schedule(epochs=1, clips_per_epoch=300, frames_per_clip=4),
        "sizes": (64, 96, 128),
        "heldout_clips": 150,
        "heldout_frames": 2,
        "frame_size": 128,
    },
}


def evaluate(
    weights: str | Path,
    sizes: tuple[int, ...],
    seed: int,
    n_clips: int,
    frames: int,
    frame_size: int = data.FRAME_SIZE,
    chunk: int = 96,
) -> dict[str, float]:
    """Top-1 accuracy of every (size, outport) setting on the held-out split, via the serving graphs."""
    from workloads.nn.serving import ServingNet, preprocess
    from workloads.nn.training import heldout, top1

    net, _ = ServingNet.from_file(weights)
    split = heldout(seed, n_clips, frames, frame_size)
    acc: dict[str, float] = {}
    for size in sizes:
        logits: dict[int, list[np.ndarray]] = {e: [] for e in range(1, net.spec.n_exits + 1)}
        for i in range(0, len(split.labels), chunk):
            for e, out in enumerate(net.predict_all(preprocess(split.frames[i : i + chunk], size)), start=1):
                logits[e].append(out)
        for e, parts in logits.items():
            acc[setting_name(size, e)] = top1(np.concatenate(parts), split.labels)
    return acc


def accuracy_table(acc: dict[str, float], sizes: tuple[int, ...], n_exits: int) -> str:
    """Sizes as rows, outports as columns, top-1 in percent."""
    head = "size    " + "".join(f"  exit{e:<4d}" for e in range(1, n_exits + 1))
    rows = [head]
    for s in sizes:
        rows.append(f"{s:>4d}px " + "".join(f"  {100 * acc[setting_name(s, e)]:6.1f}%" for e in range(1, n_exits + 1)))
    return "\n".join(rows)


def fit_outports(
    net: TrainNet,
    sched: Schedule,
    sizes: tuple[int, ...],
    seed: int,
    stream_id: int = 1,
    frame_size: int = data.FRAME_SIZE,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Stage 2: backbone frozen (inference-mode batch norm); every outport head learns from its own features."""
    import keras
    import tensorflow as tf

    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = net.head_variables()
    kernels = [v for v in variables if "kernel" in v.path]

    def loss(x: tf.Tensor, y: tf.Tensor, training: bool) -> tf.Tensor:
        feats = [tf.stop_gradient(f) for f in net.features(x, training=False)]
        losses = [xent(y, head(f, training=training)) for head, f in zip(net.heads, feats, strict=True)]
        return tf.add_n(losses) + WEIGHT_DECAY * tf.add_n([tf.nn.l2_loss(k) for k in kernels])

    stream = batches(seed, sched, data.UNIFORM_PRIOR, stream_id=stream_id, frame_size=frame_size)
    return train_stage(variables, loss, sched, sizes, stream, seed + stream_id, "outports", log)


def train(plan: TrainPlan, out: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, export, evaluate; returns the report written next to the weights."""
    log = log or print_progress
    from workloads.nn.training import configure_tf

    configure_tf(plan.seed, plan.intra_op_threads, plan.inter_op_threads)
    import tensorflow as tf

    from workloads.nn.serving import save_params
    from workloads.nn.trainable import TrainNet
    from workloads.nn.training import fit_main_branch

    spec = APPROXNET_VARIANTS[plan.variant]
    net = TrainNet(spec)
    net.build_all()
    t_start = time.perf_counter()
    log(f"stage 1/2: backbone + exit{spec.n_exits}, {plan.backbone.steps} steps of {plan.backbone.batch_size}")
    hist1 = fit_main_branch(net, plan.backbone, plan.sizes, plan.seed, frame_size=plan.frame_size, log=log)
    t_stage1 = time.perf_counter() - t_start
    log(f"stage 2/2: outports exit1..exit{spec.n_exits} (backbone frozen), {plan.outports.steps} steps")
    hist2 = fit_outports(net, plan.outports, plan.sizes, plan.seed, frame_size=plan.frame_size, log=log)
    t_train = time.perf_counter() - t_start

    meta = {
        "kind": "approxnet",
        "plan": _plan_dict(plan),
        "classes": list(data.CLASS_NAMES),
        "deploy_prior": list(data.DEPLOY_PRIOR),
    }
    save_params(out, spec, net.export_params(), meta)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); evaluating on held-out clips ...")
    acc = evaluate(out, plan.sizes, plan.seed, plan.heldout_clips, plan.heldout_frames, plan.frame_size)
    presets = presets_for(plan.sizes, tuple(range(1, spec.n_exits + 1)))
    report = {
        "kind": "approxnet",
        "weights": out.name,
        "sha256": file_sha256(out),
        "spec": json.loads(spec.to_json()),
        "plan": _plan_dict(plan),
        "heldout": {
            "clips": plan.heldout_clips,
            "frames_per_clip": plan.heldout_frames,
            "frames": plan.heldout_clips * plan.heldout_frames,
            "prior": "deploy",
        },
        "chance": float(max(data.DEPLOY_PRIOR)),
        "top1": acc,
        "presets": {k: {"setting": v, "top1": acc[v]} for k, v in presets.items()},
        "loss_history": {"backbone": hist1, "outports": hist2},
        "train_seconds": {"backbone": round(t_stage1, 1), "total": round(t_train, 1)},
        "versions": {"tensorflow": tf.__version__},
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    log(accuracy_table(acc, plan.sizes, spec.n_exits))
    log("presets: " + ", ".join(f"{k}={v} {100 * acc[v]:.1f}%" for k, v in presets.items()))
    log(f"(majority-class baseline on this split: {100 * report['chance']:.1f}%)")
    return report


def _plan_dict(plan: TrainPlan) -> dict[str, Any]:
    d = asdict(plan)
    d["sizes"] = list(plan.sizes)
    return d


def build_plan(args: argparse.Namespace) -> TrainPlan:
    """The variant's plan with the command line's overrides."""
    plan = TrainPlan(variant=args.variant, seed=args.seed, **VARIANT_PLANS[args.variant])
    backbone, outports = plan.backbone, plan.outports
    if args.epochs is not None:
        backbone = replace(backbone, epochs=args.epochs)
    if args.outport_epochs is not None:
        outports = replace(outports, epochs=args.outport_epochs)
    if args.clips_per_epoch is not None:
        backbone = replace(backbone, clips_per_epoch=args.clips_per_epoch)
        outports = replace(outports, clips_per_epoch=args.clips_per_epoch)
    return replace(
        plan,
        backbone=backbone,
        outports=outports,
        sizes=tuple(args.sizes) if args.sizes else plan.sizes,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
    )


def parser(cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``cls``: the command line's own parser class (bubbleup's says a bad argument in one line)."""
    p = cls(
        prog="bubbleup train approxnet",
        description="Train ApproxNet on synthetic video offline (backbone, then outports) and report "
        "held-out top-1 accuracy per (input size, outport) setting.",
    )
    p.add_argument("--variant", choices=sorted(APPROXNET_VARIANTS), default="default", help="network size")
    p.add_argument("--epochs", type=int, help="backbone epochs (each draws fresh clips); default per variant")
    p.add_argument("--outport-epochs", type=int, help="outport-stage epochs; default per variant")
    p.add_argument("--clips-per-epoch", type=int, help="fresh clips per epoch; default per variant")
    p.add_argument("--sizes", type=int, nargs="+", help="input sizes trained and evaluated (default per variant)")
    p.add_argument("--seed", type=int, default=0, help="fixes data, initial weights and size order (default 0)")
    p.add_argument("--output", "-o", type=Path, help="weights file (.npz); default: the shipped file of the variant")
    p.add_argument("--intra-op-threads", type=int, default=2, help="TF intra-op threads (default 2)")
    p.add_argument("--inter-op-threads", type=int, default=1, help="TF inter-op threads (default 1)")
    return p


def main(argv: list[str] | None = None, parser_cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> int:
    args = parser(parser_cls).parse_args(argv)
    if (args.epochs is not None and args.epochs < 1) or (args.outport_epochs is not None and args.outport_epochs < 1):
        print("error: epochs must be at least 1", file=sys.stderr)
        return 2
    try:
        check_requirements(ApproxNetWorkload)
    except MissingExtra as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from workloads.nn.tfstart import quiet_tf_logs

    quiet_tf_logs()
    plan = build_plan(args)
    out = args.output or default_weights(plan.variant)
    train(plan, Path(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
