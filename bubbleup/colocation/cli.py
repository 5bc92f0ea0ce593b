"""The co-location commands (Bubble-Up's steps 2-3 and their check): ``score``, ``predict``, ``check-prediction``.

Each parses its arguments into a call of :mod:`bubbleup.colocation.workflow` and prints what it returns; bad
input is a ``UserError`` (one line, exit 2) raised before any minutes of running.
"""

from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path
from typing import Any

from bubbleup.errors import UserError, amount_arg, count_arg


def _split(command: str, flag: str = "--corunner") -> list[str]:
    """One --corunner (or --mix) 'CMD ARGS' as a shell would split it; one line when it cannot be split or is
    empty."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UserError(f"check-prediction: {flag} {command!r}: {exc}") from None
    if not words:
        raise UserError(f"check-prediction: {flag}: empty command")
    return words


def _command_after_dashes(args: argparse.Namespace, what: str) -> list[str]:
    command = list(args.cmd or [])  # cli.main hands over what follows the first ``--``
    if not command:
        raise UserError(f"{what}: give the co-runner's command after --, e.g. bubbleup {what} -- xz -9 -T1 big.file")
    return command


def _score(args: argparse.Namespace, command: list[str]) -> tuple[Any, Any]:
    from bubbleup.colocation import reporter, workflow
    from bubbleup.store.layout import default_run_dir

    made = workflow.load_reporter(Path(args.reporter), other_machine=args.other_machine)
    flat = reporter.flat_warning(made.curve)
    if flat:
        print(f"warning: {args.reporter}: {flat}")
    out = Path(args.out) if getattr(args, "out", None) else default_run_dir(Path(args.reports_root), "score")
    s, run = workflow.score_command([command], made, out, repeats=args.repeats, startup_s=args.startup_s,
                                      progress=not args.quiet)  # fmt: skip
    print(f"{' '.join(command)}: {s.sentence(made.curve.span)}")
    print(f"  alone and unpinned it keeps {s.corunner_cores:.2f} cores busy; beside the reporter it held "
          f"{s.corunner_rss_mb:.0f} MiB (peak {s.corunner_rss_peak_mb:.0f} MiB, all its processes); run: {run.path}")
    return s, made


def _cmd_score(args: argparse.Namespace) -> int:
    _score(args, _command_after_dashes(args, "score"))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from bubbleup.analysis.prediction import predict
    from bubbleup.colocation import workflow

    run, curves = workflow.workload_curves(Path(args.run_dir), args.percentile)  # bad input before any scoring
    if (args.score is None) == (not args.cmd):
        raise UserError("predict: give either --score MIB or --with -- CMD ...")
    cpu = workflow.cpu_curves(Path(args.cpu_run), run, args.percentile)[1] if args.cpu_run else None
    if args.cores is not None and (args.cores < 0 or args.score is None):
        raise UserError("predict: --cores is the co-runner's CPU use (>= 0) beside a hand-given --score")
    if args.cores is not None and cpu is None:
        raise UserError("predict: --cores is read off a CPU curve: give the CPU-curve run too (--cpu-run RUN)")
    if cpu is not None and args.score is not None and args.cores is None:
        raise UserError("predict: --cpu-run needs the co-runner's CPU use: --cores C (or score it with --with)")
    if args.score is not None:
        s = workflow.manual_score(args.score, math.nan if args.cores is None else args.cores)
    else:
        s = _score(args, _command_after_dashes(args, "predict"))[0]
    try:
        found = predict(curves, s, args.percentile, cpu)
    except ValueError as exc:
        raise UserError(f"predict: {exc}") from None
    for p in found:
        print(p.sentence())
    return 0


def _cmd_check_prediction(args: argparse.Namespace) -> int:
    from bubbleup.colocation import workflow
    from bubbleup.store.layout import default_run_dir

    if not args.corunner and not args.mix:
        raise UserError("check-prediction: give at least one --corunner 'CMD ARGS' (or --mix 'CMD' 'CMD' ...)")
    if any(len(m) < 2 for m in args.mix or []):
        raise UserError("check-prediction: --mix takes two or more commands, each quoted: --mix 'CMD A' 'CMD B'")
    commands = [[_split(c)] for c in args.corunner or []]
    commands += [[_split(c, "--mix") for c in mix] for mix in args.mix or []]
    if args.cpu_run and args.shared:
        raise UserError("check-prediction: --shared measures a CPU curve; --cpu-run gives one: not both")
    made = workflow.load_reporter(Path(args.reporter), other_machine=args.other_machine)
    out = Path(args.out) if args.out else default_run_dir(Path(args.reports_root), "check-prediction")
    cpu_run = Path(args.cpu_run) if args.cpu_run else None
    if args.shared:
        workflow.workload_curves(Path(args.run_dir), args.percentile)  # a bad run is refused before minutes
        cpu_run = workflow.measure_cpu_curves(Path(args.run_dir), out / "cpu-curve", progress=not args.quiet)
    rows = workflow.check(Path(args.run_dir), commands, made, out,
                            repeats=args.repeats, startup_s=args.startup_s, percentile=args.percentile,
                            progress=not args.quiet, cpu_run=cpu_run)  # fmt: skip
    print(f"{'co-runner':34} {'setting':14} {'score MiB':>10} {'cores':>5} {'predicted':>9} {'measured':>18} "
          f"{'error':>6} {'naive':>6}")  # fmt: skip
    for r in rows:
        flag = " (score outside the curve)" if r.outside else ""
        print(f"{r.corunner[:34]:34} {r.setting[:14]:14} {r.score_mb:>10.1f} {r.corunner_cores:>5.2f} "
              f"{r.predicted:>9.3f} {r.measured:>7.3f} ({r.measured_low:.2f}-{r.measured_high:.2f}) {r.error:>6.3f} "
              f"{r.naive_error:>6.3f}{flag}")  # fmt: skip
    for line in workflow.check_summary(rows):
        print(line)
    print(f"checks: {out / 'checks.csv'}; page: {out / 'check.html'}")
    return 0


def add_commands(sub: Any) -> None:
    """Register ``score``, ``predict`` and ``check-prediction`` on the main parser's subparsers."""

    def scoring(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--reporter", default="reports/reporter.json", help="reporter curve (default: %(default)s)")
        sp.add_argument("--other-machine", action="store_true", help="use a reporter curve measured on another "
                        "kind of machine")  # fmt: skip
        sp.add_argument("--repeats", type=count_arg, default=8, help="alone/beside repeats, alternating (default 8)")
        sp.add_argument("--startup-s", type=amount_arg, default=1.0, help="the co-runner must keep running this long "
                        "before it counts as started (default 1)")  # fmt: skip
        sp.add_argument("--reports-root", default="reports", help="where run directories go (default: reports)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    sc = sub.add_parser("score", help="a co-runner's bubble score: run it beside the reporter (score -- CMD ...)")
    scoring(sc)
    sc.add_argument("--out", help="run directory of the score run (default: REPORTS_ROOT/score/<timestamp>)")
    sc.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the co-runner's command and arguments")
    sc.set_defaults(func=_cmd_score)

    pr = sub.add_parser("predict", help="predicted QoS per setting at a bubble score (--score S or --with -- CMD)")
    pr.add_argument("run_dir", help="a size-sweep run of the bubble-up bubble (its sensitivity curves)")
    pr.add_argument("--score", type=amount_arg, metavar="MIB", help="the co-runner's bubble score, MiB")
    pr.add_argument("--percentile", type=float, default=50, choices=(50, 95), help="QoS at the median or p95")
    scoring(pr)
    pr.add_argument("--with", dest="cmd", nargs=argparse.REMAINDER, help="-- score this command first")
    pr.add_argument("--cores", type=amount_arg, help="with --score: the co-runner's CPU use (cores it keeps busy)")
    pr.add_argument("--cpu-run", help="a CPU-curve run of the same workload (check-prediction --shared makes "
                    "one): predict for a co-runner that shares the workload's CPUs")  # fmt: skip
    pr.set_defaults(func=_cmd_predict)

    ck = sub.add_parser("check-prediction", help="predicted vs measured QoS: score, predict and really co-run "
                        "each co-runner")  # fmt: skip
    ck.add_argument("run_dir", help="a size-sweep run of the bubble-up bubble (its sensitivity curves)")
    ck.add_argument("--corunner", action="append", metavar="'CMD ARGS'", help="a co-runner (repeatable)")
    ck.add_argument("--mix", action="append", nargs="+", metavar="'CMD ARGS'", help="a co-runner made of several "
                    "programs run together, each in a session of its own, as separately started services are "
                    "(repeatable)")  # fmt: skip
    ck.add_argument("--percentile", type=float, default=50, choices=(50, 95), help="QoS at the median or p95")
    ck.add_argument("--out", help="directory for every run and checks.csv")
    scoring(ck)
    ck.add_argument("--shared", action="store_true", help="co-run on the workload's own CPUs: measure its CPU "
                    "curve first (CPU-only bubbles beside it) and predict from both curves")  # fmt: skip
    ck.add_argument("--cpu-run", help="as --shared, with the CPU curve of this earlier run")
    ck.set_defaults(func=_cmd_check_prediction)
