"""ApproxNet serving benchmark: harness overhead, compiled vs eager, and memory against MCDNN.

    python benchmarks/bench_approxnet.py [--n 40] [--rounds 6] [--quick] [--sections 1234]
                                         [--memory-repeats 3] [--json FILE]

Prints, from one run:

1. Per setting: median latency through the harness (``bubbleup.sweep.worker.Runner.step``, the
   code that times every inference in a real run) divided by the median of the same compiled
   function called bare in a loop, in block pairs alternating ABBA; the ratio is the median of
   the pairs' ratios, so the machine's drift between blocks cancels. Target <= 1.1.
2. Per preset: the served graph (folded batch norm, ``tf.function``) against the same ops run
   eagerly, and against the Keras training model (unfolded batch norm) compiled and eager.
3. Per setting: the default serving (one graph per outport, any input size) against one graph
   per setting, bare, in ABBA block pairs, and the number of ops in each graph.
4. Memory, each configuration in fresh processes (3 rounds, interleaved): RSS after importing
   TensorFlow, after ``load()``, and after every setting has run (warm). *Model* memory is warm RSS minus the
   prepared inputs minus a process that did everything but hold a model (the "no model" row);
   growth over the import and whole-process totals are shown too. Twice: for the shipped,
   trained networks, and for the same networks 4x as wide (untrained; ApproxNet then has
   ResNet-18's parameter count), since which part dominates memory depends on scale.
   Target: ApproxNet with every setting warm <= 0.6 x MCDNN with both models resident, in
   the worst round; the ratio with ``trace: per_setting`` and by the other measures is printed
   beside it.

Run it on a quiet machine, niced if others measure: ``nice -n 10 python benchmarks/bench_approxnet.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MIB = 1 << 20


def _median_ms(ns: list[int]) -> float:
    return statistics.median(ns) / 1e6


def time_calls(call: Any, inputs: list[Any], n: int) -> list[int]:
    """Nanoseconds of ``n`` calls of ``call`` cycling through ``inputs``."""
    perf, times = time.perf_counter_ns, []
    for i in range(n):
        x = inputs[i % len(inputs)]
        t0 = perf()
        call(x)
        times.append(perf() - t0)
    return times


def _fetching(fn: Any) -> Any:
    """``fn`` followed by fetching its result to numpy, as a caller of the served graph does."""
    return lambda x: fn(x).numpy()


def _runner_ns(runner: Any, setting: str, n: int) -> list[int]:
    """Nanoseconds of ``n`` inferences timed by the worker's own loop."""
    return [round(ms * 1e6) for ms in runner.step(setting, warmup=0, n=n).latencies()]


def paired_blocks(a: Any, b: Any, rounds: int) -> tuple[list[int], list[int], list[float]]:
    """Blocks of ``a()`` and ``b()`` (each returning ns samples) alternated ABBA against drift.

    Returns all samples of each and, per round, median(a) / median(b) of its adjacent blocks.
    """
    all_a: list[int] = []
    all_b: list[int] = []
    ratios = []
    for r in range(rounds):
        blocks = {}
        for name, block in (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a)):
            blocks[name] = block()
        all_a += blocks["a"]
        all_b += blocks["b"]
        ratios.append(statistics.median(blocks["a"]) / statistics.median(blocks["b"]))
    return all_a, all_b, ratios


def harness_vs_bare(n: int, rounds: int, settings: list[str] | None) -> list[dict[str, Any]]:
    """Per setting, median latency via the worker's Runner and via a bare loop over the same function."""
    from bubbleup.sweep.worker import Runner
    from workloads.approxnet import ApproxNetOptions, ApproxNetWorkload

    w = ApproxNetWorkload(ApproxNetOptions())
    w.load()
    runner = Runner(w)
    rows = []
    for setting in settings or w.settings():
        first = runner.step(setting, warmup=0, n=1)  # first use: a trace if its outport is new, a new shape
        runner.step(setting, warmup=5, n=1)
        fn = w.served_function(setting)  # the very function the workload calls
        inputs = [s[0] for s in w.samples()]
        harness, bare, round_ratios = paired_blocks(
            partial(_runner_ns, runner, setting, n), partial(time_calls, fn, inputs, n), rounds
        )
        h, b = _median_ms(harness), _median_ms(bare)
        ratio = statistics.median(round_ratios)  # adjacent blocks paired: the machine's drift cancels
        rows.append(
            {
                "setting": setting,
                "first_select_ms": first.select_ms,
                "first_infer_ms": first.latencies()[0],
                "harness_ms": h,
                "bare_ms": b,
                "ratio": ratio,
                "round_ratios": round_ratios,
            }
        )
        print(
            f"  {setting:>12s}  first use {first.select_ms:7.1f} + {first.latencies()[0]:6.1f} ms   "
            f"harness {h:6.2f} ms   bare {b:6.2f} ms   ratio {ratio:5.3f} "
            f"(rounds {min(round_ratios):.2f}-{max(round_ratios):.2f})",
            flush=True,
        )
    w.close()
    return rows


def _keras_eager(net: Any, x: Any, exit_number: int) -> Any:
    return net(x, training=False)[exit_number - 1]


def compiled_vs_eager(n: int) -> list[dict[str, Any]]:
    """Per preset: served graph, the same ops eagerly, and the Keras training model compiled / eager."""
    import tensorflow as tf

    from workloads.approxnet import ApproxNetOptions, ApproxNetWorkload
    from workloads.approxnet.spec import parse_setting
    from workloads.nn.trainable import TrainNet

    w = ApproxNetWorkload(ApproxNetOptions())
    w.load()
    assert w.net is not None  # load() builds it
    keras_net = TrainNet(w.net.spec)  # same architecture, Keras layers (batch norm not folded); values irrelevant
    keras_net.build_all()
    rows = []
    for preset, setting in w.presets().items():
        size, exit_number = parse_setting(setting)
        x = tf.random.normal([1, size, size, 3])
        served = w.served_function(setting)
        keras_graph = tf.function(lambda t, k=exit_number: keras_net(t, training=False)[k - 1])
        candidates = {
            "served graph": partial(served, x),
            "same ops, eager": partial(w.net.forward, x, exit_number),
            "keras, tf.function": partial(keras_graph, x),
            "keras, eager": partial(_keras_eager, keras_net, x, exit_number),
        }
        row: dict[str, Any] = {"preset": preset, "setting": setting}
        for name, call in candidates.items():
            for _ in range(3):
                call()
            times = []
            for _ in range(n if "eager" not in name else max(5, n // 4)):
                t0 = time.perf_counter_ns()
                out = call()
                _ = out.numpy()
                times.append(time.perf_counter_ns() - t0)
            row[name] = _median_ms(times)
        rows.append(row)
        print(
            f"  {preset} {setting:>12s}  "
            + "   ".join(f"{k} {row[k]:6.2f} ms" for k in candidates)
            + f"   eager/served {row['same ops, eager'] / row['served graph']:4.1f}x",
            flush=True,
        )
    w.close()
    return rows


def trace_modes(n: int, rounds: int) -> list[dict[str, Any]]:
    """Per setting: one graph per outport (any size, the default) against one graph per setting.

    Both called bare on the same inputs in alternating blocks (ABBA); the ratio is the median of
    the block pairs' ratios. Also the number of ops in each traced graph.
    """
    from workloads.approxnet import ApproxNetOptions, ApproxNetWorkload
    from workloads.approxnet.spec import parse_setting

    w = ApproxNetWorkload(ApproxNetOptions())
    w.load()
    assert w.net is not None  # load() builds it
    rows = []
    for setting in w.settings():
        size, exit_number = parse_setting(setting)
        w.select(setting)
        inputs = [s[0] for s in w.samples()]
        fns = {"per_exit": w.net.function(None, exit_number), "per_setting": w.net.function(size, exit_number)}
        for fn in fns.values():
            for x in inputs[:5]:
                fn(x).numpy()
        per_exit, per_setting, ratios = paired_blocks(
            partial(time_calls, _fetching(fns["per_exit"]), inputs, n),
            partial(time_calls, _fetching(fns["per_setting"]), inputs, n),
            rounds,
        )
        ops = {k: len(f.graph.get_operations()) for k, f in fns.items()}
        row = {
            "setting": setting,
            "ratio": statistics.median(ratios),
            "per_exit_ms": _median_ms(per_exit),
            "per_setting_ms": _median_ms(per_setting),
            "ops": ops,
        }
        rows.append(row)
        print(
            f"  {setting:>12s}  per_exit {row['per_exit_ms']:6.2f} ms ({ops['per_exit']} ops)   per_setting "
            f"{row['per_setting_ms']:6.2f} ms ({ops['per_setting']} ops)   ratio {row['ratio']:5.3f} "
            f"(rounds {min(ratios):.2f}-{max(ratios):.2f})",
            flush=True,
        )
    w.close()
    return rows


# -- memory: one fresh process per configuration -------------------------------------------

#: The shipped, trained networks and the same networks 4x as wide (ResNet-18's parameter count for
#: ApproxNet), untrained: resident memory does not depend on the weights' values.
SCALES: dict[str, dict[str, dict[str, Any]]] = {
    "shipped": {"approxnet": {}, "mcdnn": {}},
    "wide": {
        "approxnet": {"variant": "wide", "weights": "random"},
        "mcdnn": {"variant": "wide", "small_weights": "random", "full_weights": "random"},
    },
}
SCALE_NOTES = {
    "shipped": "the trained networks the main job runs (weights of a few MB: TF's own state dominates)",
    "wide": "every layer 4x as wide, untrained (ApproxNet has ResNet-18's parameter count)",
}

#: "no model" is the floor: what every configuration's process holds before any model exists.
MEMORY_CONFIGS: dict[str, dict[str, Any]] = {
    "no model (TF running, frames made)": {"kind": "none", "options": {}, "settings": []},
    "approxnet, all settings warm": {"kind": "approxnet", "options": {}, "settings": "all"},
    "approxnet per_setting graphs, all warm": {
        "kind": "approxnet",
        "options": {"trace": "per_setting"},
        "settings": "all",
    },
    "approxnet mixed (LL, MM, HH)": {"kind": "approxnet", "options": {}, "settings": ["LL", "MM", "HH"]},
    "approxnet mixed, per_setting graphs": {
        "kind": "approxnet",
        "options": {"trace": "per_setting"},
        "settings": ["LL", "MM", "HH"],
    },
    "approxnet, LL only": {"kind": "approxnet", "options": {}, "settings": ["LL"]},
    "approxnet, HH only": {"kind": "approxnet", "options": {}, "settings": ["HH"]},
    "mcdnn all (both resident)": {"kind": "mcdnn", "options": {"memory": "all"}, "settings": "all"},
    "mcdnn replace (small, then full)": {
        "kind": "mcdnn",
        "options": {"memory": "replace"},
        "settings": ["small", "full"],
    },
    "mcdnn small only": {"kind": "mcdnn", "options": {"memory": "replace"}, "settings": ["small"]},
    "mcdnn full only": {"kind": "mcdnn", "options": {"memory": "replace"}, "settings": ["full"]},
}


def start_without_model() -> Any:
    """Everything a TF workload's process does besides its model: the floor of the memory table.

    TensorFlow's runtime started with the workloads' thread settings, the sample frames made, and
    one small compiled graph of the op kinds the networks use run once (so the runtime's first-use
    state and the kernels' code are resident, as they are in every configuration).
    """
    from workloads.nn.data import sample_frames
    from workloads.nn.tfstart import start_tensorflow, warm_runtime

    start_tensorflow(2, 1)
    frames = sample_frames(0, 64)  # kept, as the workloads keep theirs (their default n_samples)
    warm_runtime()
    return frames


def memory_child(scale: str, name: str) -> None:
    """Runs in a fresh process: print one JSON line of RSS milestones for configuration ``name``."""
    import psutil

    cfg = MEMORY_CONFIGS[name]
    proc = psutil.Process()

    def rss() -> float:
        return proc.memory_info().rss / MIB

    import tensorflow  # noqa: F401

    from workloads import get_workload_class

    if cfg["kind"] == "none":
        base = rss()
        kept = start_without_model()  # noqa: F841 (held until the measurement is printed)
        print(json.dumps({"base": base, "load": rss(), "warm": rss(), "peak": rss(), "inputs": 0.0, "params": 0}))
        return
    cls = get_workload_class(cfg["kind"])
    # Any: ApproxNet's and MCDNN's own attributes (net, resident, input_bytes) are read below, by kind
    w: Any = cls(cls.Options.model_validate({**SCALES[scale][cfg["kind"]], **cfg["options"]}))
    base = rss()
    w.load()
    after_load = rss()
    settings = w.settings() if cfg["settings"] == "all" else [w.resolve(s) for s in cfg["settings"]]
    peak = after_load
    for setting in settings:
        w.select(setting)
        samples = w.samples()
        for i in range(10):
            w.infer(samples[i % len(samples)])
            peak = max(peak, rss())
    inputs = w.input_bytes() / MIB
    params = sum(r.net.param_count() for r in w.resident.values()) if cfg["kind"] == "mcdnn" else w.net.param_count()
    print(
        json.dumps({"base": base, "load": after_load, "warm": rss(), "peak": peak, "inputs": inputs, "params": params})
    )


def _run_child(scale: str, name: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", scale, name],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_table(scale: str, repeats: int) -> dict[str, list[dict[str, float]]]:
    """Every configuration ``repeats`` times, each in a fresh process, interleaved so drift spreads evenly.

    Each run's *model* memory subtracts the no-model floor measured in the same round.
    """
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in MEMORY_CONFIGS}
    floor_name = next(n for n, c in MEMORY_CONFIGS.items() if c["kind"] == "none")
    for _ in range(repeats):
        floor = _run_child(scale, floor_name)
        floor_growth = floor["warm"] - floor["base"]
        for name in MEMORY_CONFIGS:
            r = floor if name == floor_name else _run_child(scale, name)
            r["model"] = r["warm"] - r["base"] - r["inputs"] - floor_growth
            runs[name].append(r)
        print(".", end="", flush=True)
    print()
    head = ("configuration", "TF", "load", "warm", "input", "model (range)", "total")
    print("  {:<40s} {:>5s}   {:>6s}   {:>6s}   {:>5s}   {:>15s}   {:>5s}".format(*head))
    for name, rs in runs.items():

        def med(key: str, rs: list[dict[str, float]] = rs) -> float:
            return statistics.median(r[key] for r in rs)

        models = [r["model"] for r in rs]
        print(
            f"  {name:<40s} {med('base'):5.0f}   +{med('load') - med('base'):5.1f}   +{med('warm') - med('base'):5.1f}"
            f"   {med('inputs'):5.1f}   {med('model'):6.1f} ({min(models):5.1f}-{max(models):5.1f})"
            f"   {med('warm'):5.0f}",
            flush=True,
        )
    return runs


def _ratios(runs: dict[str, list[dict[str, float]]], num: str, den: str, key: str) -> list[float]:
    """Per round, ``key`` of configuration ``num`` / the same of ``den`` (rounds pair processes run close in time)."""
    return [a[key] / m[key] for a, m in zip(runs[num], runs[den], strict=True)]


def memory_comparison(scale: str, repeats: int) -> dict[str, Any]:
    """Section 3 at one scale: the table, then ApproxNet all warm / MCDNN all against the target."""
    runs = memory_table(scale, repeats)
    approx, mcdnn = "approxnet, all settings warm", "mcdnn all (both resident)"
    for r in (*runs[approx], *runs[mcdnn]):
        r["growth"], r["total"] = r["warm"] - r["base"], r["warm"]
    model = _ratios(runs, approx, mcdnn, "model")
    per_setting = _ratios(runs, "approxnet per_setting graphs, all warm", mcdnn, "model")
    growth = _ratios(runs, approx, mcdnn, "growth")
    total = _ratios(runs, approx, mcdnn, "total")
    params_a, params_m = runs[approx][0]["params"] * 4 / MIB, runs[mcdnn][0]["params"] * 4 / MIB
    worst = max(model)
    print(
        f"  float32 parameters: approxnet {params_a:.1f} MiB, mcdnn all {params_m:.1f} MiB "
        f"(ratio {params_a / params_m:.2f})\n"
        f"  approxnet all warm / mcdnn all, model memory: median {statistics.median(model):.2f}, "
        f"worst of {repeats} {worst:.2f}: {'PASS' if worst <= 0.6 else 'FAIL'} (target <= 0.6)\n"
        f"  the same with trace: per_setting {statistics.median(per_setting):.2f}; growth over the TF import "
        f"{statistics.median(growth):.2f}; whole-process RSS {statistics.median(total):.2f}",
        flush=True,
    )
    return {
        "runs": runs,
        "model_ratio": model,
        "per_setting_model_ratio": per_setting,
        "growth_ratio": growth,
        "rss_ratio": total,
    }


def _sections(text: str) -> str:
    if not text or set(text) - set("1234"):
        raise argparse.ArgumentTypeError(f"sections are digits 1-4, e.g. 13: {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40, help="timed inferences per block (default 40)")
    p.add_argument("--rounds", type=int, default=6, help="harness/bare block pairs per setting, ABBA (default 6)")
    p.add_argument("--quick", action="store_true", help="presets only for the harness ratio")
    p.add_argument(
        "--sections",
        default="1234",
        type=_sections,
        help="which sections to run, e.g. 4 for memory only (default 1234)",
    )
    p.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per memory configuration (3)")
    p.add_argument("--json", type=Path, help="also write all numbers to this file")
    p.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0

    import tensorflow as tf

    from workloads.nn.tfstart import configure_threads

    tf_config = configure_threads(2, 1)
    print(
        f"TensorFlow {tf.__version__}, intra-op {tf_config['intra_op_threads']}, inter-op "
        f"{tf_config['inter_op_threads']}, {os.cpu_count()} CPUs"
    )
    results: dict[str, Any] = {"tf": tf_config}
    if "1" in args.sections:
        print("\n1. latency through the harness / the same compiled function bare (target <= 1.1)")
        ratios = harness_vs_bare(args.n, args.rounds, ["LL", "MM", "HH"] if args.quick else None)
        worst = max(r["ratio"] for r in ratios)
        print(f"  worst ratio {worst:.3f}: {'PASS' if worst <= 1.1 else 'FAIL'} (target <= 1.1)")
        by = {r["setting"]: r["harness_ms"] for r in ratios}
        print(
            f"  LL {by.get('128px/exit1', by.get('LL', float('nan'))):.2f} ms vs HH "
            f"{by.get('224px/exit3', by.get('HH', float('nan'))):.2f} ms"
        )
        results["harness"] = ratios
    if "2" in args.sections:
        print("\n2. compiled vs eager (median ms per inference)")
        results["eager"] = compiled_vs_eager(args.n)
    if "3" in args.sections:
        print("\n3. trace modes: one graph per outport (default) / one graph per setting, median ms")
        modes = trace_modes(args.n, args.rounds)
        print(
            f"  per_exit / per_setting latency: {min(r['ratio'] for r in modes):.2f}-"
            f"{max(r['ratio'] for r in modes):.2f} over the settings (memory: section 4)"
        )
        results["trace_modes"] = modes
    if "4" in args.sections:
        print("\n4. resident memory (RSS, MiB; each configuration in a fresh process)")
        print("  (TF: RSS after importing TensorFlow; load/warm: growth over it after load() and after every")
        print("   setting ran; input: prepared input tensors; model: warm - input - the no-model row's warm,")
        print("   what the process holds because of its models; total: whole process)")
        results["memory"] = {}
        for scale in SCALES:
            print(f"\n  {scale}: {SCALE_NOTES[scale]}")
            results["memory"][scale] = memory_comparison(scale, args.memory_repeats)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
