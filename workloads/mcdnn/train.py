"""``python -m bubbleup train mcdnn``: train MCDNN's full and specialised small model offline.

The full model learns all classes at its fixed input size from a uniform class mix; the
small model learns the top-K classes of the deployment prior plus "other", from frames
drawn at that (skewed) prior, as MCDNN specialises to the stream it sees. Then both are
evaluated on the same held-out split as ApproxNet: each alone, and the cascade at several
confidence thresholds (accuracy and how often it falls back). Table to stdout; JSON next
to the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from workloads import MissingExtra, check_requirements
from workloads.mcdnn import McdnnWorkload
from workloads.mcdnn.models import TOP_K, VARIANTS, relabel_for_small, small_answers, top_classes
from workloads.nn import data
from workloads.nn.training import Schedule, print_progress
from workloads.nn.weights import file_sha256

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
THRESHOLDS: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class McdnnPlan:
    variant: str = "default"
    seed: int = 0
    full: Schedule = field(default_factory=lambda: Schedule(epochs=5, clips_per_epoch=800, frames_per_clip=4))
    small: Schedule = field(default_factory=lambda: Schedule(epochs=4, clips_per_epoch=800, frames_per_clip=4))
    heldout_clips: int = 400
    heldout_frames: int = 3
    frame_size: int = data.FRAME_SIZE
    intra_op_threads: int = 2
    inter_op_threads: int = 1


VARIANT_PLANS: dict[str, dict[str, Any]] = {
    "default": {},
    "wide": {},  # same schedule as default; hours on 2 cores, not shipped
    "tiny": {
        "full": Schedule(epochs=2, clips_per_epoch=200, frames_per_clip=4),
        "small": Schedule(epochs=2, clips_per_epoch=200, frames_per_clip=4),
        "heldout_clips": 120,
        "heldout_frames": 2,
        "frame_size": 128,
    },
}


def output_paths(directory: Path, variant: str) -> dict[str, Path]:
    suffix = "" if variant == "default" else f"-{variant}"
    return {
        "small": directory / f"small{suffix}.npz",
        "full": directory / f"full{suffix}.npz",
        "report": directory / f"cascade{suffix}.json",
    }


def evaluate(paths: dict[str, Path], plan: McdnnPlan) -> dict[str, Any]:
    """Held-out accuracy of small, full and the cascade at every threshold in ``THRESHOLDS``."""
    from workloads.nn.serving import ServingNet, preprocess
    from workloads.nn.training import heldout, top1

    pair = VARIANTS[plan.variant]
    small, _ = ServingNet.from_file(paths["small"])
    full, _ = ServingNet.from_file(paths["full"])
    split = heldout(plan.seed, plan.heldout_clips, plan.heldout_frames, plan.frame_size)
    s_logits, f_logits = [], []
    for i in range(0, len(split.labels), 96):
        chunk = split.frames[i : i + 96]
        s_logits.append(small.predict_all(preprocess(chunk, pair.small_size))[0])
        f_logits.append(full.predict_all(preprocess(chunk, pair.full_size))[0])
    s, f, y = np.concatenate(s_logits), np.concatenate(f_logits), split.labels
    classes = top_classes()
    small_alone = small_answers(s, 0.0, classes)  # "other" (-1) counts as wrong: it names no class
    cascade = {}
    for t in THRESHOLDS:
        answers = small_answers(s, t, classes)
        fall = answers < 0
        final = np.where(fall, f.argmax(axis=1), answers)
        cascade[f"{t:.2f}"] = {"top1": float(np.mean(final == y)), "fallback_rate": float(np.mean(fall))}
    return {
        "heldout_top1": {
            "small": float(np.mean(small_alone == y)),
            "full": top1(f, y),
            "cascade": cascade,
        },
        "small_specialised_top1": float(np.mean(s.argmax(axis=1) == relabel_for_small(y))),
        "frames": len(y),
    }


def train(plan: McdnnPlan, directory: Path, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train both models, export, evaluate; returns the report written next to the weights."""
    log = log or print_progress
    from workloads.nn.training import configure_tf

    configure_tf(plan.seed, plan.intra_op_threads, plan.inter_op_threads)
    import tensorflow as tf

    from workloads.nn.serving import save_params
    from workloads.nn.trainable import TrainNet
    from workloads.nn.training import fit_main_branch

    pair = VARIANTS[plan.variant]
    paths = output_paths(directory, plan.variant)
    seconds: dict[str, float] = {}
    history: dict[str, list[float]] = {}
    for model in ("full", "small"):
        spec = pair.full if model == "full" else pair.small
        sched = plan.full if model == "full" else plan.small
        size = pair.full_size if model == "full" else pair.small_size
        net = TrainNet(spec)
        net.build_all()
        log(f"{model} model ({spec.name}, {size} px): {sched.steps} steps of {sched.batch_size}")
        t0 = time.perf_counter()
        history[model] = fit_main_branch(
            net,
            sched,
            (size,),
            plan.seed,
            prior=data.UNIFORM_PRIOR if model == "full" else data.DEPLOY_PRIOR,
            relabel=None if model == "full" else relabel_for_small,
            stream_id=2 if model == "full" else 3,
            frame_size=plan.frame_size,
            log=log,
        )
        seconds[model] = round(time.perf_counter() - t0, 1)
        meta = {
            "kind": "mcdnn",
            "model": model,
            "input_size": size,
            "classes": list(top_classes()) if model == "small" else list(range(data.NUM_CLASSES)),
            "other_index": TOP_K if model == "small" else None,
            "plan": _plan_dict(plan),
        }
        save_params(paths[model], spec, net.export_params(), meta)
        log(f"wrote {paths[model]} ({paths[model].stat().st_size / 1e6:.2f} MB)")
    log("evaluating on held-out clips ...")
    result = evaluate(paths, plan)
    report = {
        "kind": "mcdnn",
        "weights": {m: {"file": paths[m].name, "sha256": file_sha256(paths[m])} for m in ("small", "full")},
        "specialised_classes": [data.CLASS_NAMES[c] for c in top_classes()],
        "input_sizes": {"small": pair.small_size, "full": pair.full_size},
        "plan": _plan_dict(plan),
        "loss_history": history,
        "train_seconds": seconds,
        "versions": {"tensorflow": tf.__version__},
        **result,
    }
    paths["report"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    acc = result["heldout_top1"]
    log(
        f"held-out top-1 ({result['frames']} frames): small alone {100 * acc['small']:.1f}% "
        f"(specialised task {100 * result['small_specialised_top1']:.1f}%), full {100 * acc['full']:.1f}%"
    )
    log("cascade threshold   top-1   falls back")
    for t, row in acc["cascade"].items():
        log(f"  {t:>8s}        {100 * row['top1']:5.1f}%   {100 * row['fallback_rate']:5.1f}%")
    return report


def _plan_dict(plan: McdnnPlan) -> dict[str, Any]:
    return asdict(plan)


def parser(cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``cls``: the command line's own parser class (bubbleup's says a bad argument in one line)."""
    p = cls(
        prog="bubbleup train mcdnn",
        description="Train MCDNN's full model and its specialised small model (top-K classes + other) on "
        "synthetic video offline, and report held-out accuracy of each and of the cascade.",
    )
    p.add_argument("--variant", choices=sorted(VARIANTS), default="default", help="model sizes")
    p.add_argument("--epochs", type=int, help="epochs of each model (each draws fresh clips); default per variant")
    p.add_argument("--clips-per-epoch", type=int, help="fresh clips per epoch; default per variant")
    p.add_argument("--seed", type=int, default=0, help="fixes data, initial weights (default 0)")
    p.add_argument("--output-dir", "-o", type=Path, default=WEIGHTS_DIR, help=f"directory (default {WEIGHTS_DIR})")
    p.add_argument("--intra-op-threads", type=int, default=2, help="TF intra-op threads (default 2)")
    p.add_argument("--inter-op-threads", type=int, default=1, help="TF inter-op threads (default 1)")
    return p


def build_plan(args: argparse.Namespace) -> McdnnPlan:
    plan = McdnnPlan(variant=args.variant, seed=args.seed, **VARIANT_PLANS[args.variant])
    full, small = plan.full, plan.small
    if args.epochs is not None:
        full, small = replace(full, epochs=args.epochs), replace(small, epochs=args.epochs)
    if args.clips_per_epoch is not None:
        full = replace(full, clips_per_epoch=args.clips_per_epoch)
        small = replace(small, clips_per_epoch=args.clips_per_epoch)
    return replace(
        plan,
        full=full,
        small=small,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
    )


def main(argv: list[str] | None = None, parser_cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> int:
    args = parser(parser_cls).parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        print("error: --epochs must be at least 1", file=sys.stderr)
        return 2
    try:
        check_requirements(McdnnWorkload)
    except MissingExtra as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from workloads.nn.tfstart import quiet_tf_logs

    quiet_tf_logs()
    train(build_plan(args), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
