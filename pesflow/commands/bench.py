"""``pesflow bench CAMPAIGN.yaml --out DIR``: a benchmark campaign (success curves)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys

from pesflow.commands.run import DEFAULT_SITE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="run a benchmark campaign: problems × algorithms × priors × repeats",
        description="Run the repeats of CAMPAIGN.yaml in --out, several at once through one "
        "coordinator, each until its first success or the end of its budget; write "
        "results.json and one success-curve figure per problem. Rerun the same command to "
        "go on: finished repeats are kept, unfinished ones resumed, missing ones started.",
    )
    parser.add_argument("campaign", help="campaign YAML (see benchmarks/campaign/)")
    parser.add_argument("--site", default=str(DEFAULT_SITE),
                        help="site config YAML (default: site-configs/local-htex.yaml)")
    parser.add_argument("--out", required=True, help="campaign directory (created or continued)")
    parser.add_argument("--quick", action="store_true",
                        help="the campaign's quick size (its 'quick' block): a CI-sized check")
    parser.add_argument("--repeats", type=int, help="repeats per cell (overrides the campaign)")
    parser.add_argument("--parallel", type=int,
                        help="repeats running at once (default: the site's cores)")
    parser.add_argument("--results", metavar="DIR",
                        help="also copy results.json and the figures here, and archive the "
                        "finished repeats (e.g. a directory under version control, while "
                        "--out stays outside it); a sitting with another --out restores them")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run only the cells PROBLEM/ALGORITHM/PRIOR matching this shell "
                        "pattern (repeatable; e.g. 'LJ26/*/morse6'); results cover every cell")
    parser.add_argument("--report", action="store_true",
                        help="only rebuild results.json and the figures from --out (and choose "
                        "a graph reference left to after the runs: oracle relaxations)")
    parser.add_argument("--quiet", action="store_true", help="no line per finished repeat")
    parser.set_defaults(func=run)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from pesflow.executors import load_site
    from pesflow.workflows.bench import load_campaign, report, run_campaign

    campaign = load_campaign(args.campaign)
    command = shlex.join([
        "pesflow", "bench", args.campaign, "--site", args.site, "--out", args.out,
        *(["--quick"] if args.quick else []),
        *(["--repeats", str(args.repeats)] if args.repeats is not None else []),
        *(["--parallel", str(args.parallel)] if args.parallel is not None else []),
        *(["--results", args.results] if args.results is not None else []),
        *[arg for pattern in args.only for arg in ("--only", pattern)],
    ])

    def say(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    site = load_site(args.site)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops like Ctrl-C
    try:
        if args.report:  # a reference relaxation may run for an hour: stoppable as well
            results = report(campaign, args.out, args.quick, args.repeats, command,
                             args.results, site, say)
            say(_summary(results))
            return 0
        results = run_campaign(campaign, site, args.out, args.quick, args.repeats,
                               args.parallel, on_event=say, command=command,
                               publish=args.results, only=args.only)
    except KeyboardInterrupt:
        print("interrupted; the results so far are in results.json", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    say(_summary(results))
    failed = sum(cell["failed"] for p in results["problems"].values()
                 for cell in p["cells"].values())
    return 1 if failed else 0


def _summary(results: dict) -> str:
    """A few lines: per cell, successes of finished repeats and the median to success."""
    lines = []
    for name, problem in results["problems"].items():
        if problem.get("kept"):
            lines.append(f"{name}: kept as published ({problem['kept']})")
        for key, cell in problem["cells"].items():
            median = cell.get("median_calls_to_success")
            waiting = cell["finished"] - cell.get("judged", cell["finished"])
            lines.append(f"{name} {key}: {cell['successes']}/{cell['finished']} found "
                         f"({cell['repeats']} planned), median calls to success "
                         f"{'–' if median is None else f'{median:g}'}"
                         + (f"; {waiting} not judged yet" if waiting else ""))
    hours = results["cpu_hours"]
    lines.append(f"CPU time so far: {hours['allocated']:.2f} core-hours allocated, "
                 f"{hours['used']:.2f} used, over {hours['sessions']} session(s)")
    return "\n".join(lines)
