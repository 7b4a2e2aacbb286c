"""``ialp fidelity``: hooked into ``ialp.cli`` by ``add_fidelity_parser(sub)``."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_fidelity_parser"]


def _cmd_fidelity(args: argparse.Namespace) -> int:
    from ialp.envs.registration import check_args
    from ialp.eval.fidelity import FidelityOptions, fidelity_report, format_report
    from ialp.schema import apply_overrides

    env_kwargs = apply_overrides({}, args.env_arg)  # the one KEY=VALUE syntax (dotted keys: mf.dim=8)
    check_args(args.env, env_kwargs)  # before any data is loaded
    options = FidelityOptions(gap=args.gap, policy_users=args.users, seed=args.seed)
    report = fidelity_report(args.env, args.data_dir, args.out, options=options, **env_kwargs)
    print(json.dumps(report) if args.json else format_report(report))
    if args.out and not args.json:
        print(f"wrote {args.out}/: fidelity.json, fidelity.md, fidelity.png")
    return 0


def add_fidelity_parser(sub: Any) -> None:
    """Add the ``fidelity`` subcommand to the subparsers ``sub`` of ``ialp``."""
    p = sub.add_parser("fidelity", help="how closely a fitted simulator behaves like the logged users",
                       description="Compare a logged env's simulator with its log on the interactions its fit held "
                                   "out: responses, choices, sessions and policy rankings, each next to a baseline.")
    p.add_argument("--env", default="ialp/MovieLens-v0",
                   help="ialp/MovieLens-v0, ialp/KuaiRec-v0 or ialp/KuaiRand-v0")
    p.add_argument("--data-dir", required=True, help="the data folder the simulator is fitted on")
    p.add_argument("--out", default=None, help="also write fidelity.json, fidelity.md and fidelity.png here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of Markdown")
    p.add_argument("--gap", type=float, default=1800.0, help="seconds without interaction that end a session")
    p.add_argument("--users", type=int, default=256, help="simulated users per policy in the policy check")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulator noise, shuffles and random policy")
    p.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="env argument, e.g. --env-arg matrix=big --env-arg mf.dim=8 (repeatable; values are YAML)")
    p.set_defaults(func=_cmd_fidelity)
