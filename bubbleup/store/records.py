"""Column contracts of the run directory's CSV files.

Everything downstream (analysis, report, compare, users' notebooks) reads these
files with ``pandas.read_csv``; this module is the single place their columns are named.

samples.csv: one row per inference, warm-ups included (``phase`` says which).
points.csv:  one row per sweep point x workload x setting step, with summary statistics and a status.
"""

from __future__ import annotations

SAMPLE_COLUMNS: tuple[str, ...] = (
    "repeat",  # 0-based repeat index
    "axis",  # sweep axis: "count" or "size_mb"
    "value",  # the axis value of this point
    "bubble_count",  # bubbles running during the point
    "bubble_size_mb",  # resident region of each bubble, MiB
    "workload",  # the workload's label (its kind unless the scenario names several)
    "step",  # 0-based index of the setting step within the point
    "setting",  # canonical workload setting name
    "phase",  # "warmup" (untimed in statistics) or "timed"
    "iteration",  # 0-based index within (step, phase)
    "first_use",  # 1 if this was the first inference of this setting in this worker process
    "latency_ms",  # wall time of infer(), perf_counter_ns, in milliseconds
    "rss_mb",  # worker process RSS right after the inference, MiB
    "t_s",  # seconds since the run started, at the end of the inference
    "worker_pid",  # the worker process (a new pid means the worker was restarted)
    "info",  # JSON of extra facts returned by the workload (e.g. which model answered), or empty
)

POINT_COLUMNS: tuple[str, ...] = (
    "repeat",
    "axis",
    "value",
    "bubble_count",
    "bubble_size_mb",
    "workload",
    "step",
    "setting",
    "status",  # ok | failed | timeout
    "n",  # timed inferences
    "median_ms",
    "ci_low_ms",  # bootstrap 95% CI of the median
    "ci_high_ms",
    "mean_ms",
    "p90_ms",  # nearest-rank percentiles on the timed samples
    "p95_ms",
    "p99_ms",
    "min_ms",
    "max_ms",
    "select_ms",  # time to switch the workload to this setting
    "rss_mb_max",  # worker RSS, max over the step
    "bubbles_rss_mb",  # sum of bubble regions measured resident at ready
    "error",  # why a point failed, else empty
)

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_TIMEOUT = "timeout"
