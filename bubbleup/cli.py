"""Command line: ``python -m bubbleup COMMAND``: run, validate, list, bubble, report, compare, calibrate,
score, predict, check-prediction, doctor, train, export, campaign, recommend.

Exit status: 0 success, 1 a run that failed, 2 bad input (one line, no traceback),
130 interrupted (Ctrl-C / SIGTERM; completed points are kept and can be resumed).
Heavy imports (pandas, TensorFlow) happen inside the commands that need them,
so ``--help`` and ``bubble`` start instantly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bubbleup import __version__
from bubbleup.colocation import cli as colocation_cli
from bubbleup.errors import OneLineParser, RunFailed, UserError, amount_arg, count_arg, finite_arg, positive_arg
from bubbleup.formatting import plural

if TYPE_CHECKING:
    from bubbleup.scenario import Scenario

EXIT_INTERRUPTED = 130


def _cmd_run(args: argparse.Namespace) -> int:
    from bubbleup.scenario import load_scenario
    from bubbleup.sweep import lifecycle

    if args.resume is None and args.scenario is None:
        raise UserError("run: give a scenario file, or --resume RUN_DIR")
    if args.resume is not None:
        run_dir = Path(args.resume)
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"{run_dir}: is a file; --resume names the run directory (the one holding manifest.json)")
        for flag, value in (("--out", args.out), ("--calibration", args.calibration)):
            if value is not None:  # a resume goes on in place, against the calibration the run recorded
                raise UserError(f"run: {flag} does not apply to --resume, which continues {run_dir} as it began")
        if args.scenario is not None:
            from bubbleup.store.layout import MANIFEST
            from bubbleup.store.manifest import read

            _, given = load_scenario(args.scenario)
            recorded = read(run_dir / MANIFEST).scenario_given
            if given != recorded:
                raise UserError(f"{args.scenario}: differs from the scenario recorded in {run_dir}; refusing to mix")
        with _result_on_failure(run_dir):
            store = lifecycle.resume(run_dir, progress=not args.quiet, allow_concurrent=args.allow_concurrent)
    else:
        from bubbleup.store.layout import default_run_dir

        scenario, given = load_scenario(args.scenario)
        out = Path(args.out) if args.out else default_run_dir(Path(args.reports_root), scenario.name)
        calibration = Path(args.calibration) if args.calibration else None
        if calibration is not None and not calibration.is_file():
            raise UserError(f"{calibration}: no such calibration file (make one with 'bubbleup calibrate')")
        with _result_on_failure(out):
            store = lifecycle.run(scenario, given, out, Path(args.reports_root), progress=not args.quiet,
                                     calibration=calibration,
                                     source=str(args.scenario), allow_concurrent=args.allow_concurrent)  # fmt: skip
    print(f"run complete: {store.root}", file=sys.stderr)
    status = _write_report(store.root) if not args.no_report else 0
    _print_result(store.root)
    return status


@contextlib.contextmanager
def _result_on_failure(run_dir: Path) -> Iterator[None]:
    """A run that ends early (interrupted, failed) still says whether what it measured is valid, before the
    error; bad input (a refusal before the run began, e.g. the machine lock) leaves no run to judge."""
    try:
        yield
    except UserError:
        raise
    except BaseException:
        _print_result(run_dir)
        raise


def _print_result(run_dir: Path) -> None:
    """``Result is: VALID`` or ``Result is: INVALID`` and one line per reason (analysis.validity), as the
    manifest recorded it, or computed now for a run older than the verdict."""
    from bubbleup.store.layout import is_run_dir

    if not is_run_dir(run_dir):
        return
    try:
        from bubbleup.analysis.validity import of_dir

        verdict = of_dir(run_dir)
    except Exception as exc:  # the verdict must never cost the run's own exit status
        print(f"warning: no validity verdict for {run_dir}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    for line in verdict.lines():
        print(line, flush=True)


def _write_report(run_dir: Path) -> int:
    """Write the report and print each setting's verdict with its confidence (and any fall) above its path."""
    try:
        from bubbleup.report.html import write
    except ImportError as exc:
        print(f"warning: report not written ({exc})", file=sys.stderr)
        return 0
    try:
        written = write(run_dir)
    except OSError as exc:
        from bubbleup.store.layout import REPORT

        print(f"error: {run_dir / REPORT}: cannot write the report: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for line in written.verdicts:
        print(line)
    print(f"report: {written.path}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from bubbleup.scenario import load_scenario
    from bubbleup.sweep.plan import adapt_profiles, all_steps, check_memory_safety, plan_points

    scenario, _ = load_scenario(args.scenario)
    safety = check_memory_safety(scenario, source=str(args.scenario))
    profiles = adapt_profiles(scenario, source=str(args.scenario))
    steps = all_steps(scenario)
    kinds = ", ".join(spec.label or spec.kind for spec in scenario.specs)
    sweep = scenario.sweep
    phases = len(sweep.phases or [])
    each = f" (each through a schedule of {phases} phases, {sweep.schedule_s:g} s)" if phases else ""
    adapting = "".join(f"; {label} adapts on {len(p['levels'])} levels of {p['source']}"
                       for label, p in profiles.items())  # fmt: skip
    print(
        f"ok: {args.scenario}: {scenario.name}: {plural(len(plan_points(scenario)), 'point')} x "
        f"{plural(len(steps), 'step')} of "
        f"{kinds}{each}; peak bubble memory {safety['peak_bubble_mb']} MiB "
        f"(safe limit here {safety['allowed_mb']:.0f} MiB){adapting}{_budget_filled(scenario)}"
    )
    return 0


def _budget_filled(scenario: Scenario) -> str:
    """Which sweep values' bubbles alone fill the budget's memory: those points are expected to end out of memory
    (the study's size sweep does so on purpose), which is better said before the run than found in it."""
    memory_mb = scenario.budget.get("memory_mb") if isinstance(scenario.budget, dict) else None
    if not memory_mb:
        return ""
    full = [v for v in scenario.sweep.values if scenario.bubble_mb_at(v) >= memory_mb]
    if not full:
        return ""
    return (f"; at {scenario.sweep.axis}={', '.join(str(v) for v in full)} the bubbles alone fill the "
            f"{memory_mb} MiB budget: expect those points to end out of memory")


def _cmd_list(args: argparse.Namespace) -> int:
    from workloads import available_kinds, get_workload_class

    for kind in sorted(available_kinds()):
        try:
            cls = get_workload_class(kind)
            workload = cls(cls.Options())
            settings, presets = workload.settings(), workload.presets()
        except Exception as exc:  # a broken third-party workload must not hide the others
            print(f"{kind}\n  unavailable: {type(exc).__name__}: {exc}\n")
            continue
        print(f"{kind}: {cls.summary}")
        print(f"  settings ({len(settings)}): {', '.join(settings)}")
        if presets:
            print(f"  presets: {', '.join(f'{k}={v}' for k, v in presets.items())}")
        fields = cls.Options.model_fields.items()
        options = [f"{k}={'(required)' if f.is_required() else _option_text(f.get_default(call_default_factory=True))}"
                   for k, f in fields]  # fmt: skip
        print(f"  options (workload.options, defaults): {', '.join(options)}")
        print()
    return 0


def _option_text(default: object) -> str:
    """A workload option's default as a scenario would write it: ``[256, 2048]``, ``none``, ``true``."""
    if isinstance(default, tuple | list):
        return "[" + ", ".join(_option_text(x) for x in default) + "]"
    if default is None or isinstance(default, bool):
        return {None: "none", True: "true", False: "false"}[default]
    return str(default)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import json

    from bubbleup.inputs import output_path
    from bubbleup.machine.calibrate import calibrate, render

    if args.reporter:
        from bubbleup.colocation import reporter, workflow

        curve_out = output_path(args.reporter_out, "reporter curve file", "--reporter-out")
        made = workflow.calibrate_reporter(curve_out, Path(args.reports_root), progress=True)
        curve = ", ".join(f"{p.size_mb:g}: {p.qos:.3f}" for p in made.curve.points)
        print(f"reporter curve (normalised QoS by Bubble-Up bubble size, MiB): {curve}")
        flat = reporter.flat_warning(made.curve)
        if flat:
            print(f"warning: {flat}")
        print(f"reporter curve: {args.reporter_out} (run: {made.run_dir})")
        return 0

    from bubbleup import dial_check
    from bubbleup.store.layout import default_run_dir

    out = output_path(args.out, "calibration file")
    result = calibrate(window_s=args.window_s, reps=args.reps)
    result["dial"] = dial_check.check(default_run_dir(Path(args.reports_root), dial_check.DIAL_SCENARIO["name"]))
    try:
        out.write_text(json.dumps(result, indent=2))
    except OSError as exc:
        raise UserError(f"{out}: cannot write the calibration: {exc.strerror or exc}") from None
    print(render(result))
    print(f"calibration: {out}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from bubbleup.machine.doctor import diagnose, render

    print(render(diagnose()))
    return 0


def _cmd_bubble(argv: list[str]) -> int:
    from bubbleup.pressure import kernel as bubble_kernel

    return bubble_kernel.main(argv)


def _cmd_report(args: argparse.Namespace) -> int:
    from bubbleup.store.layout import MANIFEST, is_run_dir

    run_dir = Path(args.run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir}: not a run directory (no {MANIFEST})")
    status = _write_report(run_dir)
    _print_result(run_dir)
    return status


def _cmd_campaign(args: argparse.Namespace) -> int:
    """Start (or resume) a campaign and run it here, or on Ray (:mod:`bubbleup.campaign_ray`, only with --ray)."""
    from bubbleup import campaign as campaigns
    from bubbleup.store.layout import CAMPAIGN_INDEX
    from bubbleup.sweep.signals import signals_raise

    if args.ray:
        from bubbleup import campaign_ray

        campaign_ray.connect(args.ray)  # before the campaign directory: a wrong address leaves nothing behind
    camp = campaigns.open_or_start(args.file, args.resume, args.out, Path(args.reports_root))
    print(f"campaign directory: {camp.root}", file=sys.stderr, flush=True)
    with signals_raise():  # after Ray's own handlers: SIGTERM ends a campaign as Ctrl-C does, on either engine
        if args.ray:
            campaign_ray.run(camp, args.ray, allow_concurrent=args.allow_concurrent)
        else:
            campaigns.run_local(camp, Path(args.reports_root), progress=not args.quiet,
                                allow_concurrent=args.allow_concurrent)  # fmt: skip
    # Every run that did not complete, said here too (the index page has it), and a failure in the exit status:
    # a CI job running a campaign must not pass on a run that failed.
    failed = 0
    for r in camp.runs:
        status = camp.status_of(r)
        if status != "complete":
            failed += status != "skipped"
            said = r.note if r.note.startswith(status) else f"{status}: {r.note}" if r.note else status
            print(f"  {r.id}: {said}", flush=True)
    print(f"campaign {camp.status}: {camp.root / CAMPAIGN_INDEX}")
    return 1 if failed else 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from bubbleup.analysis import tradeoff
    from bubbleup.analysis.summary import summarise
    from bubbleup.store.layout import MANIFEST, is_run_dir
    from bubbleup.store.reader import load_run

    run_dir = Path(args.run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir}: not a run directory (no {MANIFEST})")
    run = load_run(run_dir)
    try:
        rec = tradeoff.recommend(run, summarise(run), args.slo_ms, args.percentile, args.margin)
    except tradeoff.TradeoffError as exc:
        raise UserError(f"recommend: {exc}") from None
    print("\n".join(rec.lines()))
    from bubbleup.analysis.validity import of_run

    verdict = of_run(run)[0]
    if not verdict.valid:
        print(f"warning: {run_dir} is {verdict.short()}: its latencies may be what contaminated it "
              f"('bubbleup report {run_dir}' says why)", file=sys.stderr)  # fmt: skip
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from bubbleup.analysis.compare import Gate, regressions
    from bubbleup.report.compare import write_compared
    from bubbleup.store.layout import MANIFEST, is_run_dir

    for d in (args.run_a, args.run_b):
        if not is_run_dir(Path(d)):
            raise UserError(f"{d}: not a run directory (no {MANIFEST})")
    if not 0 <= args.min_effect < 1:
        raise UserError(f"compare: --min-effect: {args.min_effect} is outside [0, 1)")
    from bubbleup.formatting import share_of_percent

    slower = share_of_percent(args.fail_if_slower, "compare: --fail-if-slower") if args.fail_if_slower else None
    path, cmp = write_compared(Path(args.run_a), Path(args.run_b), Path(args.out) if args.out else None,
                               min_effect=args.min_effect)  # fmt: skip
    print(f"comparison: {path}")
    found = regressions(cmp, Gate(slower, args.fail_if_cliff_earlier))
    for line in found:
        print(f"regression: {line}")
    if found:
        print(f"{len(found)} regression{'s' if len(found) > 1 else ''} of B against A", file=sys.stderr)
        return 1
    return 0


def _cmd_train(argv: list[str]) -> int:
    import importlib

    if argv[:1] in (["-h"], ["--help"]):
        import workloads

        kinds = sorted(d.name for d in Path(workloads.__file__).parent.iterdir() if (d / "train.py").is_file())
        print(f"usage: bubbleup train KIND [ARGS ...]\n\ntrain a workload's models; KIND is one of: {', '.join(kinds)} "
              "('bubbleup train KIND --help' for its arguments)")  # fmt: skip
        return 0
    if not argv or argv[0].startswith("-"):
        raise UserError("train: name a workload kind to train, e.g. 'bubbleup train approxnet --help'")
    kind, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(f"workloads.{kind}.train")
    except ModuleNotFoundError:
        raise UserError(f"train: workload {kind!r} has nothing to train") from None
    return int(module.main(rest, OneLineParser) or 0)


def _cmd_export(argv: list[str]) -> int:
    from workloads.nn.litert_export import main

    return int(main(argv, OneLineParser) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="bubbleup",
        description="Bubble-Up style contention testing: how much co-located load can a program take?",
    )
    p.add_argument("--version", action="version", version=f"bubbleup {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a scenario's sweep and write a run directory and report")
    r.add_argument("scenario", nargs="?", help="scenario YAML file")
    r.add_argument("--out", help="run directory to create (default: REPORTS_ROOT/<name>/<timestamp>)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in place")
    r.add_argument("--reports-root", default="reports", help="where run directories go (default: reports)")
    r.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    r.add_argument("--calibration", help="calibration file to check bubbles against "
                   "(default: REPORTS_ROOT/calibration.json when it exists)")  # fmt: skip
    r.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    r.add_argument("--allow-concurrent", action="store_true", help="run even while another bubbleup run holds "
                   "this machine (both runs are then marked INVALID)")  # fmt: skip
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("validate", help="check a scenario file (and that it is safe here) without running it")
    v.add_argument("scenario")
    v.set_defaults(func=_cmd_validate)

    sub.add_parser("list", help="list workload kinds with their settings and presets").set_defaults(func=_cmd_list)

    cal = sub.add_parser("calibrate", help="measure what each bubble kind delivers here, and its interference")
    cal.add_argument("--out", default="reports/calibration.json", help="where to write (default: %(default)s)")
    cal.add_argument("--window-s", type=positive_arg, default=2.0, help="seconds each bubble is measured (default 2)")
    cal.add_argument("--reps", type=count_arg, default=30, help="reference kernel runs per measurement (default 30)")
    cal.add_argument("--reporter", action="store_true", help="measure only the reporter's sensitivity curve "
                     "against the Bubble-Up bubble (what 'score' reads)")  # fmt: skip
    cal.add_argument("--reporter-out", default="reports/reporter.json", help="where the reporter curve goes "
                     "(default: %(default)s)")  # fmt: skip
    cal.add_argument("--reports-root", default="reports", help="where its run directories go (the dial check's, the "
                     "reporter curve's; default: reports)")  # fmt: skip
    cal.set_defaults(func=_cmd_calibrate)

    colocation_cli.add_commands(sub)

    sub.add_parser("doctor", help="report what on this machine would distort contention results").set_defaults(
        func=_cmd_doctor
    )

    sub.add_parser("bubble", help="run one standalone bubble until Ctrl-C (see 'bubble --help')", add_help=False)

    rep = sub.add_parser("report", help="(re)write report.html for a run directory, complete or not")
    rep.add_argument("run_dir")
    rep.set_defaults(func=_cmd_report)

    cp = sub.add_parser("campaign", help="run the scenarios of a campaign file, each into its own run directory, "
                                         "here or on a Ray cluster (--ray), with one page of every run")  # fmt: skip
    cp.add_argument("file", nargs="?", help="the campaign YAML (name, runs: [{scenario, repeats, requires}])")
    cp.add_argument("--resume", metavar="CAMPAIGN_DIR", help="run what is missing, resume what was interrupted")
    cp.add_argument("--out", help="campaign directory (default: reports/<name>/<timestamp>)")
    cp.add_argument("--reports-root", default="reports", help=argparse.SUPPRESS)
    cp.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster: 'auto' or the head's address")
    cp.add_argument("--allow-concurrent", action="store_true",
                    help="let runs share a machine with other bubbleup runs (they are then INVALID)")  # fmt: skip
    cp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    cp.set_defaults(func=_cmd_campaign)

    rc = sub.add_parser("recommend", help="the most accurate setting that meets an SLO at each pressure level")
    rc.add_argument("run_dir")
    rc.add_argument("--slo-ms", type=finite_arg, required=True, metavar="MS", help="the latency objective, ms")
    rc.add_argument("--percentile", type=float, default=50, metavar="P",
                    help="the latency percentile held to the SLO: 50 (default), 90, 95 or 99")  # fmt: skip
    rc.add_argument("--margin", type=finite_arg, default=1.3, metavar="M",
                    help="a setting fits when its latency is within SLO / M (default 1.3, ApproxDet's)")  # fmt: skip
    rc.set_defaults(func=_cmd_recommend)

    c = sub.add_parser("compare", help="compare two run directories side by side")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--out", help="output HTML path")
    c.add_argument("--min-effect", type=amount_arg, default=0.05, metavar="F",
                   help="smallest relative difference of the repeats' interquartile means reported as a change "
                        "(default 0.05: 5%%)")  # fmt: skip
    c.add_argument("--fail-if-slower", metavar="PCT",
                   help="exit 1 if a point of B is slower than A by at least PCT (e.g. 10%%) with a CI excluding 1, "
                        "or failed where A worked")  # fmt: skip
    c.add_argument("--fail-if-cliff-earlier", action="store_true",
                   help="exit 1 if a setting's cliff moved to lower pressure by more than one step")  # fmt: skip
    c.set_defaults(func=_cmd_compare)

    sub.add_parser("train", help="train a workload's models (see 'train KIND --help')", add_help=False)
    sub.add_parser("export", help="convert a workload's networks for another runtime: export approxnet --runtime "
                   "litert (see 'export --help')", add_help=False)  # fmt: skip
    return p


# Commands that take their own arguments wholesale.
_PASSTHROUGH = {"bubble": _cmd_bubble, "train": _cmd_train, "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _PASSTHROUGH:
            return _PASSTHROUGH[argv[0]](argv[1:])
        parser = build_parser()
        # ``score -- CMD`` and ``predict RUN --with -- CMD``: everything after the first ``--`` is the co-runner's
        # command, given to the command as is (argparse's REMAINDER after an option drops a leading ``--``
        # only sometimes, and refused ``--with -- CMD`` as unrecognized arguments).
        # Every other command leaves ``--`` to argparse (the end of options).
        split = argv[:1] in (["score"], ["predict"]) and "--" in argv
        head, tail = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if split else (argv, [])
        args = parser.parse_args(head)
        if split:  # a command already begun before the ``--`` (``score xz -T1 -- file``) keeps it as its own
            args.cmd = [*args.cmd, "--", *tail] if args.cmd else tail
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunFailed as exc:
        print(f"run failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say to it, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail too
        return 1
    except Exception as exc:
        from bubbleup.sweep.signals import Interrupted

        if isinstance(exc, Interrupted):
            print(f"interrupted by {exc}; completed points are saved (resume with --resume)", file=sys.stderr)
            return EXIT_INTERRUPTED
        raise
