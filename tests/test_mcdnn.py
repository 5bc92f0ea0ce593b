"""MCDNN workload: cascade decisions, fall-back, memory modes, shipped weights.

Models are real (tiny variant). To make the cascade's choice predictable, the small model's
classifier is set by hand (zero weights, chosen biases), so its answer and confidence are
known for every input while everything still runs through TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from workloads.mcdnn import McdnnOptions, McdnnWorkload
from workloads.mcdnn.models import TOP_K, VARIANTS, small_answers, top_classes

#: Nothing asserted here depends on the machine being quiet: tox runs this module beside another (pyproject.toml)
pytestmark = pytest.mark.beside_others

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "workloads" / "mcdnn" / "weights"


# -- cheap ----------------------------------------------------------------------------


def test_settings_presets_and_specialised_classes() -> None:
    w = McdnnWorkload(McdnnOptions())
    assert w.settings() == ["small", "cascade", "full"]
    assert w.presets() == {"LL": "small", "MM": "cascade", "HH": "full"}
    classes = top_classes()
    assert len(classes) == TOP_K and classes[0] == 0  # the most frequent class comes first


@pytest.mark.parametrize("bad", [{"memory": "some"}, {"threshold": 1.5}, {"n_samples": 0}, {"extra": True}])
def test_options_reject_bad_values(bad: dict) -> None:
    with pytest.raises(ValidationError):
        McdnnOptions(**bad)


def test_small_answers_fall_back_on_other_and_low_confidence() -> None:
    classes = (7, 3, 5, 1)
    logits = np.array(
        [
            [9.0, 0, 0, 0, 0],  # confident class rank 0 -> 7
            [0, 0, 0, 0, 9.0],  # confident "other" -> fall back
            [1.0, 0.9, 0, 0, 0],  # unsure -> fall back at 0.8
            [0, 0, 0, 9.0, 0],  # confident rank 3 -> 1
        ]
    )
    assert small_answers(logits, 0.8, classes).tolist() == [7, -1, -1, 1]
    assert small_answers(logits, 0.0, classes).tolist() == [7, -1, 7, 1]


def test_shipped_weights_are_small_and_report_accuracy() -> None:
    report = WEIGHTS / "cascade.json"
    files = [WEIGHTS / "small.npz", WEIGHTS / "full.npz"]
    assert report.is_file() and all(f.is_file() for f in files), "run: python -m bubbleup train mcdnn"
    assert sum(f.stat().st_size for f in files) < 6_000_000
    acc = json.loads(report.read_text())["heldout_top1"]
    assert acc["full"] > 0.5
    assert acc["cascade"]["0.80"]["top1"] > acc["small"]


# -- TensorFlow -------------------------------------------------------------------------


def _small_weights(tmp_path: Path, bias: list[float]) -> str:
    """A tiny small-model file whose answer is fixed by its output bias (the last layer's weights are 0)."""
    from workloads.nn.serving import random_params, save_params

    spec = VARIANTS["tiny"].small
    params = random_params(spec, 0)
    params["exit1/fc2/w"] = np.zeros_like(params["exit1/fc2/w"])
    params["exit1/fc2/b"] = np.asarray(bias, np.float32)
    path = tmp_path / f"small-{'_'.join(str(b) for b in bias)}.npz"
    save_params(path, spec, params, {"kind": "mcdnn", "model": "small"})
    return str(path)


def _workload(**kw: object) -> McdnnWorkload:
    opts = {"variant": "tiny", "small_weights": "random", "full_weights": "random", "n_samples": 3, **kw}
    return McdnnWorkload(McdnnOptions(**opts))


@pytest.mark.slow
@pytest.mark.parametrize("memory", ["all", "replace"])
def test_every_setting_runs(memory: str) -> None:
    w = _workload(memory=memory)
    w.load()
    try:
        for setting in w.settings():
            w.select(setting)
            for s in w.samples():
                info = w.infer(s)
                assert info is not None and info["model"] in ("small", "full")
                assert -1 <= info["pred"] < 10
        meta = w.metadata()
        assert meta["memory"] == memory and meta["tf_config"]["intra_op_threads"] == 2
    finally:
        w.close()


@pytest.mark.slow
def test_cascade_falls_back_exactly_when_expected(tmp_path: Path) -> None:
    cases = {
        "confident known class": ([0.0, 9.0, 0.0, 0.0, 0.0], False),
        "confident other": ([0.0, 0.0, 0.0, 0.0, 9.0], True),
        "unsure": ([1.0, 1.0, 0.0, 0.0, 0.0], True),
    }
    for name, (bias, expect_fallback) in cases.items():
        w = _workload(small_weights=_small_weights(tmp_path, bias), threshold=0.8)
        w.load()
        try:
            w.select("cascade")
            infos = [w.infer(s) for s in w.samples()]
            assert all(i["fell_back"] is expect_fallback for i in infos), name  # type: ignore[index]
            assert all(i["model"] == ("full" if expect_fallback else "small") for i in infos), name  # type: ignore[index]
            if not expect_fallback:
                assert all(i["pred"] == top_classes()[1] for i in infos)  # type: ignore[index]
        finally:
            w.close()


@pytest.mark.slow
def test_memory_modes_keep_the_right_models_resident(tmp_path: Path) -> None:
    w = _workload(memory="all")
    w.load()
    assert set(w.resident) == {"small", "full"}
    w.select("small")
    assert set(w.resident) == {"small", "full"}
    w.close()

    r = _workload(memory="replace", small_weights=_small_weights(tmp_path, [0.0, 0.0, 0.0, 0.0, 9.0]))
    r.load()
    try:
        assert r.resident == {}
        r.select("small")
        assert set(r.resident) == {"small"}
        first = r.infer(r.samples()[0])
        assert first["model_first_use"] and first["swaps"] == 0  # type: ignore[index]
        assert not r.infer(r.samples()[1])["model_first_use"]  # type: ignore[index]
        r.select("full")
        assert set(r.resident) == {"full"}
        r.select("cascade")  # starts with the small model; the small one always says "other"
        assert set(r.resident) == {"small"}
        infos = [r.infer(s) for s in r.samples()]
        assert set(r.resident) == {"full"}
        # every inference: (swap to small if needed), small says other, swap to full, full answers
        assert infos[0]["swaps"] == 1 and all(i["swaps"] == 2 for i in infos[1:])  # type: ignore[index]
        assert all(i["fell_back"] and i["model_first_use"] for i in infos)  # type: ignore[index]
        assert r.loads["small"] >= 3 and r.loads["full"] >= 3
    finally:
        r.close()


@pytest.mark.slow
def test_shipped_models_load_and_cascade_answers() -> None:
    w = McdnnWorkload(McdnnOptions(n_samples=48))  # 48 frames of as many held-out clips
    w.load()
    try:
        w.select("cascade")
        infos = [w.infer(s) for s in w.samples()]
        accuracy = sum(bool(i["correct"]) for i in infos) / len(infos)  # type: ignore[index]
        assert accuracy >= 0.6, accuracy  # held out: ~93% at threshold 0.8; chance is ~24%
        assert {i["model"] for i in infos} == {"small", "full"}  # type: ignore[index]  # both answer some
    finally:
        w.close()


@pytest.mark.slow
def test_wide_pair_runs_the_cascade_with_random_weights() -> None:
    w = McdnnWorkload(
        McdnnOptions(variant="wide", small_weights="random", full_weights="random", memory="all", n_samples=2)
    )
    w.load()
    try:
        sizes = {m: r.net.param_count() for m, r in w.resident.items()}
        pair = VARIANTS["wide"]
        assert pair.full.widths == tuple(4 * x for x in VARIANTS["default"].full.widths)
        assert sizes["full"] > 10 * sizes["small"] > 0
        w.select("cascade")
        for sample in w.samples():
            out = w.infer(sample)
            assert out is not None and out["model"] in ("small", "full")
    finally:
        w.close()


def test_missing_weights_are_reported_when_options_are_read(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"full_weights[\s\S]*no such file: .*absent\.npz"):
        McdnnOptions(variant="tiny", small_weights="random", full_weights=str(tmp_path / "absent.npz"))
