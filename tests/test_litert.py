"""ApproxNet and MCDNN on LiteRT: export, serving, agreement with TensorFlow, stale and foreign files.

Nothing is mocked: every model is converted by TensorFlow's converter and run by the LiteRT
interpreter. Each test gets its own export cache (``BUBBLEUP_CACHE_DIR``); the shipped-weights
export is made once per module, as it is the slow part.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, run_cli
from pydantic import ValidationError

from workloads.approxnet import ApproxNetOptions, ApproxNetWorkload, litert_plan
from workloads.nn import litert_files

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others

TINY = {"variant": "tiny", "weights": "random", "sizes": [64, 96], "n_samples": 4}

#: float32 LiteRT vs TensorFlow logits: |lite - tf| <= ATOL + RTOL * |tf| (XNNPACK's kernels sum in another
#: order; measured 3e-5 at most on the shipped weights, logits up to 8).
ATOL, RTOL = 1e-4, 1e-4


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(litert_files.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def shipped_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export cache holding the shipped ApproxNet weights' float32 LiteRT model, made by the CLI."""
    root = tmp_path_factory.mktemp("litert-cache")
    done = _export({}, root)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export cache holding the tiny untrained ApproxNet's float32 model; tests copy it before changing it."""
    root = tmp_path_factory.mktemp("litert-tiny")
    done = _export(TINY, root)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


@pytest.fixture
def tiny_copy(tiny_cache: Path, cache: Path) -> Path:
    shutil.copytree(tiny_cache, cache)
    return cache


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _export(options: dict, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["export", "approxnet", "--runtime", "litert", "--options", json.dumps(options), *extra], ROOT,
                   timeout=300, env={**_env(), litert_files.CACHE_ENV: str(cache)})  # fmt: skip


# -- cheap: no TensorFlow ------------------------------------------------------------------------

_WITHOUT_LITERT = """
import importlib.abc, json, sys

class NoLiteRT(importlib.abc.MetaPathFinder):  # as if ai-edge-litert were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "ai_edge_litert" or name.startswith("ai_edge_litert."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoLiteRT())
from pydantic import ValidationError
from workloads.approxnet import ApproxNetOptions
from workloads.mcdnn import McdnnOptions
out = []
for cls in (ApproxNetOptions, McdnnOptions):
    try:
        cls(runtime="litert")
        out.append("accepted")
    except ValidationError as exc:
        out.append(exc.errors()[0]["msg"])
print(json.dumps(out))
"""


def test_without_the_package_runtime_litert_names_the_extra() -> None:
    out = subprocess.run([sys.executable, "-c", _WITHOUT_LITERT], capture_output=True, text=True, check=True,
                         cwd=ROOT, timeout=60)  # fmt: skip
    messages = json.loads(out.stdout)
    assert len(messages) == 2
    for msg in messages:
        assert "pip install 'bubbleup[litert]'" in msg and "ai-edge-litert" in msg


def test_litert_options_are_checked_when_the_scenario_is_read(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="runtime: litert only"):
        ApproxNetOptions(quantize="int8")
    with pytest.raises(ValidationError, match="quantize"):
        ApproxNetOptions(runtime="litert", quantize="int4")
    assert ApproxNetOptions(runtime="litert", threads=3).intra_op_threads == 3  # threads is the same field
    with pytest.raises(ValidationError, match="threads: it and intra_op_threads are one setting"):
        ApproxNetOptions(threads=1, intra_op_threads=2)  # was "threads: unknown key", of a documented name
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "x", "workload": {"kind": "approxnet", "settings": ["LL"],
                                  "options": {**TINY, "runtime": "litert", "model_file": str(tmp_path / "no.tflite")}},
        "sweep": {"axis": "count", "values": [0]},
    }))  # fmt: skip
    done = run_cli(["validate", str(scenario)], ROOT)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no.tflite" in lines[0] and "does not exist" in lines[0], done.stderr
    assert (str(scenario) in lines[0] and "model_file" in lines[0]) or "options" in lines[0]


@pytest.mark.parametrize(
    ("options", "says"),
    [('{"variant": "huge"}', "options.variant: Input should be"), ("[1", "--options is not a JSON object"),
     ('{"trace": "per_exit", "model_file": "/nonexistent.tflite"}', "does not exist")],
)  # fmt: skip
def test_export_refuses_bad_options_in_one_line(options: str, says: str, cache: Path) -> None:
    done = run_cli(["export", "approxnet", "--runtime", "litert", "--options", options], ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert not cache.exists()  # nothing was exported


@pytest.mark.parametrize(("argv", "says"), [
    (["export", "synthetic", "--runtime", "litert"], "invalid choice: 'synthetic'"),
    (["export", "approxnet"], "required: --runtime"),
    (["export", "approxnet", "--runtime", "litert", "--quantize", "int4"], "invalid choice: 'int4'"),
    (["train", "approxnet", "--variant", "huge"], "invalid choice: 'huge'"),
])  # fmt: skip
def test_export_and_train_refuse_bad_arguments_in_one_line(argv: list[str], says: str) -> None:
    """They parse their own arguments (the workloads' parsers), in the command line's one-line style."""
    done = run_cli(argv, ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert "usage:" not in done.stderr


# -- TensorFlow and LiteRT ------------------------------------------------------------------------


@pytest.mark.slow
def test_an_export_records_what_it_was_made_from(tiny_copy: Path) -> None:
    (req, _, settings), = litert_plan(ApproxNetOptions(**TINY, runtime="litert"))  # fmt: skip
    path = litert_files.model_path(req)
    meta = litert_files.read_sidecar(path)
    assert meta is not None
    assert meta["weights"] == "random:seed=0" and meta["quantize"] == "none"
    assert meta["model_sha256"] == litert_files.file_sha256(path)
    assert sorted(meta["signatures"]) == ["exit1", "exit2", "exit3"]
    assert meta["signatures"]["exit2"]["input"] == [1, None, None, 3]  # any input size
    assert sorted(meta["check"]["settings"]) == sorted(settings)
    assert litert_files.why_unfit(path, req) is None
    for size in TINY["sizes"]:
        assert litert_files.inputs_path(0, TINY["n_samples"], size).is_file()


_SERVE_WITHOUT_TF = """
import json, sys
from workloads.approxnet import ApproxNetOptions, ApproxNetWorkload
w = ApproxNetWorkload(ApproxNetOptions(**json.loads(sys.argv[1])))
w.load()
out = {}
for setting in w.settings():
    w.select(setting)
    r = w.infer(w.samples()[0])
    out[setting] = r["pred"]
print(json.dumps({"preds": out, "tensorflow": "tensorflow" in sys.modules, "meta": w.metadata()}))
"""


@pytest.mark.slow
def test_litert_serving_process_never_imports_tensorflow_and_records_its_runtime(cache: Path) -> None:
    options = {**TINY, "runtime": "litert", "threads": 1}
    env = {**_env(), litert_files.CACHE_ENV: str(cache)}
    argv = [sys.executable, "-c", _SERVE_WITHOUT_TF, json.dumps(options)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["tensorflow"] is False  # the export ran in a subprocess; serving is LiteRT alone
    assert len(out["preds"]) == 6 and all(0 <= p < 10 for p in out["preds"].values())
    rt = out["meta"]["runtime"]
    assert rt["name"] == "litert" and rt["package"] == "ai-edge-litert" and rt["version"]
    assert rt["threads"] == 1 and "XNNPACK" in rt["delegate"]
    assert rt["exported_now"] and "does not exist" in rt["exported_now"]  # first use: exported, and why
    assert rt["models"]["approxnet"]["quantize"] == "none"
    assert out["meta"]["framework_rss_mb"] > 0 and "export" in out["meta"]["load_phases_s"]


@pytest.mark.slow
def test_a_stale_cached_model_is_rebuilt_byte_for_byte(tiny_copy: Path) -> None:
    """The rebuild is a second conversion in another process: equal bytes show the export is deterministic."""
    (req, _, _), = litert_plan(ApproxNetOptions(**TINY, runtime="litert"))  # fmt: skip
    path = litert_files.model_path(req)
    good = path.read_bytes()
    path.write_bytes(good[:-8] + b"tampered")  # changed after export: its sidecar's sha256 no longer matches
    assert "sha256" in (litert_files.why_unfit(path, req) or "")
    w = ApproxNetWorkload(ApproxNetOptions(**TINY, runtime="litert"))
    w.load()
    assert "sha256" in w.metadata()["runtime"]["exported_now"]
    assert path.read_bytes() == good  # rebuilt, byte for byte what the weights make
    w.close()
    assert ApproxNetOptions(**TINY, runtime="litert", model_file=str(path)).model_file == str(path)
    # a file exported from other weights (another seed's untrained net) is refused as model_file
    with pytest.raises(
        ValidationError, match=r"model_file: .* was made from weights 'random:seed=0', not 'random:seed=1'"
    ):
        ApproxNetOptions(**{**TINY, "seed": 1}, runtime="litert", model_file=str(path))


@pytest.mark.slow
def test_litert_float32_matches_tensorflow_on_every_setting(
    shipped_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shipped weights, every setting, the first 16 of the 64 sample frames (never trained on; every one of them
    once cost 14 s) served here, and the export's own check on 128 held-out clips: logits within tolerance, top-1
    agreeing on >= 99%, the same accuracy records."""
    monkeypatch.setenv(litert_files.CACHE_ENV, str(shipped_cache))
    lite = ApproxNetWorkload(ApproxNetOptions(runtime="litert"))
    tf_w = ApproxNetWorkload(ApproxNetOptions())
    lite.load()
    tf_w.load()
    assert lite.metadata()["runtime"]["exported_now"] is None  # the module's export is what serves
    for setting in tf_w.settings():
        lite.select(setting)
        tf_w.select(setting)
        xs_lite, xs_tf = lite.samples(), tf_w.samples()
        assert [y for _, y in xs_lite] == [y for _, y in xs_tf]
        agree = 0
        for (x_lite, _), (x_tf, _) in zip(xs_lite[:16], xs_tf[:16], strict=True):
            assert np.array_equal(x_lite, x_tf.numpy())  # identical inputs: the export wrote the TF path's own
            a = lite.served_function(setting)(x_lite)
            b = tf_w.served_function(setting)(x_tf).numpy()
            assert np.all(np.abs(a - b) <= ATOL + RTOL * np.abs(b)), (setting, float(np.abs(a - b).max()))
            agree += int(a.argmax() == b.argmax())
        assert agree >= 0.99 * 16, (setting, agree)
        assert lite.infer(xs_lite[0]) == tf_w.infer(xs_tf[0])  # the same accuracy record
    (req, _, _), = litert_plan(ApproxNetOptions(runtime="litert"))  # fmt: skip
    check = (litert_files.read_sidecar(litert_files.model_path(req)) or {})["check"]
    assert check["heldout_clips"] == 128 and len(check["settings"]) == 12
    for c in check["settings"].values():
        assert c["top1_agreement"] >= 0.99 and c["max_abs_logit_diff"] <= ATOL + RTOL * c["max_abs_logit"]
        assert c["litert_top1"] == pytest.approx(c["tensorflow_top1"], abs=0.01)
    lite.close()
    tf_w.close()


@pytest.mark.slow
def test_a_quantised_export_records_the_accuracy_it_gives_up(tiny_copy: Path) -> None:
    done = _export(TINY, tiny_copy, "--quantize", "int8")
    assert done.returncode == 0, done.stderr[-2000:]
    (req, _, settings), = litert_plan(ApproxNetOptions(**TINY, runtime="litert", quantize="int8"))  # fmt: skip
    meta = litert_files.read_sidecar(litert_files.model_path(req))
    assert meta is not None and meta["quantize"] == "int8"
    float_path = litert_files.model_path(
        litert_files.ModelRequest(req.kind, req.model, req.network, req.weights, "none")
    )
    float_meta = litert_files.read_sidecar(float_path)
    assert float_meta is not None and float_path != litert_files.model_path(req)
    for setting in settings:
        c, f = meta["check"]["settings"][setting], float_meta["check"]["settings"][setting]
        assert c["tensorflow_top1"] == f["tensorflow_top1"]  # the same reference, so the loss is int8's
        assert 0 <= c["litert_top1"] <= 1
        assert c["max_abs_logit_diff"] > 100 * f["max_abs_logit_diff"]  # int8 kernels do not reproduce float logits
    assert meta["bytes"] < 0.5 * float_meta["bytes"]  # int8 weights: a quarter of float32's, plus graph
    assert "int8" in done.stdout and "top-1 TF" in done.stdout
    with pytest.raises(
        ValidationError, match="was made from quantize 'int8', not 'none'"
    ):  # a variant is not the model
        ApproxNetOptions(**TINY, runtime="litert", model_file=str(litert_files.model_path(req)))


@pytest.mark.slow
def test_mcdnn_on_litert_serves_every_setting_and_swaps_models(cache: Path) -> None:
    from workloads.mcdnn import McdnnOptions, McdnnWorkload

    opts = {"variant": "tiny", "small_weights": "random", "full_weights": "random", "n_samples": 4}
    lite = McdnnWorkload(McdnnOptions(**opts, memory="replace", runtime="litert", threshold=0.99))
    tf_w = McdnnWorkload(McdnnOptions(**opts, memory="replace", threshold=0.99))
    lite.load()
    tf_w.load()
    assert set(lite.metadata()["runtime"]["models"]) == {"small", "full"}
    for setting in ("small", "cascade", "full"):
        lite.select(setting)
        tf_w.select(setting)
        a = [lite.infer(s) for s in lite.samples()]
        b = [tf_w.infer(s) for s in tf_w.samples()]
        assert a == b, setting  # answers, which model gave them, first uses and swaps: all as under TensorFlow
    assert lite.metadata()["model_loads_so_far"] == tf_w.metadata()["model_loads_so_far"]  # replace mode swaps alike
    lite.close()
    tf_w.close()


@pytest.mark.slow
def test_a_litert_run_records_its_runtime_in_the_manifest(tiny_copy: Path, tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "litert-run",
        "workload": {"kind": "approxnet", "settings": ["LL", "HH"], "inferences_per_setting": 5, "warmup": 1,
                     "options": {**TINY, "runtime": "litert", "threads": 1}},
        "sweep": {"axis": "count", "values": [0], "repeats": 1, "settle_s": 0},
    }))  # fmt: skip
    env = {**_env(), litert_files.CACHE_ENV: str(tiny_copy)}
    done = run_cli(["run", str(scenario), "--out", str(tmp_path / "run"), "--no-report", "-q"], ROOT, timeout=300,
                   env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (meta,) = manifest["workload_metadata"].values()
    rt = meta["runtime"]
    assert rt["name"] == "litert" and rt["threads"] == 1 and rt["version"] and rt["exported_now"] is None
    with (tmp_path / "run" / "samples.csv").open() as f:
        timed = [r for r in csv.DictReader(f) if r["phase"] == "timed"]
    for setting in ("64px/exit1", "96px/exit3"):  # LL and HH of the tiny grid, each timed at least 5 times
        rows = [r for r in timed if r["setting"] == setting]
        assert len(rows) >= 5 and all(json.loads(r["info"])["pred"] in range(10) for r in rows)
