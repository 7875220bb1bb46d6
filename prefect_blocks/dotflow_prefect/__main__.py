"""`python -m dotflow_prefect rerun`: ask the next flow run of a resume key to re-run from a task.

The request is a document in the key's checkpoint scope; the next run of that flow with that
key (a deployment run, a schedule) re-runs the named task and every call after it, and restores
the calls before it. The `dotflow-providers` command is the core's; this one knows Prefect's
scopes (`prefect/keyed/<flow name>/<key>`).
"""

from __future__ import annotations

import argparse
import sys

from dotflow_providers import DotflowError, store_from_url
from dotflow_providers.integration import id_part, request_next_start

from ._scope import scope_id


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and write the request; 0 on success, 2 on an error."""
    parser = argparse.ArgumentParser(prog="python -m dotflow_prefect")
    commands = parser.add_subparsers(dest="command", required=True)
    rerun = commands.add_parser(
        "rerun", help="make the next run of a resume key re-run from a task (or start over)"
    )
    rerun.add_argument("--flow", required=True, help="the flow's name, as Prefect shows it")
    rerun.add_argument("--key", required=True, help="the resume key's value, e.g. 2026-11-22")
    rerun.add_argument("--store", required=True, help="the flow's store URL (s3://, file://...)")
    which = rerun.add_mutually_exclusive_group(required=True)
    which.add_argument("--from", dest="rerun_from", help="the task (or workflow step) to re-run")
    which.add_argument("--start-over", action="store_true", help="re-run every call")
    args = parser.parse_args(argv)
    scope = scope_id(args.flow, "", id_part(args.key))
    try:
        request_next_start(
            scope,
            store_from_url(args.store),
            rerun_from=args.rerun_from,
            start_over=args.start_over,
            requested_by="python -m dotflow_prefect rerun",
        )
    except DotflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    what = "start over" if args.start_over else f"re-run from {args.rerun_from!r}"
    print(f"the next run of {scope} will {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
