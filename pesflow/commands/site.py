"""``pesflow site check SITE.yaml``: validate a site config and show what it would start."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("site", help="validate and inspect site configs (Parsl)")
    actions = parser.add_subparsers(dest="site_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="validate a site config YAML and print the executors it would start"
    )
    check.add_argument("path", metavar="SITE.yaml", help="site config (see site-configs/)")
    check.set_defaults(func=check_site)


def check_site(args: argparse.Namespace) -> int:
    """Validate ``args.path``; print one line per executor label. Starts nothing."""
    from pesflow.executors.site import load_site

    site = load_site(args.path)  # InputError -> exit status 2, one line
    print(f"{args.path}: valid site config")
    if site.description:
        print(f"  {site.description}")
    for line in site.summary():
        print(line)
    return 0
