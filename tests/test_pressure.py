"""Pressure kinds: defaults, contradictions, mixing, and each kind delivering its target within 10%."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import smoke_dict

from bubbleup import cli
from bubbleup.errors import UserError
from bubbleup.machine.telemetry import core_share
from bubbleup.pressure.kinds import effective, llc_bytes
from bubbleup.pressure.pool import BubblePool
from bubbleup.scenario import BubbleSpec, scenario_from_dict

MIB = 1 << 20


@pytest.mark.beside_others  # input checks: nothing timed
def test_kind_defaults_are_filled_in() -> None:
    llc_mb = llc_bytes() // MIB
    assert llc_mb >= 1
    cpu, memory = effective(BubbleSpec(kind="cpu")), effective(BubbleSpec(kind="memory"))
    assert (cpu.size_mb, cpu.cpu_duty, cpu.pattern) == (0, 1.0, "none")
    assert (memory.size_mb, memory.cpu_duty, memory.pattern) == (256, 0.0, "none")
    assert effective(BubbleSpec(kind="bandwidth")).size_mb == max(64, 4 * llc_mb)
    assert effective(BubbleSpec(kind="cache", llc_fraction=0.5)).size_mb == max(1, round(0.5 * llc_mb))
    assert effective(effective(BubbleSpec(kind="cache"))) == effective(BubbleSpec(kind="cache"))  # idempotent


@pytest.mark.parametrize(
    ("bubble", "field", "words"),
    [
        ({"kind": "memory", "cpu_duty": 0.5}, "bubble.cpu_duty", "a memory bubble has cpu_duty 0.0"),
        ({"kind": "cpu", "size_mb": 64}, "bubble.size_mb", "a cpu bubble has size_mb 0"),
        ({"kind": "cache", "size_mb": 64}, "bubble.size_mb", "sized by llc_fraction"),
        ({"kind": "combined", "rate_mb_s": 100}, "bubble.rate_mb_s", "only a bandwidth bubble"),
        ({"kind": "bandwidth", "pattern": "random"}, "bubble.pattern", "a bandwidth bubble has pattern 'stream'"),
        ({"kind": "bandwidth", "rate_mb_s": 100, "backend": "stress-ng"}, "bubble.rate_mb_s", "stress-ng cannot"),
    ],
)
@pytest.mark.beside_others  # input checks: nothing timed
def test_contradictions_are_one_line_errors(tmp_path: Path, capsys, bubble: dict, field: str, words: str) -> None:
    import yaml

    file = tmp_path / "s.yaml"
    file.write_text(yaml.safe_dump(smoke_dict(bubble=bubble)))
    assert cli.main(["validate", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {file}: {field}: ") and words in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("bubble", "field", "words"),
    [
        ({"kind": "bandwidth", "rate_mb_s": 100}, "sweep.values", "a size of 0 has no region"),
        ({"backend": "stress-ng", "size_mb": 0, "cpu_duty": 0.5, "pattern": "stream"}, "bubble.cpu_duty",
         "stress-ng cannot duty-cycle a stream memory walk"),
    ],
)  # fmt: skip
@pytest.mark.beside_others  # input checks: nothing timed
def test_what_a_size_sweep_cannot_start_is_refused_before_it_runs(
    tmp_path: Path, capsys, bubble: dict, field: str, words: str
) -> None:
    """Each of these passed validation and then failed every repeat of a point: the rate-held bandwidth bubble
    at size 0 (nothing to walk), stress-ng's partial-duty walk at every size above the spec's own 0."""
    import yaml

    file = tmp_path / "s.yaml"
    file.write_text(yaml.safe_dump(smoke_dict(bubble=bubble, **{"sweep.axis": "size_mb", "sweep.values": [0, 16]})))
    assert cli.main(["validate", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {file}: {field}: ") and words in err and err.count("\n") == 1, err


def test_a_set_of_kinds_is_started_together_per_count() -> None:
    sc = scenario_from_dict(smoke_dict(bubble=None, bubbles=[{"kind": "cpu", "cpu_duty": 0.2},
                                                             {"kind": "memory", "size_mb": 32}],
                                       **{"sweep.values": [0, 2]}), "x")  # fmt: skip
    kinds = [spec.kind for spec, _ in sc.pressure_at(2)]
    assert kinds == ["cpu", "memory", "cpu", "memory"] and sc.peak_bubble_mb() == 64 + 4 * 32
    assert sc.points() == [(0, 32), (4, 32)]


def test_size_sweep_resizes_only_memory_kinds() -> None:
    sc = scenario_from_dict(smoke_dict(bubble=None, bubbles=[{"kind": "cpu"}, {"kind": "memory"}],
                                       sweep={"axis": "size_mb", "values": [0, 128], "count": 1}), "x")  # fmt: skip
    assert [(s.kind, size) for s, size in sc.pressure_at(128)] == [("cpu", 0), ("memory", 128)]
    with pytest.raises(UserError, match=r"sweep\.axis: a size_mb sweep needs a bubble kind that holds memory"):
        scenario_from_dict(smoke_dict(bubble={"kind": "cpu"}, sweep={"axis": "size_mb", "values": [1]}), "x")


def measure(spec: BubbleSpec, size: int, window_s: float = 2.0) -> tuple[float, float, dict]:
    """(region MiB resident, core share seen from outside, what the bubble says it delivered)."""
    with BubblePool.uniform(spec, 1, size) as pool:
        pool.start()
        pool.wait_ready(60)
        share = core_share(pool.pids()[0], window_s)
        region = pool.resident_mb
        delivered = pool.stop()[0]
    return region, share, delivered


def test_cpu_kind_holds_its_duty_within_10_percent() -> None:
    _, share, _ = measure(effective(BubbleSpec(kind="cpu", cpu_duty=0.6)), 0)
    assert abs(share - 0.6) <= 0.06, share


def test_memory_kind_is_resident_and_idle() -> None:
    spec = effective(BubbleSpec(kind="memory", size_mb=128))
    region, share, _ = measure(spec, spec.size_mb, window_s=1.0)
    assert abs(region - 128) <= 0.1 * 128 and share < 0.03


def test_bandwidth_kind_holds_its_rate_within_10_percent() -> None:
    """A rate is held by feedback: never more than asked, and (with a core's streaming rate to spare) nearly all
    of it, for about the CPU those bytes cost. What a core streams is measured here, by an unpaced bubble."""
    _, free_share, free = measure(effective(BubbleSpec(kind="bandwidth", size_mb=128)), 128)
    # 800 MB/s, or a quarter of what one core streams on a slower machine: room to catch up after a slow moment
    rate = min(800.0, free["mb_per_s"] / 4)
    spec = effective(BubbleSpec(kind="bandwidth", size_mb=128, rate_mb_s=rate))
    _, share, delivered = measure(spec, spec.size_mb)
    evidence = {"rate": rate, "unpaced": free, "unpaced_share": free_share, "paced": delivered, "paced_share": share}
    assert delivered["mb_per_s"] <= 1.1 * rate, evidence  # no overshoot: unpaced, it would stream ~4x as much
    assert delivered["mb_per_s"] >= 0.8 * min(rate, free["mb_per_s"]), evidence  # and it is not starved
    # It paces itself rather than spinning: its CPU is about what its bytes cost at the unpaced bubble's speed
    # (at most 2x that, for a CPU that changed speed in between, plus a timer's overhead); spinning takes a core.
    cost = delivered["mb_per_s"] / (free["mb_per_s"] / free_share)
    assert share <= 2 * cost + 0.05, evidence


def test_cache_kind_walks_an_llc_sized_region_at_its_duty() -> None:
    spec = effective(BubbleSpec(kind="cache", cpu_duty=0.5))
    region, share, delivered = measure(spec, spec.size_mb)
    assert abs(region - llc_bytes() / MIB) <= 0.1 * llc_bytes() / MIB + 1
    assert abs(share - 0.5) <= 0.05 and delivered["mb_per_s"] > 0
