"""Command line: ``python -m hdm <command>`` (or ``hdm <command>`` once installed).

    python -m hdm train --scale smoke|default|paper --method M --seed S [--dataset D] [--set key=value ...]
    torchrun --standalone --nproc_per_node 4 -m hdm train --scale paper --method hdm     # data parallel
    python -m hdm evaluate --run DIR [--decoder local_com|argmax_shift] [--flip-test | --no-flip-test]
    python -m hdm config --scale default --method hdm [--set ...]     # print the resolved config and run folder
    python -m hdm runs                                                  # list the run folders

Every config key (``hdm.experiment.Config``) can be set with ``--set key=value`` (repeatable); lists are
comma-separated (``--set lr_steps=170,200``), ``none`` clears an optional value.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from hdm import experiment, runs


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _config(args) -> experiment.Config:
    return experiment.preset(args.scale, args.method, args.dataset, args.seed, **_parse_sets(args.set))


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=experiment.SCALES, default="default", help="preset (default: default)")
    parser.add_argument("--method", choices=experiment.METHODS, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=experiment.DATASETS, default=None,
                        help="default: synthetic (coco at the paper scale)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hdm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a run (or resume it, or find it in the cache)")
    _add_config_args(p)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="tqdm progress bars (default: when stderr is a terminal)")  # fmt: skip

    p = sub.add_parser("evaluate", help="evaluate a finished run's final model (cached per decoder and flip)")
    p.add_argument("--run", required=True, help="run folder (or its name under the runs root)")
    p.add_argument("--decoder", default=None, help="decoder (default: the run's)")
    p.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test (default: the run's setting)")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--refresh", action="store_true", help="recompute even if cached")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    p = sub.add_parser("config", help="print the resolved config, its hash and run folder")
    _add_config_args(p)

    sub.add_parser("runs", help="list the run folders under the runs root")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success (``sys.exit`` code). Bad input exits with status 2 and one message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            run = experiment.train(_config(args), progress=args.progress)
            if run.metrics.size:
                print(run.metrics.tail(1).to_string(index=False))
            print(run.dir)
        elif args.command == "evaluate":
            metrics = experiment.evaluate(
                args.run, args.decoder, args.flip_test, device=args.device, progress=args.progress, refresh=args.refresh
            )
            print(json.dumps(metrics, indent=2))
        elif args.command == "config":
            cfg = _config(args).resolved()
            print(json.dumps({**cfg.to_dict(), "hash": cfg.hash(), "run_dir": str(cfg.run_dir())}, indent=2))
        elif args.command == "runs":
            for run in runs.list_runs():
                print(f"{'done' if run.done else 'open'}  {run.dir}")
    except (ValueError, FileNotFoundError, runs.RunLockedError) as exc:
        parser.exit(2, f"hdm {args.command}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
