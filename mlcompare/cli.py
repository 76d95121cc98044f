"""``mlcompare`` command line: list, run, report, eval, data preview|export."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from mlcompare.config import limits
from mlcompare.errors import UserError


def _comparison_options(p: argparse.ArgumentParser) -> None:
    """The options of `run`, which `tune` takes too."""
    p.add_argument("comparison", help="a named comparison (see `mlcompare list`) or a FILE.toml")
    p.add_argument("--out", type=Path, help="run directory (default runs/NAME)")
    p.add_argument("--data", help="training data instead of the comparison's: synthfaces[:KEY=VALUE,...], imagefolder:PATH, recordio:DIR, digits")
    p.add_argument("--test-data", help="a separate test set (disjoint identities) instead of holding out training identities")
    p.add_argument("--workers", type=int,
                     help="leave an imagefolder/recordio training set on disk and decode its batches in N worker processes "
                          "(default 0: decode it into memory once)")
    p.add_argument("--device", default="auto", help="auto (GPU when torch sees one), cpu or cuda (default auto)")
    p.add_argument("--seeds", type=int, help="training seeds per method (overrides the comparison's)")
    p.add_argument("--steps", type=int, help="training steps per method (overrides the comparison's and --budget)")
    p.add_argument("--budget", choices=list(limits.BUDGETS),
                     help="length of training: the comparison's steps x1, x4 or x16 (default quick)")
    p.add_argument("--precision", choices=list(limits.PRECISIONS),
                     help="autocast precision of the backbone (the losses stay float32); fp16 needs a GPU (default: the comparison's, fp32)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the backbone (pays off on long GPU runs)")
    p.add_argument("--force", action="store_true", help="replace an existing run directory (only once the new run is complete)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (reading data, training, tuning)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="write TensorBoard event files under RUN/tensorboard/METHOD-sSEED (pip install mlcompare[tensorboard])")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                     help="set any comparison key by its dotted path (train.lr=1e-3, seeds=2, methods.NAME.params.m=0.3), "
                          "checked like the file; VALUE is read as TOML (a bare word is a string); repeatable; "
                          "the options above win over it")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlcompare", description="Metric learning or margin-based classification? "
                                     "Train both on the same backbone, data and budget, and compare.")
    parser.add_argument("--version", action="store_true", help="print mlcompare, torch and faiss versions and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="the named comparisons, one line each")
    sub.add_parser("doctor", help="torch, CUDA and faiss versions, which faiss build (cpu/gpu), and whether they see GPUs")
    losses_cmd = sub.add_parser("losses", help="every loss, one line each (name, family, paper, default parameters)")
    losses_cmd.add_argument("name", nargs="?", help="a loss (or pml:ClassName): print its docstring instead")

    run = sub.add_parser("run", help="train and evaluate every method of a comparison, then write the report",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="examples:\n"
                                "  mlcompare run quick --set train.p=8 --set train.lr=1e-3 --set seeds=2\n"
                                "  mlcompare run quick --set data.train=digits --set backbone.widths=[8,16] --set backbone.blocks=[1,1]\n"
                                "  mlcompare run batch-size --set sweep.values=[4,8] --set methods.arcface.params.m=0.3")
    _comparison_options(run)

    tune = sub.add_parser("tune", help="tune every method with the same search on validation folds (Optuna), "
                          "then retrain its default and best settings over seeds and test them",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog="examples:\n"
                                 "  mlcompare tune tuned --trials 8 --folds 3\n"
                                 "  mlcompare tune quick --trials 4 --set tuning.objective=accuracy --set tuning.prune=true")
    _comparison_options(tune)
    tune.add_argument("--trials", type=int, help="trials per method (overrides [tuning] trials, default 8)")
    tune.add_argument("--folds", type=int, help="identity-disjoint folds of the training identities (default 4)")
    tune.add_argument("--storage", metavar="URL", help="the Optuna storage of the studies, shared by every worker: "
                      "postgresql://USER@HOST/DB or redis://HOST:PORT/DB (pip install mlcompare[distributed]), "
                      "journal:///SHARED/FILE, mysql+pymysql://..., sqlite:///FILE (default: SQLite in RUN_DIR/tuning); "
                      "a password is never written to the run directory")
    tune.add_argument("--study", metavar="NAME", help="the tune's name in --storage (default: the run directory's name)")
    tune.add_argument("--jobs", type=int, default=1, metavar="N",
                      help="local worker processes running trials in parallel, cores // N threads each (default 1)")
    tune.add_argument("--join", type=Path, metavar="RUN_DIR",
                      help="be one more worker of the tune whose run directory (or a copy of its tuning/storage.json) "
                           "is RUN_DIR, e.g. on another machine: run trials until every method's budget is spent, "
                           "write nothing else (the tune's own process runs the final phase)")

    rep = sub.add_parser("report", help="re-render the report of a run directory from its saved results (no training)")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--out", type=Path, help="write the report here instead of into RUN_DIR (e.g. reports/NAME)")
    rep.add_argument("--force", action="store_true",
                     help="replace an existing report even when the run lacks rows its config lists (an unfinished run)")

    ev = sub.add_parser("eval", help="score a trained model on a benchmark, without training")
    ev.add_argument("--checkpoint", type=Path, required=True, metavar="RUN_DIR/METHOD",
                    help="a run directory and the method to load, e.g. runs/quick/arcface")
    ev.add_argument("--seed", type=int, default=0, help="which seed's model (default 0)")
    ev.add_argument("--fold", type=int, default=0, help="which cross-validation fold's model (runs with [crossval])")
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a data spec: all its identities are the test set")
    source.add_argument("--bin", type=Path, help="an insightface verification .bin (lfw.bin, cfp_fp.bin, ...)")
    source.add_argument("--pairs", type=Path, help="LFW's pairs.txt (with --root)")
    source.add_argument("--cfp", type=Path, metavar="DIR", help="CFP's folder (Protocol/ and Data/): its official "
                        "10-split protocol, --cfp-protocol FF or FP")
    ev.add_argument("--root", type=Path, help="the image folder that --pairs refers to")
    ev.add_argument("--cfp-protocol", choices=["FF", "FP"], default="FP",
                    help="CFP's frontal-frontal or frontal-profile pairs (default FP)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", action="store_true", help="print the scores as JSON")
    ev.add_argument("--fmr", type=float, nargs="+", metavar="F",
                    help="the threshold for each target false match rate on these pairs and the FNMR it gives "
                         "(with --data: every pair of images), e.g. --fmr 1e-3 1e-4")
    ev.add_argument("--threshold", type=float, metavar="T",
                    help="FMR and FNMR here of a threshold chosen elsewhere (accept iff cosine > T)")
    ev.add_argument("--erc", metavar="norm|truth|FILE.csv",
                    help="error-versus-reject: FNMR after rejecting the lowest-quality pairs, at each --fmr "
                         "(default 1e-2 1e-3), against random rejection; quality = feature norm, the data's "
                         "ground truth (synthfaces), or a CSV of path,quality (or row,quality)")
    ev.add_argument("--qmagface", action="store_true",
                    help="QMagFace's quality-aware score fitted on half the pairs (by identity with --data), "
                         "FNMR at each --fmr on the other half, plain against corrected")

    bb = sub.add_parser("backbones", help="every backbone, one line each (parameters and forward FLOPs)")
    bb.add_argument("names", nargs="*", help="backbones to describe (default: every named one), e.g. iresnet50 timm:resnet18")
    bb.add_argument("--size", type=int, default=112, help="input size in pixels (default 112)")
    bb.add_argument("--embedding-dim", type=int, default=512, help="embedding size (default 512)")

    em = sub.add_parser("embed", help="embed every image of a data spec with a trained model (.npy + CSV, or .parquet)")
    em.add_argument("--checkpoint", type=Path, required=True, metavar="RUN_DIR/METHOD",
                    help="a run directory and the method to load, e.g. runs/quick/arcface")
    em.add_argument("--data", required=True, help="a data spec: imagefolder:PATH, recordio:DIR, synthfaces, digits")
    em.add_argument("--out", type=Path, required=True, help="FILE.npy (a FILE.csv of paths and identities beside it) or FILE.parquet")
    em.add_argument("--normalize", action="store_true", help="L2-normalise each embedding")
    em.add_argument("--seed", type=int, default=0, help="which seed's model (default 0)")
    em.add_argument("--batch-size", type=int, default=256)
    em.add_argument("--device", default="auto")
    em.add_argument("--no-progress", action="store_true", help="no progress bar")
    em.add_argument("--force", action="store_true", help="replace existing output files (FILE.npy and its FILE.csv)")

    ex = sub.add_parser("export", help="export a trained backbone to ONNX, checked against torch with onnxruntime")
    ex.add_argument("--checkpoint", type=Path, required=True, metavar="RUN_DIR/METHOD",
                    help="a run directory and the method to load, e.g. runs/quick/arcface")
    ex.add_argument("--onnx", type=Path, required=True, help="the FILE.onnx to write")
    ex.add_argument("--seed", type=int, default=0, help="which seed's model (default 0)")
    ex.add_argument("--check-data", help="a data spec whose first images check the export (default: the run's data)")

    data = sub.add_parser("data", help="look at a data source: a contact sheet, or export as an image folder")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    for name, text in (("preview", "write a contact sheet PNG (rows: identities, columns: images)"),
                       ("export", "write the data as an image folder (one sub-folder per identity)"),
                       ("stats", "print identities, images per identity, image sizes and sub-folder kinds")):
        p = data_sub.add_parser(name, help=text)
        p.add_argument("spec", help="synthfaces[:KEY=VALUE,...], imagefolder:PATH[,nested=true], cfp:DIR, recordio:DIR or digits")
        if name == "stats":
            p.add_argument("--size", type=int, default=32, help="generated sources' image size (default 32)")
            p.add_argument("--seed", type=int, default=0)
            continue
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
        p.add_argument("--seed", type=int, default=0)
        if name == "preview":
            p.add_argument("--identities", type=int, default=8)
            p.add_argument("--images", type=int, default=8)
            p.add_argument("--sort", choices=["degradation"], help="order each row from least to most degraded "
                           "(synthfaces only: the sources that know each image's quality)")
        else:
            p.add_argument("--force", action="store_true", help="replace an existing folder")
    return parser


def _losses(args: argparse.Namespace) -> None:
    from mlcompare.losses import catalog

    try:
        print(catalog.describe(args.name) if args.name else "\n".join(catalog.lines()))
    except ValueError as err:
        raise UserError(str(err)) from err


def _list() -> None:
    from mlcompare.config import comparison as config

    for name in config.named():
        print(f"{name:24s} {config.load(name).description}")


def _run(args: argparse.Namespace, argv: list[str]) -> None:
    from mlcompare.config import comparison as config
    from mlcompare.run import provenance

    sets = list(args.sets)
    if args.command == "tune":  # --trials / --folds are [tuning] keys: checked like the file
        sets += [f"tuning.{key}={value}" for key, value in (("trials", args.trials), ("folds", args.folds)) if value is not None]
    options = {"data": args.data, "test_data": args.test_data, "seeds": args.seeds, "steps": args.steps,
               "budget": args.budget, "precision": args.precision, "compile": args.compile, "workers": args.workers,
               "tensorboard": args.tensorboard}  # the same edits as --set (config.option_sets), applied after it
    cfg = config.load(args.comparison, sets=sets, options=options)
    from mlcompare.report.render import render  # after the config is checked: a bad value fails before torch loads
    from mlcompare.run import runner
    from mlcompare.train import distributed
    from mlcompare.tune import tuning

    if args.command == "tune" and args.join is not None:
        if args.jobs != 1 or args.out or args.force or args.resume:
            raise UserError("--join runs one worker of an existing tune: leave out --jobs, --out, --force and --resume")
        ran = tuning.join(cfg, args.join, device=args.device, storage=args.storage, study=args.study)
        print(f"worker done: {ran} trial(s) run here; the tune's own process writes the report")
        return
    out = args.out or Path("runs") / cfg.name
    command = tuning.tune if args.command == "tune" else runner.run
    options = {"storage": args.storage, "study": args.study, "jobs": args.jobs} if args.command == "tune" else {}
    try:
        done = command(cfg, out, device=args.device, force=args.force, resume=args.resume, progress=not args.no_progress,
                       command=provenance.command_line(argv), render=render, **options)
    finally:
        distributed.leave()
    if os.environ.get("RANK", "0") == "0":
        print(f"report: {done / 'report.md'} and {done / 'report.html'}")


def _report(args: argparse.Namespace) -> None:
    from mlcompare.report.render import render
    from mlcompare.run import runlock

    running = runlock.holder(args.run_dir)
    if running and (args.out is None or args.out.resolve() == args.run_dir.resolve()):
        raise UserError(f"the run in '{args.run_dir}' is still going ({running}); it writes its report when it ends "
                        "(nothing was written): wait, or give --out DIR for a report of its rows so far")
    if running:
        warnings.warn(f"the run in '{args.run_dir}' is still going ({running}): this report shows only its rows so far",
                      stacklevel=1)
    print(render(args.run_dir, args.out, force=args.force) / "report.md")


def _data(args: argparse.Namespace) -> None:
    from mlcompare import data
    from mlcompare.data import preview

    if args.data_command == "stats":  # files stay on disk: only their headers are read
        from mlcompare.data import summary

        print("\n".join(summary.describe(data.load(args.spec, size=args.size, seed=args.seed, stream=True))))
        return
    loaded = data.load(args.spec, size=args.size, seed=args.seed)
    if args.data_command == "preview":
        path = preview.contact_sheet(loaded, args.out, identities=args.identities, images=args.images, sort=args.sort)
    else:
        path = preview.export_imagefolder(loaded, args.out, force=args.force)
        if loaded.quality is not None:
            print(preview.quality_csv_path(path))  # each image's nuisance strengths and degradation
    print(path)


def _backbones(args: argparse.Namespace) -> None:
    import dataclasses

    from mlcompare import backbones
    from mlcompare.config import comparison as config

    config.check_range("data.size", args.size, "--size")
    config.check_range("backbone.embedding_dim", args.embedding_dim, "--embedding-dim")
    for name in args.names or list(backbones.REGISTRY):
        cfg = dataclasses.replace(config.BackboneConfig(), name=name, embedding_dim=args.embedding_dim)
        print(backbones.cost_text(backbones.cost(cfg, image_size=args.size)))
    if not args.names:
        print(f"{backbones.TIMM_PREFIX}NAME: any timm model with our embedding head (pip install mlcompare[timm]); "
              f"e.g. mlcompare backbones {backbones.TIMM_PREFIX}resnet18")


def _embed(args: argparse.Namespace) -> None:
    from mlcompare.run.runner import resolve_device
    from mlcompare.use import embed

    written = embed.main(args.checkpoint, args.data, args.out, seed=args.seed, device=resolve_device(args.device),
                         normalize=args.normalize, batch_size=args.batch_size, progress=not args.no_progress,
                         force=args.force)
    print("\n".join(map(str, written)))


def _export(args: argparse.Namespace) -> None:
    from mlcompare.use import export

    check = export.main(args.checkpoint, args.onnx, seed=args.seed, check_data=args.check_data)
    print(f"{args.onnx}: onnxruntime vs torch on {check.images} images: max abs diff {check.max_abs_diff:.3g} "
          f"({check.relative:.3g} of the largest value; limit {export.RELATIVE_TOLERANCE:g})")


def _eval(args: argparse.Namespace) -> None:
    import json

    from mlcompare.use import evaluate

    source = evaluate.Source(data=args.data, bin=args.bin, cfp=args.cfp, cfp_protocol=args.cfp_protocol, pairs=args.pairs,
                             root=args.root)
    scores, extra, pairs = evaluate.evaluate(args.checkpoint, source, args.device, seed=args.seed,
                                             fold=args.fold, fmr=args.fmr, threshold=args.threshold, erc=args.erc,
                                             qmagface=args.qmagface)
    if args.json:
        print(json.dumps(scores | extra, indent=2, default=float))
        return
    for key, value in scores.items():
        print(f"{key:16s} {'not measurable' if value is None else f'{value:.4f}' if isinstance(value, float) else value}")
    if pairs is not None:
        print("\n".join(evaluate.pair_lines(extra, len(pairs.same), int(pairs.same.sum()))))


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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.version:
        from mlcompare import doctor

        info = doctor.facts()
        print(f"mlcompare {info['mlcompare']} (torch {info['torch']}, CUDA {info['torch_cuda'] or 'none'}, "
              f"faiss {info['faiss'] or 'none'} {info['faiss_build'] or ''} build)")
        return 0
    if args.command is None:
        parser.error("a command is required (list, run, report, eval, data, doctor, losses)")
    from mlcompare.run import runlock

    previous_format, locks = warnings.formatwarning, runlock.held()
    warnings.formatwarning = _one_line_warning
    try:
        if args.command == "list":
            _list()
        elif args.command == "doctor":
            from mlcompare import doctor

            print("\n".join(doctor.lines()))
        elif args.command == "losses":
            _losses(args)
        elif args.command in ("run", "tune"):
            _run(args, argv)
        elif args.command == "report":
            _report(args)
        elif args.command == "data":
            _data(args)
        elif args.command == "eval":
            _eval(args)
        elif args.command == "backbones":
            _backbones(args)
        elif args.command == "embed":
            _embed(args)
        elif args.command == "export":
            _export(args)
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
        runlock.release_since(locks)  # a run that ended early gives its run directory back
    return 0
