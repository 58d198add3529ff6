"""Command line: ``python -m hdm <command>`` (or ``hdm <command>`` once installed).

    python -m hdm train --scale smoke|default|paper --method M --seed S [--dataset D] [--set key=value ...]
    torchrun --standalone --nproc_per_node 4 -m hdm train --scale paper --method hdm     # data parallel
    python -m hdm evaluate --run DIR [--decoder local_com|argmax_shift] [--flip-test | --no-flip-test] [--split test]
    python -m hdm config --scale default --method hdm [--set ...]     # print the resolved config and run folder
    python -m hdm runs                                                  # list the run folders and their state
    python -m hdm pretrain [--set key=value ...]                        # the part-segmentation backbone (init=pretrained)
    python -m hdm reproduce [--scale S] [--only NOTEBOOK ...] [--param KEY=YAML ...]   # = python -m hdm.reproduce

Every config key (``hdm.config.Config``) can be set with ``--set key=value`` (repeatable); lists are
comma-separated (``--set lr_steps=170,200``), ``none`` clears an optional value. A user error (bad key or
value, missing dataset, damaged run, locked run, unwritable folder) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from hdm import runs
from hdm.config import DATASETS, SCALES, Config, PretrainConfig, check_device, preset
from hdm.data.sources import EVAL_SPLITS
from hdm.methods import METHODS

#: Errors that are the user's to fix: printed as one line, exit status 2.
USER_ERRORS = (ValueError, OSError, runs.RunLockedError, runs.DamagedRunError)


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def pretrain_from_sets(sets: dict[str, str]) -> PretrainConfig:
    """A ``PretrainConfig`` with ``--set`` overrides parsed by field type (as ``Config.replace`` does)."""
    import dataclasses
    import typing

    from hdm.config import _coerce

    hints = typing.get_type_hints(PretrainConfig)
    unknown = sorted(set(sets) - set(hints))
    if unknown:
        raise ValueError(f"unknown pretraining key(s) {unknown}; valid keys: {sorted(hints)}")
    return dataclasses.replace(PretrainConfig(), **{k: _coerce(k, v, hints[k]) for k, v in sets.items()})


def _config(args):
    sets = _parse_sets(args.set)
    named = {"method": args.method, "dataset": args.dataset, "seed": args.seed}
    for key in named:  # --set method=... is the same as --method ...
        if key in sets:
            named[key] = sets.pop(key)
    seed = named["seed"]
    if isinstance(seed, str):
        if not seed.strip().isdigit():
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        seed = int(seed)
    return preset(args.scale, named["method"], named["dataset"] or None, seed, **sets)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=SCALES, default="default", help="preset (default: default)")
    parser.add_argument("--method", choices=tuple(METHODS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=DATASETS, default=None,
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
    p.add_argument("--split", choices=EVAL_SPLITS, default="val",
                   help="val (default: what the run validated on) or test (the held-out synthetic split)")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--refresh", action="store_true", help="recompute even if cached")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    p = sub.add_parser("config", help="print the resolved config, its hash and run folder")
    _add_config_args(p)

    sub.add_parser("runs", help="list the run folders: done, open (unfinished), damaged, or other-code")
    p = sub.add_parser("pretrain", help="train (or find) the part-segmentation backbone that init=pretrained uses")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a PretrainConfig key (model, input_hw, num_images, epochs, ...)")  # fmt: skip
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    sub.add_parser("reproduce", help="run the notebooks with papermill (python -m hdm.reproduce --help)",
                   add_help=False)  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success (``sys.exit`` code). Bad input exits with status 2 and one message."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["reproduce"]:
        from hdm import reproduce

        return reproduce.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            from hdm.engine import train

            cfg = _config(args)
            run = train(cfg, progress=args.progress)
            if run.metrics.size:
                print(run.metrics.tail(1).to_string(index=False))
            print(run.dir)
        elif args.command == "evaluate":
            from hdm.engine import evaluate

            check_device(args.device, "--device")  # as train checks it (torch raises a bare RuntimeError)
            metrics = evaluate(args.run, args.decoder, args.flip_test, split=args.split, device=args.device,
                               progress=args.progress, refresh=args.refresh)  # fmt: skip
            print(json.dumps(metrics, indent=2))
        elif args.command == "config":
            cfg = _config(args).resolved()
            print(json.dumps({**cfg.to_dict(), "hash": runs.run_hash(cfg), "run_dir": str(runs.run_dir(cfg))}, indent=2))
        elif args.command == "pretrain":
            from hdm.engine.pretraining import pretrain

            run = pretrain(pretrain_from_sets(_parse_sets(args.set)), progress=args.progress)
            if run.metrics.size:
                print(run.metrics.tail(1).to_string(index=False))
            print(run.dir)
        elif args.command == "runs":
            for run in runs.list_runs():
                print(f"{runs.status(run):10s} {run.dir}")
    except USER_ERRORS as exc:
        parser.exit(2, f"hdm {args.command}: error: {' '.join(str(exc).split())}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
