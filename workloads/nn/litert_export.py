"""``python -m bubbleup export KIND --runtime litert``: the shipped networks as LiteRT models, made here.

Conversion is TensorFlow's own converter, from the same inference graphs the TensorFlow path
serves (``ServingNet.forward``): ApproxNet becomes one file with a signature per outport whose
input is [1, any, any, 3] (the serving side resizes it per setting); each MCDNN model one file at
its input size. The bytes depend only on the weights, the quantisation and the converter's version
(a test converts twice and compares). Every export is checked on held-out clips: each setting's
top-1 under TensorFlow and under LiteRT, their agreement and the largest logit difference go into
the sidecar, so a quantised variant says what accuracy it gave up. The prepared inputs the LiteRT
workloads cycle through are written here too, by the TensorFlow preprocessing, so both runtimes
time identical tensors and the serving process needs no TensorFlow at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from workloads.nn import litert_files as files

#: Held-out clips every export is checked on (one frame each; the n of the sidecar's top-1 figures).
HELDOUT_CLIPS = 128
#: Training-split frames per input size that int8 calibration sees (never the held-out or sample clips).
CALIBRATION_FRAMES = 16


def _convert(net: Any, signatures: Mapping[str, tuple[int, int | None]], quantize: str,
             calibration: Callable[[], Iterator[Any]] | None) -> bytes:  # fmt: skip
    """LiteRT flatbuffer of ``net`` with one signature per entry: name -> (outport, input size or None = any)."""
    import tensorflow as tf

    module = tf.Module()
    module.vars = list(net.vars.values())
    concrete = {}
    for name, (exit_number, size) in signatures.items():
        fn = tf.function(lambda x, e=exit_number: {"logits": net.forward(x, e)})
        concrete[name] = fn.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32, name="image"))
    with tempfile.TemporaryDirectory() as saved:
        tf.saved_model.save(module, saved, signatures=concrete)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(concrete))
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":  # full-integer kernels, float input and output (the app's tensors stay float)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return bytes(converter.convert())


def _calibration(
    signatures: Mapping[str, tuple[int, int | None]], sizes: list[int], seed: int
) -> Callable[[], Iterator[Any]]:
    """int8 calibration samples: training-split frames at every input size, for every signature."""
    from workloads.nn.data import make_split
    from workloads.nn.serving import preprocess

    frames = make_split(seed, "train", CALIBRATION_FRAMES, 1).frames

    def samples() -> Iterator[Any]:
        for name, (_, fixed) in signatures.items():
            for size in [fixed] if fixed else sizes:
                for i in range(len(frames)):
                    yield name, {"image": preprocess(frames[i : i + 1], size).numpy()}

    return samples


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


Labels = Callable[[np.ndarray], np.ndarray]


def _check(
    blob: bytes, net: Any, settings: Mapping[str, tuple[str, int, int]], seed: int, labels_of: Labels
) -> dict[str, Any]:
    """Per setting (name -> signature, outport, size): TF vs LiteRT on held-out clips."""
    from workloads.nn.data import make_split
    from workloads.nn.litert_serving import interpreter_class
    from workloads.nn.serving import preprocess

    held = make_split(seed, "heldout", HELDOUT_CLIPS, 1)
    labels = labels_of(held.labels)
    interpreter = interpreter_class()[0](model_content=blob, num_threads=os.cpu_count() or 1)
    out: dict[str, Any] = {}
    refs: dict[int, tuple[Any, list[np.ndarray]]] = {}  # size -> (inputs, TF logits of every outport)
    for setting, (signature, exit_number, size) in settings.items():
        runner = interpreter.get_signature_runner(signature)
        if size not in refs:
            x = preprocess(held.frames, size)
            refs[size] = x.numpy(), net.predict_all(x)
        x, ref_all = refs[size]
        ref = ref_all[exit_number - 1]
        lite = np.concatenate([runner(image=x[i : i + 1])["logits"] for i in range(len(x))])
        out[setting] = {
            "tensorflow_top1": round(float((ref.argmax(1) == labels).mean()), 4),
            "litert_top1": round(float((lite.argmax(1) == labels).mean()), 4),
            "top1_agreement": round(float((ref.argmax(1) == lite.argmax(1)).mean()), 4),
            "max_abs_logit_diff": float(np.abs(ref - lite).max()),
            "max_abs_logit": float(np.abs(ref).max()),
        }
    return {"heldout_clips": HELDOUT_CLIPS, "settings": out}


def export_model(req: files.ModelRequest, net: Any, signatures: Mapping[str, tuple[int, int | None]],
                 settings: Mapping[str, tuple[str, int, int]], sizes: list[int], seed: int,
                 labels_of: Callable[[np.ndarray], np.ndarray], facts: Mapping[str, Any],
                 path: Path | None = None) -> Path:  # fmt: skip
    """Convert, check on held-out clips, and write ``path`` (default: the cache) with its sidecar."""
    import tensorflow as tf

    path = path or files.model_path(req)
    t0 = time.perf_counter()
    calibration = _calibration(signatures, sizes, seed) if req.quantize == "int8" else None
    blob = _convert(net, signatures, req.quantize, calibration)
    convert_s = time.perf_counter() - t0
    check = _check(blob, net, settings, seed, labels_of)
    _write_atomic(path, blob)
    meta = {
        **facts,
        "format": files.EXPORT_FORMAT,
        "kind": req.kind,
        "model": req.model,
        "network": req.network,
        "weights": req.weights,
        "quantize": req.quantize,
        "signatures": {
            k: {"outport": e, "input": [1, s, s, 3] if s else [1, None, None, 3]} for k, (e, s) in signatures.items()
        },
        "converter": f"tensorflow {tf.__version__} TFLiteConverter.from_saved_model",
        "convert_s": round(convert_s, 2),
        "bytes": len(blob),
        "model_sha256": files.file_sha256(path),
        "check": check,
    }
    _write_atomic(files.sidecar(path), (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    return path


def write_inputs(seed: int, n: int, sizes: list[int]) -> list[Path]:
    """The sample frames as the TF path prepares them, one file per size (skipped when already there)."""
    from workloads.nn.data import sample_frames
    from workloads.nn.serving import prepare_samples

    written, frames, labels = [], None, None
    for size in sizes:
        path = files.inputs_path(seed, n, size)
        if not path.is_file():
            if frames is None:
                frames, labels = sample_frames(seed, n)
            assert labels is not None
            x = np.concatenate([t.numpy() for t, _ in prepare_samples(frames, labels, size)])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, inputs=x, labels=np.asarray(labels, np.int32))
            os.replace(tmp, path)
        written.append(path)
    return written


def write_probe() -> Path:
    """The framework-floor probe (``litert_serving.warm_runtime``): tfstart's probe graph, as a LiteRT model."""
    import tensorflow as tf

    path = files.probe_path()
    if not path.is_file():
        w = tf.ones([3, 3, 3, 8])

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32, name="image")])
        def probe(x: tf.Tensor) -> dict[str, tf.Tensor]:
            y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 2, "SAME"), tf.zeros([8])))
            y = tf.nn.max_pool2d(y, 3, 2, "SAME")
            return {"logits": tf.matmul(tf.reduce_max(y, axis=[1, 2]), tf.ones([8, 10]))}

        converter = tf.lite.TFLiteConverter.from_concrete_functions([probe.get_concrete_function()], probe)
        _write_atomic(path, bytes(converter.convert()))
    return path


def export(kind: str, options: Mapping[str, Any], out_dir: Path | None = None) -> list[Path]:
    """Every model file and input file the workload ``kind`` with ``options`` serves under LiteRT."""
    from workloads.nn.tfstart import start_tensorflow

    start_tensorflow(1, 1)  # deterministic, and the export is not what is measured
    write_probe()
    if kind == "approxnet":
        from workloads.approxnet import ApproxNetOptions, litert_plan, load_net, weights_info

        a_opts = ApproxNetOptions.model_validate(options)
        net, weights_meta, weights_path = load_net(a_opts.weights, a_opts.variant, a_opts.seed)
        facts = weights_info(net, weights_meta, weights_path)
        (req, signatures, settings), = litert_plan(a_opts)  # fmt: skip
        paths = [export_model(req, net, signatures, settings, list(a_opts.sizes), a_opts.seed, lambda y: y,
                              {k: facts[k] for k in ("parameters", "weights_file", "heldout_top1") if k in facts},
                              None if out_dir is None else out_dir / files.model_path(req).name)]  # fmt: skip
        return paths + write_inputs(a_opts.seed, a_opts.n_samples, sorted(a_opts.sizes))
    if kind == "mcdnn":
        from workloads.mcdnn import McdnnOptions, build_model
        from workloads.mcdnn import litert_plan as mcdnn_plan
        from workloads.mcdnn.models import relabel_for_small

        m_opts = McdnnOptions.model_validate(options)
        paths, sizes = [], []
        for model, (req, signatures, settings) in mcdnn_plan(m_opts).items():
            net, weights_file = build_model(m_opts, model)
            facts = {"parameters": net.param_count(), "weights_file": str(weights_file or "random")}
            labels_of = relabel_for_small if model == "small" else (lambda y: y)
            size = next(iter(signatures.values()))[1]
            assert size is not None
            sizes.append(size)
            paths.append(export_model(req, net, signatures, settings, [size], m_opts.seed, labels_of, facts,
                                      None if out_dir is None else out_dir / files.model_path(req).name))  # fmt: skip
        return paths + write_inputs(m_opts.seed, m_opts.n_samples, sorted(set(sizes)))
    raise files.ExportError(f"export: workload {kind!r} has no LiteRT export (approxnet, mcdnn)")


def parser(cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``cls``: the command line's own parser class (bubbleup's says a bad argument in one line)."""
    p = cls(
        prog="bubbleup export",
        description="Convert a workload's networks to LiteRT models (cached; the workloads use them with "
        "options {runtime: litert}) and check them against TensorFlow on held-out clips.",
    )
    p.add_argument("kind", choices=["approxnet", "mcdnn"])
    p.add_argument("--runtime", choices=["litert"], required=True, help="the runtime to export for")
    p.add_argument("--options", default="{}", help="the workload's options as in a scenario, as JSON "
                   "(e.g. '{\"variant\": \"tiny\", \"weights\": \"random\"}')")  # fmt: skip
    p.add_argument("--quantize", choices=files.QUANTIZE, help="overrides the options' quantize")
    p.add_argument("-o", "--out", type=Path, help="write the model files here instead of the cache")
    return p


def main(argv: list[str] | None = None, parser_cls: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> int:
    from pydantic import ValidationError

    from workloads import MissingExtra, check_requirements, get_workload_class

    args = parser(parser_cls).parse_args(argv)
    try:
        options = dict(json.loads(args.options))
    except (ValueError, TypeError) as exc:
        print(f"error: export: --options is not a JSON object: {exc}", file=sys.stderr)
        return 2
    options["runtime"] = "litert"
    if args.quantize:
        options["quantize"] = args.quantize
    try:
        cls = get_workload_class(args.kind)
        check_requirements(cls)
        cls.Options.model_validate(options)
        paths = export(args.kind, options, args.out)
    except MissingExtra as exc:
        print(f"error: export: {exc.args[0]}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "options"
        print(f"error: export: options.{where}: {err['msg']}", file=sys.stderr)
        return 2
    except files.ExportError as exc:
        print(f"error: export: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        if path.suffix == ".tflite":
            meta = files.read_sidecar(path) or {}
            print(
                f"{path}  ({meta.get('bytes', 0) / 2**20:.1f} MiB, {meta.get('quantize')}, "
                f"converted in {meta.get('convert_s')} s)"
            )
            for setting, c in meta.get("check", {}).get("settings", {}).items():
                print(
                    f"  {setting:<14} top-1 TF {c['tensorflow_top1']:.3f}  LiteRT {c['litert_top1']:.3f}  "
                    f"agreement {c['top1_agreement']:.3f}  max |dlogit| {c['max_abs_logit_diff']:.2g}"
                )
        else:
            print(path)
    return 0
