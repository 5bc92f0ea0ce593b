"""ApproxNet serving benchmark: harness overhead, compiled vs eager, and memory against MCDNN.

    python benchmarks/bench_approxnet.py [--n 40] [--rounds 6] [--quick]

Prints, from one run:

1. Per setting: median latency through the harness (``bubbleup.worker.Runner.step``, the
   code that times every inference in a real run) divided by the median of the same compiled
   function called bare in a loop, in block pairs alternating ABBA; the ratio is the median of
   the pairs' ratios, so the machine's drift between blocks cancels. Target <= 1.1.
2. Per preset: the served graph (folded batch norm, ``tf.function``) against the same ops run
   eagerly, and against the Keras training model (unfolded batch norm) compiled and eager.
3. Memory, each configuration in a fresh process: RSS after importing TensorFlow, after
   ``load()``, and after every setting has run (warm). The comparison uses the growth over the
   post-import baseline (what the models cost; TensorFlow itself is ~550 MB in both), and shows
   totals too. Target: ApproxNet with every setting warm <= 0.6 x MCDNN with both models resident.

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


def harness_vs_bare(n: int, rounds: int, settings: list[str] | None) -> list[dict[str, Any]]:
    """Per setting, median latency via the worker's Runner and via a bare loop over the same function."""
    from bubbleup.worker import Runner
    from workloads.approxnet import ApproxNetOptions, ApproxNetWorkload
    from workloads.approxnet.spec import parse_setting

    w = ApproxNetWorkload(ApproxNetOptions())
    w.load()
    runner = Runner(w)
    rows = []
    perf = time.perf_counter_ns
    for setting in settings or w.settings():
        size, exit_number = parse_setting(w.resolve(setting))
        first = runner.step(setting, warmup=0, n=1)  # first use: trace + graph optimisation
        runner.step(setting, warmup=5, n=1)
        fn = w.net.function(size, exit_number)  # the very function the workload calls
        inputs = [s[0] for s in w.samples()]
        harness: list[int] = []
        bare: list[int] = []
        round_ratios = []
        for r in range(rounds):
            h_block: list[int] = []
            b_block: list[int] = []
            for which in ("harness", "bare") if r % 2 == 0 else ("bare", "harness"):  # ABBA against drift
                if which == "harness":
                    h_block = [round(ms * 1e6) for ms in runner.step(setting, warmup=0, n=n).latencies()]
                    continue
                for i in range(n):
                    x = inputs[i % len(inputs)]
                    t0 = perf()
                    fn(x)
                    b_block.append(perf() - t0)
            harness += h_block
            bare += b_block
            round_ratios.append(statistics.median(h_block) / statistics.median(b_block))
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
    from workloads.approxnet.trainable import TrainNet

    w = ApproxNetWorkload(ApproxNetOptions())
    w.load()
    keras_net = TrainNet(w.net.spec)  # same architecture, Keras layers (batch norm not folded); values irrelevant
    keras_net.build_all()
    rows = []
    for preset, setting in w.presets().items():
        size, exit_number = parse_setting(setting)
        x = tf.random.normal([1, size, size, 3])
        served = w.net.function(size, exit_number)
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


# -- memory: one fresh process per configuration -------------------------------------------

MEMORY_CONFIGS: dict[str, dict[str, Any]] = {
    "approxnet, all settings warm": {"kind": "approxnet", "options": {}, "settings": "all"},
    "approxnet per_exit graphs, all warm": {"kind": "approxnet", "options": {"trace": "per_exit"}, "settings": "all"},
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


def memory_child(name: str) -> None:
    """Runs in a fresh process: print one JSON line of RSS milestones for configuration ``name``."""
    import psutil

    cfg = MEMORY_CONFIGS[name]
    proc = psutil.Process()

    def rss() -> float:
        return proc.memory_info().rss / MIB

    import tensorflow  # noqa: F401

    from workloads import get_workload_class

    cls = get_workload_class(cfg["kind"])
    w = cls(cls.Options.model_validate(cfg["options"]))
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
    print(json.dumps({"base": base, "load": after_load, "warm": rss(), "peak": peak, "inputs": inputs}))


def memory_table() -> dict[str, dict[str, float]]:
    head = ("configuration", "TF", "load", "warm", "input", "model", "total")
    print("  {:<36s} {:>5s}   {:>6s}   {:>6s}   {:>5s}   {:>6s}   {:>5s}".format(*head))
    results = {}
    for name in MEMORY_CONFIGS:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", name],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[name] = r
        print(
            f"  {name:<36s} {r['base']:5.0f}   +{r['load'] - r['base']:5.1f}   +{r['warm'] - r['base']:5.1f}"
            f"   {r['inputs']:5.1f}   +{r['warm'] - r['base'] - r['inputs']:5.1f}   {r['warm']:5.0f}",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=40, help="timed inferences per block (default 40)")
    p.add_argument("--rounds", type=int, default=6, help="harness/bare block pairs per setting, ABBA (default 6)")
    p.add_argument("--quick", action="store_true", help="presets only for the harness ratio")
    p.add_argument("--json", type=Path, help="also write all numbers to this file")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0

    import tensorflow as tf

    from workloads.approxnet.tfsetup import configure_threads

    tf_config = configure_threads(2, 1)
    print(
        f"TensorFlow {tf.__version__}, intra-op {tf_config['intra_op_threads']}, inter-op "
        f"{tf_config['inter_op_threads']}, {os.cpu_count()} CPUs"
    )
    print("\n1. latency through the harness / the same compiled function bare (target <= 1.1)")
    settings = ["LL", "MM", "HH"] if args.quick else None
    ratios = harness_vs_bare(args.n, args.rounds, settings)
    worst = max(r["ratio"] for r in ratios)
    print(f"  worst ratio {worst:.3f}: {'PASS' if worst <= 1.1 else 'FAIL'} (target <= 1.1)")
    by = {r["setting"]: r["harness_ms"] for r in ratios}
    print(
        f"  LL {by.get('128px/exit1', by.get('LL', float('nan'))):.2f} ms vs HH "
        f"{by.get('224px/exit3', by.get('HH', float('nan'))):.2f} ms"
    )

    print("\n2. compiled vs eager (median ms per inference)")
    eager = compiled_vs_eager(args.n)

    print("\n3. resident memory (RSS, MiB; each configuration in a fresh process)")
    mem = memory_table()
    a = mem["approxnet, all settings warm"]
    m = mem["mcdnn all (both resident)"]
    growth = (a["warm"] - a["base"]) / (m["warm"] - m["base"])
    model = (a["warm"] - a["base"] - a["inputs"]) / (m["warm"] - m["base"] - m["inputs"])
    print("  (TF: RSS after importing TensorFlow; load/warm: growth over it after load() and after every")
    print("   setting ran; input: prepared input tensors; model = warm - input; total: whole process)")
    print(
        f"  approxnet all warm / mcdnn all: growth {growth:.2f}, model {model:.2f} "
        f"({'PASS' if model <= 0.6 else 'FAIL'}, target <= 0.6); whole-process RSS {a['warm'] / m['warm']:.2f}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"tf": tf_config, "harness": ratios, "eager": eager, "memory": mem}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
