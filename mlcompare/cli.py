"""``mlcompare`` command line: list, run, report, eval, data preview|export."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from mlcompare.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlcompare", description="Metric learning or margin-based classification? "
                                     "Train both on the same backbone, data and budget, and compare.")
    parser.add_argument("--version", action="store_true", help="print mlcompare, torch and faiss versions and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="the named comparisons, one line each")
    sub.add_parser("doctor", help="torch, CUDA and faiss versions, which faiss build (cpu/gpu), and whether they see GPUs")

    run = sub.add_parser("run", help="train and evaluate every method of a comparison, then write the report")
    run.add_argument("comparison", help="a named comparison (see `mlcompare list`) or a FILE.toml")
    run.add_argument("--out", type=Path, help="run directory (default runs/NAME)")
    run.add_argument("--data", help="training data instead of the comparison's: synthfaces[:KEY=VALUE,...], imagefolder:PATH, recordio:DIR, digits")
    run.add_argument("--test-data", help="a separate test set (disjoint identities) instead of holding out training identities")
    run.add_argument("--workers", type=int,
                     help="leave an imagefolder/recordio training set on disk and decode its batches in N worker processes "
                          "(default 0: decode it into memory once)")
    run.add_argument("--device", default="auto", help="auto (GPU when torch sees one), cpu or cuda (default auto)")
    run.add_argument("--seeds", type=int, help="training seeds per method (overrides the comparison's)")
    run.add_argument("--steps", type=int, help="training steps per method (overrides the comparison's and --budget)")
    run.add_argument("--budget", choices=["quick", "standard", "long"],
                     help="length of training: the comparison's steps x1, x4 or x16 (default quick)")
    run.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                     help="autocast precision of the backbone (the losses stay float32); fp16 needs a GPU (default: the comparison's, fp32)")
    run.add_argument("--compile", action="store_true", default=None, help="torch.compile the backbone (pays off on long GPU runs)")
    run.add_argument("--force", action="store_true", help="replace an existing run directory (only once the new run is complete)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its checkpoints")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    rep = sub.add_parser("report", help="re-render the report of a run directory from its saved results (no training)")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--out", type=Path, help="write the report here instead of into RUN_DIR (e.g. reports/NAME)")

    ev = sub.add_parser("eval", help="score a trained model on a benchmark, without training")
    ev.add_argument("--checkpoint", type=Path, required=True, metavar="RUN_DIR/METHOD",
                    help="a run directory and the method to load, e.g. runs/quick/arcface")
    ev.add_argument("--seed", type=int, default=0, help="which seed's model (default 0)")
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a data spec: all its identities are the test set")
    source.add_argument("--bin", type=Path, help="an insightface verification .bin (lfw.bin, cfp_fp.bin, ...)")
    source.add_argument("--pairs", type=Path, help="LFW's pairs.txt (with --root)")
    ev.add_argument("--root", type=Path, help="the image folder that --pairs refers to")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", action="store_true", help="print the scores as JSON")

    data = sub.add_parser("data", help="look at a data source: a contact sheet, or export as an image folder")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    for name, text in (("preview", "write a contact sheet PNG (rows: identities, columns: images)"),
                       ("export", "write the data as an image folder (one sub-folder per identity)")):
        p = data_sub.add_parser(name, help=text)
        p.add_argument("spec", help="synthfaces[:KEY=VALUE,...], imagefolder:PATH or digits")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
        p.add_argument("--seed", type=int, default=0)
        if name == "preview":
            p.add_argument("--identities", type=int, default=8)
            p.add_argument("--images", type=int, default=8)
        else:
            p.add_argument("--force", action="store_true", help="replace an existing folder")
    return parser


def _list() -> None:
    from mlcompare import config

    for name in config.named():
        print(f"{name:24s} {config.load(name).description}")


def _run(args: argparse.Namespace) -> None:
    from mlcompare import config, runner

    cfg = runner.apply_overrides(config.load(args.comparison), data=args.data, test_data=args.test_data,
                                 seeds=args.seeds, steps=args.steps, budget=args.budget,
                                 precision=args.precision, compile=args.compile, workers=args.workers)
    out = args.out or Path("runs") / cfg.name
    try:
        done = runner.run(cfg, out, device=args.device, force=args.force, resume=args.resume, progress=not args.no_progress)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if os.environ.get("RANK", "0") == "0":
        print(f"report: {done / 'report.md'} and {done / 'report.html'}")


def _data(args: argparse.Namespace) -> None:
    from mlcompare import data
    from mlcompare.data import preview

    loaded = data.load(args.spec, size=args.size, seed=args.seed)
    if args.data_command == "preview":
        path = preview.contact_sheet(loaded, args.out, identities=args.identities, images=args.images)
    else:
        path = preview.export_imagefolder(loaded, args.out, force=args.force)
    print(path)


def _eval(args: argparse.Namespace) -> None:
    import json

    from mlcompare import evaluate
    from mlcompare.runner import resolve_device

    device = resolve_device(args.device)
    model, size = evaluate.load_model(args.checkpoint.parent, args.checkpoint.name, seed=args.seed)
    if args.data:
        scores = evaluate.on_data(model, size, args.data, device)
    elif args.bin:
        scores = evaluate.on_bin(model, size, args.bin, device)
    else:
        if args.root is None:
            raise UserError("--pairs needs --root, the folder its names refer to")
        scores = evaluate.on_pairs(model, size, args.pairs, args.root, device)
    if args.json:
        print(json.dumps(scores, indent=2, default=float))
    else:
        for key, value in scores.items():
            print(f"{key:16s} {'not measurable' if value is None else f'{value:.4f}' if isinstance(value, float) else value}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from mlcompare import doctor

        info = doctor.facts()
        print(f"mlcompare {info['mlcompare']} (torch {info['torch']}, CUDA {info['torch_cuda'] or 'none'}, "
              f"faiss {info['faiss'] or 'none'} {info['faiss_build'] or ''} build)")
        return 0
    if args.command is None:
        parser.error("a command is required (list, run, report, eval, data, doctor)")
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        if args.command == "list":
            _list()
        elif args.command == "doctor":
            from mlcompare import doctor

            print("\n".join(doctor.lines()))
        elif args.command == "run":
            _run(args)
        elif args.command == "report":
            from mlcompare import report

            print(report.render(args.run_dir, args.out) / "report.md")
        elif args.command == "data":
            _data(args)
        elif args.command == "eval":
            _eval(args)
    except (UserError, ValueError, FileExistsError, FileNotFoundError) as err:
        if os.environ.get("MLCOMPARE_DEBUG"):
            raise
        print(f"mlcompare: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlcompare: interrupted; continue with --resume", file=sys.stderr)
        return 130
    return 0
