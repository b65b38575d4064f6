"""``edge-seg train``: a thin shell over ``train.trainer.train``."""

import math

import click

from edge_runtime.errors import EdgeSegError


@click.command(context_settings={"show_default": True})
@click.option("--variant", default="resunet_ag", help="Model variant (see --list).")
@click.option("--preset", default="edge", help="Model size preset (see --list).")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Labelled scans: figshare layout or images/+masks/. Repeatable.")
@click.option("--negatives", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of tumour-free scans (empty masks). Repeatable.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Run folder (runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option("--epochs", default=60, type=click.IntRange(1))
@click.option("--batch-size", default=16, type=click.IntRange(1))
@click.option("--patch-size", default=128, type=click.IntRange(16),
              help="Training patch side; the network runs on the whole scan afterwards.")
@click.option("--lr", "learning_rate", default=2e-3, type=click.FloatRange(0, min_open=True))
@click.option("--seed", default=0, type=int)
@click.option("--split-seed", type=int, default=None,
              help="Seed of the train/validation split (default: --seed). With another "
                   "--seed, trains a second seed on the same split.")
@click.option("--val-fraction", default=0.2, type=click.FloatRange(0, 1, min_open=True,
                                                                   max_open=True))
@click.option("--patience", default=15, type=click.IntRange(1), help="Early stopping epochs.")
@click.option("--max-epochs-now", type=click.IntRange(1), default=None,
              help="Stop after this many epochs in this call (resume later).")
@click.option("--base-filters", type=click.IntRange(1), default=None,
              help="Override the preset's width.")
@click.option("--input-size", type=click.IntRange(16), default=None,
              help="Override the preset's input size.")
@click.option("--warmup-epochs", default=2, type=click.IntRange(0),
              help="Linear learning-rate warm-up before the cosine decay.")
@click.option("--tumour-centred", default=0.9, type=click.FloatRange(0, 1),
              help="Share of patches centred on a tumour pixel (the rest are random crops).")
@click.option("--loss", default="dice_bce", show_default=True,
              type=click.Choice(["dice_bce", "scan_dice_bce", "dice", "scan_dice", "bce"]),
              help="Training loss: Dice pooled over the batch (dice*) or averaged per scan "
                   "(scan_dice*), with or without binary cross-entropy.")
@click.option("--twin-similarity", default=0.98, type=click.FloatRange(0, 1),
              help="Leave out training tumour-free scans at least this similar to a "
                   "validation scan (copies, neighbouring slices); 0 keeps them all.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from the weights of this .keras model (fine-tuning: a new run "
                   "folder, a fresh optimizer and schedule).")
@click.option("--encoder-weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Initialise the variant's pretrained encoder from this file (lite0_unet: "
                   "an EfficientNet-Lite0 ImageNet .npz, docs/LITE0.md); recorded in "
                   "config.json with its sha256.")
@click.option("--context", default=0, type=click.IntRange(0, 3),
              help="Research: also feed this many neighbouring slices on each side as input "
                   "channels (runs/CONTEXT.md). Such a run is scored by python -m "
                   "bench.lab.context_probe; it cannot be reported at full resolution or "
                   "exported (the runtime takes one slice).")
@click.option("--split-by-source", is_flag=True,
              help="Split each --data/--negatives folder on its own (by its families), so a "
                   "folder's split does not change when another is added (runs/ROBUST.md).")
@click.option("--val-fraction-of", "val_fraction_of", multiple=True, metavar="NAME=FRACTION",
              help="With --split-by-source: the validation share of the folder named NAME "
                   "(e.g. brisc=0.5); the others take --val-fraction. Repeatable.")
@click.option("--augment", default="", metavar="NAMES",
              help="Scanner-difference augmentations, comma-separated: contrast, lowres, "
                   "blur, bias, noise, jpeg (train.data.SCANNER_AUGMENTATIONS).")
@click.option("--teacher", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A bundle whose probability maps are a second training target (repeat: "
                   "their mean); it must preprocess as the run does (runs/DISTILL.md).")
@click.option("--distill-weight", default=1.0, show_default=True,
              type=click.FloatRange(0, min_open=True),
              help="Weight of the cross-entropy towards the teacher's maps.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]),
              default="default", help="tf.distribute strategy (multiworker reads TF_CONFIG).")
@click.option("--jit/--no-jit", "jit", default=None,
              help="Compile the training step with XLA (default: the variant family's choice: "
                   "on for Res-UNets, off for lite0_unet, where it is ~8x slower on CPU).")
@click.option("--report", "report_only", is_flag=True,
              help="Only (re)write the run's validation report (report.json) from best.keras.")
@click.option("--list", "list_only", is_flag=True, help="List variants and presets and exit.")
def train(variant, preset, data, negatives, out_dir, resume, epochs, batch_size, patch_size,
          learning_rate, seed, split_seed, val_fraction, patience, max_epochs_now, base_filters,
          input_size,
          warmup_epochs, tumour_centred, loss, twin_similarity, init_from, encoder_weights,
          context,
          split_by_source, val_fraction_of, augment, teacher, distill_weight, strategy, jit,
          report_only, list_only):
    """Train a segmentation variant on labelled scans, split by patient family."""
    from edge_seg.train.models import describe
    from edge_seg.train.trainer import TrainConfig, is_chief_process
    from edge_seg.train.trainer import train as run_training

    if list_only:
        d = describe()
        click.echo("variants:")
        for name, text in d["variants"].items():
            click.echo(f"  {name:14s} {text}")
        for family, presets in d["presets"].items():
            click.echo(f"presets of {', '.join(d['families'][family])}:")
            for name, text in presets.items():
                click.echo(f"  {name:14s} {text}")
        return
    if not out_dir:
        raise click.UsageError("--out is required")
    if report_only:
        _report(out_dir)
        return
    if not resume and not data:
        raise click.UsageError("--data is required (unless --resume)")
    fractions = _fractions(val_fraction_of)
    if fractions and not split_by_source:
        raise click.UsageError("--val-fraction-of needs --split-by-source")
    from edge_seg.train.data import check_scanner_augment
    try:
        augment = check_scanner_augment(augment.split(","))
    except ValueError as exc:
        raise click.UsageError(f"--augment: {exc}") from None
    cfg = TrainConfig(variant=variant, preset=preset, data=list(data),
                      negatives=list(negatives), epochs=epochs, batch_size=batch_size,
                      patch_size=patch_size, learning_rate=learning_rate, seed=seed,
                      split_seed=split_seed,
                      val_fraction=val_fraction, patience=patience, base_filters=base_filters,
                      input_size=input_size, warmup_epochs=warmup_epochs,
                      tumour_centred=tumour_centred, loss=loss, twin_similarity=twin_similarity,
                      init_from=str(init_from) if init_from else None, context=context,
                      encoder_weights=str(encoder_weights) if encoder_weights else None,
                      strategy=strategy, jit_compile=jit,
                      split_by_source=split_by_source, val_fractions=fractions or None,
                      augment=augment, teacher=[str(t) for t in teacher],
                      distill_weight=distill_weight)
    try:
        from edge_seg.train.models.registry import model_config
        # validate names (with suggestions) and options early
        model_config(variant, preset, base_filters=base_filters, input_size=input_size,
                     encoder_weights=encoder_weights)
        if teacher and context:
            raise ValueError("--teacher takes one-slice runs; it cannot be used with --context")
        if encoder_weights and init_from:
            raise ValueError("--encoder-weights and --init-from both set the starting "
                             "weights; give one")
        state = run_training(cfg, out_dir, resume=resume,
                             log=lambda m: click.echo(m, err=True),
                             max_epochs_this_call=max_epochs_now)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    except EdgeSegError as exc:
        click.echo(f"edge-seg train: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    click.echo(f"epoch {state['epoch']}: best validation Dice {state['best_val_dice']:.4f} "
               f"(epoch {state['best_epoch']})", err=True)
    from edge_seg.train.trainer import saved_context
    trained_context = saved_context(out_dir)
    if trained_context:
        click.echo(f"trained with --context {trained_context}: score it with python -m "
                   f"bench.lab.context_probe CONTROL_RUN {out_dir}", err=True)
    elif state.get("finished") and state.get("best_epoch") and is_chief_process(strategy):
        _report(out_dir)  # multi-worker: the chief only


def _fractions(items):
    """('brisc=0.5', ...) -> {'brisc': 0.5}; a one-line usage error otherwise."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            f = float(value)
        except ValueError:
            f = None
        if not sep or not name or f is None or not 0.0 < f < 1.0:
            raise click.UsageError(f"--val-fraction-of {item!r}: expected NAME=FRACTION with "
                                   f"0 < FRACTION < 1, e.g. brisc=0.5")
        out[name] = f
    return out


def _report(out_dir):
    """Full-resolution validation report + post-processing chosen on validation."""
    from pathlib import Path

    from edge_seg.train.report import final_report
    if not (Path(out_dir) / "best.keras").is_file():
        raise click.ClickException(f"{out_dir}: no best.keras to report on")
    try:
        rep = final_report(out_dir, progress=True, log=lambda m: click.echo(m, err=True))
    except EdgeSegError as exc:
        raise click.ClickException(str(exc)) from None
    ci = (((rep.get("summary") or {}).get("by_patient") or {}).get("bootstrap") or {}).get(
        "dice_mean_ci95") or []
    interval = (f" [95 % over patients {ci[0]:.3f}-{ci[1]:.3f}]"
                if len(ci) == 2 and all(v is not None and math.isfinite(v) for v in ci) else "")
    click.echo(f"report: {Path(out_dir) / 'report.json'}: Dice {rep['dice_mean']:.4f}"
               f"{interval}, "
               f"2-class mIoU (pooled) {rep['miou_2class_pooled']:.4f}, tumour-free scans "
               f"flagged {rep['fp_scan_rate']:.3f} (threshold {rep['threshold']}, "
               f"min_area_fraction {rep['min_area_fraction']}, min_peak_probability "
               f"{rep['min_peak_probability']})", err=True)
    by_source = (rep.get("summary") or {}).get("by_source") or {}
    if len(by_source) > 1:
        from edge_runtime.commands.evaluate import source_lines
        for line in source_lines(by_source, rep["summary"].get("worst_source") or {}):
            click.echo(line, err=True)
