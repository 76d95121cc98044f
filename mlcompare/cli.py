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

    run = sub.add_parser("run", help="train and evaluate every method of a comparison, then write the report",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="examples:\n"
                                "  mlcompare run quick --set train.p=8 --set train.lr=1e-3 --set seeds=2\n"
                                "  mlcompare run quick --set data.train=digits --set backbone.widths=[8,16] --set backbone.blocks=[1,1]\n"
                                "  mlcompare run batch-size --set sweep.values=[4,8] --set methods.arcface.params.m=0.3")
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
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                     help="set any comparison key by its dotted path (train.lr=1e-3, seeds=2, methods.NAME.params.m=0.3), "
                          "checked like the file; VALUE is read as TOML (a bare word is a string); repeatable; "
                          "the options above win over it")

    rep = sub.add_parser("report", help="re-render the report of a run directory from its saved results (no training)")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--out", type=Path, help="write the report here instead of into RUN_DIR (e.g. reports/NAME)")
    rep.add_argument("--force", action="store_true",
                     help="replace an existing report even when the run lacks rows its config lists (an unfinished run)")

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
    from mlcompare import config

    cfg = config.apply_overrides(config.load(args.comparison, sets=args.sets), data=args.data, test_data=args.test_data,
                                 seeds=args.seeds, steps=args.steps, budget=args.budget,
                                 precision=args.precision, compile=args.compile, workers=args.workers)
    from mlcompare import runner  # after the config is checked: a bad value fails before torch loads

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


def _one_line_warning(message: Warning | str, category: type[Warning], *rest: object) -> str:
    return f"warning: {message}\n"


def _report_bug() -> None:
    """Print the traceback of the exception being handled and a line saying it is our bug."""
    import traceback

    from mlcompare import __version__

    traceback.print_exc()
    print(f"mlcompare: this is a bug in mlcompare {__version__}, not a problem with your input; please report it "
          "with the traceback above and the output of `mlcompare doctor`", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status is 0 when it is done, 2 for bad input (a
    :class:`~mlcompare.errors.UserError`, shown as one line), 1 for anything else (a bug in mlcompare:
    its traceback and a line asking to report it; returned, not re-raised, so that the console script
    and ``main()`` called from Python behave alike) and 130 when interrupted. ``MLCOMPARE_DEBUG=1``
    re-raises instead. Warnings are printed as one ``warning: ...`` line while the command runs, and
    ``warnings.formatwarning`` is restored afterwards (``main()`` may be called from a longer-lived process).
    """
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
    previous_format = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
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

            print(report.render(args.run_dir, args.out, force=args.force) / "report.md")
        elif args.command == "data":
            _data(args)
        elif args.command == "eval":
            _eval(args)
    except UserError as err:
        if os.environ.get("MLCOMPARE_DEBUG"):
            raise
        print("mlcompare: error: " + " ".join(str(err).splitlines()), file=sys.stderr)  # one line, whatever the message
        return 2
    except KeyboardInterrupt:
        print("mlcompare: interrupted; continue with --resume", file=sys.stderr)
        return 130
    except Exception:  # not the user's input: keep the traceback, and say where to send it
        if os.environ.get("MLCOMPARE_DEBUG"):
            raise
        _report_bug()
        return 1
    finally:
        warnings.formatwarning = previous_format
    return 0
