"""LiteRT vs TensorFlow for ApproxNet's presets: latency, memory, and each runtime's cliff under contention.

    python benchmarks/bench_runtimes.py [--rounds 8] [--block 40] [--skip-contention] [--keep DIR]

Printed side by side, all from this one run:

1. Latency per preset and thread count: the same inputs through both runtimes in one process,
   blocks of ``--block`` inferences alternated ABBA for ``--rounds`` rounds (drift and the VM's
   speed changes then fall on both alike); the ratio is the median of the per-round ratios, with
   its range over rounds.
2. Memory per runtime with LL, MM and HH warm, each in a fresh process, interleaved over 3 rounds:
   *model* memory is RSS after warm-up minus the runtime's framework floor (RSS with the runtime
   warm on a tiny probe model and no network: each workload records it) minus the prepared inputs
   and kept frames, as ``bench_approxnet.py`` separates them; whole-process RSS beside it (what a
   device pays for the runtime itself).
3. Under contention: ``scenarios/approxnet-runtimes.yaml`` (the main job's bubbles, placement and
   precision rule; both runtimes as two workloads of one sweep), each runtime's curve per preset
   and its cliff.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MIB = 1 << 20
PRESETS = ("LL", "MM", "HH")
RUNTIMES = ("tensorflow", "litert")
QUANTISED = ("int8", "float16")


def _workload(runtime: str, threads: int, quantize: str = "none") -> Any:
    from workloads.approxnet import ApproxNetOptions, ApproxNetWorkload

    # validated, as a scenario's options are: a runtime or quantisation this build lacks is refused by name
    options = ApproxNetOptions.model_validate({"runtime": runtime, "intra_op_threads": threads, "quantize": quantize})
    return ApproxNetWorkload(options)


def quantised_child(threads: int, rounds: int, block: int) -> None:
    """In a fresh process: LiteRT float32 against its int8 and float16 variants, ABBA per preset; one JSON line."""
    from benchmarks.bench_approxnet import paired_blocks, time_calls

    variants = {q: _workload("litert", threads, q) for q in (*QUANTISED, "none")}
    for w in variants.values():
        w.load()
    out: dict[str, Any] = {}
    for preset in PRESETS:
        calls: dict[str, tuple[Any, list[Any]]] = {}
        for q, w in variants.items():
            w.select(preset)
            xs = [x for x, _ in w.samples()]
            fn = w.served_function(preset)
            time_calls(fn, xs, 5)
            calls[q] = (fn, xs)
        out[preset] = {}
        for q in QUANTISED:
            variant, base = calls[q], calls["none"]
            a, b, ratios = paired_blocks(
                lambda v=variant: time_calls(v[0], v[1], block), lambda f=base: time_calls(f[0], f[1], block), rounds
            )
            meta = variants[q].metadata()["runtime"]["models"]["approxnet"]
            check = json.loads(Path(meta["file"]).with_suffix(".json").read_text())["check"]["settings"]
            setting = variants[q].resolve(preset)
            out[preset][q] = {
                "ms": statistics.median(a) / 1e6,
                "float_ms": statistics.median(b) / 1e6,
                "ratio": statistics.median(ratios),
                "top1": check[setting]["litert_top1"],
                "float_top1": check[setting]["tensorflow_top1"],
            }
    print(json.dumps(out))


def latency_child(threads: int, rounds: int, block: int) -> None:
    """In a fresh process: both runtimes loaded, ABBA blocks per preset; one JSON line."""
    from benchmarks.bench_approxnet import paired_blocks, time_calls

    loaded = {rt: _workload(rt, threads) for rt in RUNTIMES}
    for w in loaded.values():
        w.load()
    out: dict[str, Any] = {}
    for preset in PRESETS:
        calls: dict[str, tuple[Any, list[Any]]] = {}
        for rt, w in loaded.items():
            w.select(preset)
            xs = [x for x, _ in w.samples()]
            fn = w.served_function(preset)
            call = fn if rt == "litert" else (lambda x, fn=fn: fn(x).numpy())
            time_calls(call, xs, 5)  # first uses: allocation, kernel creation
            calls[rt] = (call, xs)
        lite, tf_ = calls["litert"], calls["tensorflow"]
        a, b, ratios = paired_blocks(
            lambda lite=lite: time_calls(lite[0], lite[1], block),
            lambda tf_=tf_: time_calls(tf_[0], tf_[1], block),
            rounds,
        )
        out[preset] = {
            "litert_ms": statistics.median(a) / 1e6,
            "tensorflow_ms": statistics.median(b) / 1e6,
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    print(json.dumps(out))


def memory_child(runtime: str) -> None:
    """In a fresh process: one runtime, LL/MM/HH warm; RSS milestones as one JSON line."""
    import psutil

    proc = psutil.Process()
    w = _workload(runtime, 1)
    base = proc.memory_info().rss / MIB
    w.load()
    for preset in PRESETS:
        w.select(preset)
        xs = w.samples()
        for i in range(10):
            w.infer(xs[i % len(xs)])
    rss = proc.memory_info().rss / MIB
    frames = 0 if w._frames is None else w._frames.nbytes / MIB
    floor = w.metadata()["framework_rss_mb"]
    print(json.dumps({"base": base, "floor": floor, "warm": rss, "inputs": w.input_bytes() / MIB, "frames": frames,
                      "model": rss - floor - w.input_bytes() / MIB - frames}))  # fmt: skip


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def contention(keep: Path | None) -> dict[str, Any]:
    """Run the runtimes scenario as a user would; per workload label and preset, the curve and the cliff."""
    from bubbleup.analysis.summary import find_cliffs, summarise
    from bubbleup.store.reader import load_run

    out = keep or Path(tempfile.mkdtemp(prefix="bench-runtimes-")) / "run"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "bubbleup", "run", "scenarios/approxnet-runtimes.yaml", "--out", str(out),
                    "-q"], cwd=ROOT, check=True)  # fmt: skip
    wall = time.monotonic() - t0
    run = load_run(out)
    summary = summarise(run)
    curves = {s: g.sort_values("value")["median_ms"].round(2).tolist() for s, g in summary.groupby("setting")}
    cliffs = {c.setting: c.at for c in find_cliffs(run, summary)}
    return {"dir": str(out), "wall_s": wall, "valid": (run.manifest.validity or {}).get("valid"),
            "curves": curves, "cliffs": cliffs}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--block", type=int, default=40)
    p.add_argument("--skip-contention", action="store_true")
    p.add_argument("--keep", type=Path, help="run directory for the contention sweep (kept)")
    p.add_argument("--latency-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--memory-child", choices=RUNTIMES, help=argparse.SUPPRESS)
    p.add_argument("--quantised-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.latency_child:
        latency_child(args.latency_child, args.rounds, args.block)
        return 0
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    if args.quantised_child:
        quantised_child(args.quantised_child, args.rounds, args.block)
        return 0

    # the exports are made (and checked) once before anything is timed
    for q in ("none", *QUANTISED):
        subprocess.run([sys.executable, "-m", "bubbleup", "export", "approxnet", "--runtime", "litert", "--quantize",
                        q], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    print("== 1. latency, LiteRT / TensorFlow (same inputs, one process, ABBA blocks) ==")
    print(f"{'preset':<7}{'threads':>8}{'TF ms':>9}{'LiteRT ms':>11}{'ratio':>8}  range over rounds")
    for threads in (1, 2):
        lat = _child("--latency-child", str(threads), "--rounds", str(args.rounds), "--block", str(args.block))
        for preset, r in lat.items():
            print(f"{preset:<7}{threads:>8}{r['tensorflow_ms']:>9.2f}{r['litert_ms']:>11.2f}{r['ratio']:>8.2f}"
                  f"  {r['ratio_min']:.2f}-{r['ratio_max']:.2f}")  # fmt: skip

    print("\n== 1b. LiteRT's quantised variants against its float32 (one thread; held-out top-1 from the export) ==")
    print(f"{'preset':<7}{'variant':>9}{'ms':>8}{'float32 ms':>12}{'ratio':>8}{'top-1':>8}{'float32 top-1':>15}")
    quant = _child("--quantised-child", "1", "--rounds", str(args.rounds), "--block", str(args.block))
    for preset, by_q in quant.items():
        for q, r in by_q.items():
            print(f"{preset:<7}{q:>9}{r['ms']:>8.2f}{r['float_ms']:>12.2f}{r['ratio']:>8.2f}{r['top1']:>8.3f}"
                  f"{r['float_top1']:>15.3f}")  # fmt: skip

    print("\n== 2. memory, LL + MM + HH warm, one thread (MiB; median of 3 interleaved rounds) ==")
    rounds: dict[str, list[dict[str, float]]] = {rt: [] for rt in RUNTIMES}
    for _ in range(3):
        for rt in RUNTIMES:
            rounds[rt].append(_child("--memory-child", rt))
    print(f"{'runtime':<12}{'model':>8}{'floor':>8}{'whole RSS':>11}{'inputs':>8}")
    med = {rt: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for rt, rs in rounds.items()}
    for rt in RUNTIMES:
        m = med[rt]
        print(f"{rt:<12}{m['model']:>8.1f}{m['floor']:>8.1f}{m['warm']:>11.1f}{m['inputs']:>8.1f}")
    print(
        f"LiteRT / TensorFlow: model memory {med['litert']['model'] / med['tensorflow']['model']:.2f}x, "
        f"whole process {med['litert']['warm'] / med['tensorflow']['warm']:.2f}x"
    )

    if not args.skip_contention:
        print("\n== 3. under contention: scenarios/approxnet-runtimes.yaml (0-5 bubbles, 256 MiB, 0.3 core each) ==")
        c = contention(args.keep)
        print(f"run: {c['dir']}  ({c['wall_s'] / 60:.1f} min, {'VALID' if c['valid'] else 'INVALID'})")
        for setting in sorted(c["curves"]):
            cliff = c["cliffs"].get(setting)
            print(f"{setting:<22} median ms at 0..5 bubbles: {', '.join(f'{v:.2f}' for v in c['curves'][setting])}"
                  f"   cliff: {'none' if cliff is None else f'{cliff:g} bubbles'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
