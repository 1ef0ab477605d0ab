"""The ``hpsearch`` command line. Bad input ends in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from hpsearch import __version__, commands, interrupts, precision, slurm
from hpsearch.algorithms import DEFAULT_PRUNER, DEFAULT_SAMPLER, PRUNERS, SAMPLERS
from hpsearch.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, StudyAborted, Terminated, UsageError

# What a shell reports for a Unix tool that SIGPIPE killed (128 + 13), as `cat file | head -1`
# leaves it: the reader went away, which is no error of this command's, so no message, but
# `set -o pipefail` scripts still learn that the output was cut short.
EXIT_BROKEN_PIPE = 141
STUDY_HELP = "a study name from 'hpsearch list', or a study file: a path ending in .py"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _search_seed(text: str) -> int:
    from hpsearch.objective import SEARCH_SEEDS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < SEARCH_SEEDS:
        raise argparse.ArgumentTypeError(f"{value} is outside 0 to {SEARCH_SEEDS - 1} (2**31 - 1)")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


class _HelpWithStudy(argparse.Action):
    """-h/--help that, after STUDY (``run STUDY --help``), also shows that study's parameters:
    argparse has stored the positionals before an option that follows them."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from hpsearch import registry

        study = getattr(namespace, "study", None)
        spec = registry.get(study) if study else None  # an unknown study: one line, exit 2
        parser.print_help()
        if spec is not None:
            print()
            print(commands.study_details(spec))
        parser.exit()


def _storage_options(
    p: argparse.ArgumentParser,
    artifacts: bool = False,
    study_name: str = "name of the study in the storage (default: the study's own name)",
) -> None:
    p.add_argument(
        "--storage",
        metavar="URL",
        help="SQLAlchemy URL of the study database (default: $HPSEARCH_STORAGE, else sqlite:///hpsearch.db)",
    )
    p.add_argument("--study-name", metavar="NAME", help=study_name)
    if artifacts:
        p.add_argument(
            "--artifacts",
            metavar="DIR",
            help="artifact store of trial weights (default: $HPSEARCH_ARTIFACTS, else beside an SQLite "
            "file: hpsearch.db -> hpsearch-artifacts/, else ./hpsearch-artifacts)",
        )


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--data-dir", metavar="DIR", help="dataset folder (default: $HPSEARCH_DATA_DIR, else ./data)")
    p.add_argument(
        "--train-csv",
        metavar="FILE",
        help="training images as CSV rows of label + 784 pixels (studies on 28x28 grayscale data)",
    )


def _precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=precision.CHOICES,
        default="auto",
        help="auto: bf16 autocast where the device computes bf16 natively (CUDA, or a CPU with AVX512-BF16 "
        "or AMX) and the study allows it, else fp32; weights stay fp32 (default: auto)",
    )


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="fixed",
        help="fix a parameter instead of searching it (repeatable); 'hpsearch list STUDY' shows them",
    )


def _replicate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=_positive_int, default=3, metavar="S", help="seeds per configuration (default: 3)")
    p.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="E",
        help="train each replicate E epochs (default: the budget the trial itself trained)",
    )
    _storage_options(p, artifacts=True)
    _data_options(p)
    _precision_option(p)
    p.add_argument(
        "--subset", type=_positive_int, metavar="N", help="only the first N training examples (as the search used)"
    )
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="K", help="worker processes (default: 1)")
    p.add_argument("--heartbeat", type=_positive_int, metavar="SECONDS", help="as for 'run' (default: 60)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpsearch", description="Optuna hyperparameter searches for PyTorch image models.")
    parser.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="search a study until it holds --trials finished trials",
        description="Search STUDY until the stored study holds N finished (complete or pruned) "
        "trials; rerunning continues where an interrupted run stopped.",
        add_help=False,
    )
    run.add_argument(
        "-h", "--help", action=_HelpWithStudy, help="show this help and exit; after STUDY, also its parameters"
    )
    run.add_argument("study", metavar="STUDY", help=STUDY_HELP)
    run.add_argument(
        "--trials",
        type=_positive_int,
        required=True,
        metavar="N",
        help="finished trials the study holds when the command ends",
    )
    _storage_options(run, artifacts=True)
    run.add_argument("--epochs", type=_positive_int, metavar="E", help="max epochs per trial (default: the study's)")
    run.add_argument("--sampler", choices=list(SAMPLERS), default=DEFAULT_SAMPLER, help=f"default: {DEFAULT_SAMPLER}")
    run.add_argument("--pruner", choices=list(PRUNERS), default=DEFAULT_PRUNER, help=f"default: {DEFAULT_PRUNER}")
    run.add_argument(
        "--seed",
        type=_search_seed,
        help="seed of the sampler and of each trial's training (trial seed = seed + number), 0 to 2**31 - 1; "
        "replicates of confirm and ablate use seeds from 2**31 up",
    )
    _data_options(run)
    _precision_option(run)
    run.add_argument(
        "--subset", type=_positive_int, metavar="N", help="use only the first N training examples (smoke runs)"
    )
    run.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="stop starting trials after this long")
    _set_option(run)
    run.add_argument(
        "--jobs",
        type=_positive_int,
        metavar="K",
        help="worker processes on this host sharing the study (default: $HPSEARCH_JOBS, else 2 on a CPU of "
        "2+ cores, each with half the threads, else 1); with several GPUs, one GPU each, round-robin",
    )
    run.add_argument(
        "--keep-weights",
        type=int,
        metavar="K",
        help="keep the best-epoch weights of the K best complete trials (default: 3; 0: none)",
    )
    run.add_argument(
        "--heartbeat",
        type=_positive_int,
        metavar="SECONDS",
        help="seconds between a running trial's heartbeats; a trial silent for 3 of them counts as "
        "dead (its worker was killed) and is failed and retried (default: 60)",
    )
    slurm.add_options(run, _positive_int, _positive_float)

    create = sub.add_parser(
        "create",
        help="create a study with its baseline queued as trial 0, training nothing",
        description="Create STUDY in the storage and queue its baseline (trial 0), as the first 'run' would, "
        "without loading data or training: for a cluster, before its workers start. A study that exists "
        "already is checked (same study file, same metric) and left as it is; exit 0 either way.",
    )
    create.add_argument("study", metavar="STUDY", help=STUDY_HELP)
    _storage_options(create)
    _set_option(create)

    confirm = sub.add_parser(
        "confirm",
        help="train the best trials again with new seeds; name the best mean",
        description="Train each of the K best complete trials (and any --trial N) again with S new seeds, at "
        "its own epoch budget and unpruned, in the sibling study STUDY:replicates; print single-run value and "
        "mean ± std over seeds, and store the confirmed best (the best mean), which 'export' then exports. "
        "Rerunning continues; replicates already stored are not trained again.",
    )
    confirm.add_argument("study", metavar="STUDY", help=STUDY_HELP)
    confirm.add_argument(
        "--top", type=_positive_int, metavar="K", help="the K best complete trials (default: 3, or 0 with --trial)"
    )
    confirm.add_argument(
        "--trial",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="also this trial (repeatable; 0 is the baseline)",
    )
    _replicate_options(confirm)

    ablate = sub.add_parser(
        "ablate",
        help="the ablation path from the baseline to the confirmed best, over seeds",
        description="From the baseline (trial 0, the study's hand-tuned configuration) to the confirmed best (or --to "
        "TRIAL): each round switches each remaining difference alone, trains each candidate with S seeds and "
        "keeps the one that gains most (--method path), or reverts each difference of the best alone "
        "(--method leave-one-out). Prints the cost first; rerunning continues.",
    )
    ablate.add_argument("study", metavar="STUDY", help=STUDY_HELP)
    ablate.add_argument("--to", type=int, metavar="TRIAL", help="the target trial (default: the confirmed best)")
    ablate.add_argument("--method", choices=("path", "leave-one-out"), default="path", help="default: path")
    _replicate_options(ablate)

    listing = sub.add_parser(
        "list",
        help="list the registered studies, or one study's parameters",
        description="Without STUDY: one line per packaged study. With STUDY: its search space (each "
        "parameter's range or choices, log scale, baseline value and the choices it depends on) "
        "and the training settings it fixes, where it fixes any.",
    )
    listing.add_argument("study", metavar="STUDY", nargs="?", help=STUDY_HELP)

    show = sub.add_parser(
        "show",
        help="trial counts, best value and top trials of a stored study",
        description="Print the stored study's trials by state, its best value and parameters, and a table of "
        "its best complete trials (value, epochs, seconds, parameters). Reads only.",
    )
    show.add_argument("study", metavar="STUDY", help=STUDY_HELP)
    _storage_options(show)
    show.add_argument(
        "--top", type=_positive_int, default=10, metavar="K", help="rows in the table of best trials (default: 10)"
    )

    export = sub.add_parser(
        "export",
        help="write the best (or a given) trial's model to a checkpoint",
        description="Write a self-describing checkpoint (loads with torch.load(weights_only=True)) "
        "of the best trial, or of --trial N, from its stored weights or retrained.",
    )
    export.add_argument("study", metavar="STUDY", help=STUDY_HELP)
    export.add_argument("--out", required=True, metavar="PATH", help="checkpoint file to write")
    export.add_argument(
        "--trial",
        type=int,
        metavar="N",
        help="trial number (default: the confirmed best of 'hpsearch confirm', else the best single trial)",
    )
    export.add_argument(
        "--retrain",
        action="store_true",
        help="train the configuration again on train + validation for its best epoch count",
    )
    export.add_argument("--score", action="store_true", help="also score it on the official test split and store that")
    _storage_options(export, artifacts=True)
    _data_options(export)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a checkpoint on the official test split or a CSV",
        description="Rebuild the model from the checkpoint alone and score it on its "
        "dataset's official test split (or on a CSV of label + 784 pixels).",
    )
    evaluate.add_argument(
        "checkpoint", metavar="PATH", help="a checkpoint (.pt) or its program (.pt2), written by 'hpsearch export'"
    )
    evaluate.add_argument("--data-dir", metavar="DIR", help="dataset folder (default: $HPSEARCH_DATA_DIR, else ./data)")
    evaluate.add_argument("--csv", metavar="FILE", help="score on this CSV (rows of label + 784 pixels) instead")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    evaluate.add_argument(
        "--study",
        metavar="PATH",
        help="the study file that registers the checkpoint's model, where it has moved since the export",
    )

    dashboard = sub.add_parser(
        "dashboard",
        help="serve optuna-dashboard on the study storage and its trial weights",
        description="Run optuna-dashboard on the same storage and artifact store as 'hpsearch run'.",
    )
    _storage_options(
        dashboard,
        artifacts=True,
        study_name="the study whose page the printed URL opens (default: the list of every study)",
    )
    dashboard.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes it)",
    )
    dashboard.add_argument("--port", type=_positive_int, default=8080, help="port (default: 8080)")

    report = sub.add_parser(
        "report",
        help="one self-contained HTML page of plotly figures for a study",
        description="Write one HTML page (plotly included, no network needed to view it) of the study's "
        "optuna.visualization figures: history, learning curves, parameter importances, parallel coordinates, "
        "slices, and the confirmation and ablation where 'confirm' and 'ablate' stored them.",
    )
    report.add_argument("study", metavar="STUDY", help=STUDY_HELP)
    report.add_argument("--out", required=True, metavar="PATH", help="HTML file to write")
    _storage_options(report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM (docker stop, kill, a batch scheduler) ends a run the way Ctrl-C does.
    with interrupts.installed():
        try:
            try:
                return _main(argv)
            finally:
                # Output into a pipe waits in a buffer: a reader that has gone (`| head -1`)
                # shows here, where it can be handled, not at exit as an ignored exception.
                sys.stdout.flush()
        except BrokenPipeError:
            _discard_stdout()
            return EXIT_BROKEN_PIPE


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is left at exit cannot fail again
    (the recipe in Python's documentation of SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    try:
        interrupts.ready()
        args = build_parser().parse_args(argv)
        import optuna

        # hpsearch prints its own progress; Optuna's INFO lines would repeat it, and its warnings
        # that a feature is experimental (heartbeats, the retry callback) say nothing to a user.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        code = commands.COMMANDS[args.command](args)
        if code:
            return code
    except UsageError as exc:
        print(f"hpsearch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"hpsearch: {what}; finished trials are stored, run the same command again to continue", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except StudyAborted as exc:
        print(f"hpsearch: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
