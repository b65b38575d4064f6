"""One line on how a run was trained (its recipe and how far it got), for tables and model
cards. Pure Python: reads the dicts of config.json and state.json, imports nothing heavy."""

from pathlib import Path


def training_recipe(config, state=None):
    """One line on how a run was trained, from its config.json (and, when given, its
    state.json: progress, early stop, best epoch)."""
    cfg = config or {}
    if isinstance(cfg.get("soup"), dict):   # train.soup: an average of two runs' weights
        sp = cfg["soup"]
        w = float(sp.get("weight", 0.5))
        return (f"weights averaged: {1 - w:g} x {Path(str(sp.get('a', '?'))).name} + "
                f"{w:g} x {Path(str(sp.get('b', '?'))).name}")
    parts = [f"{cfg.get('epochs', '?')} epochs"]
    if cfg.get("init_from"):
        parts.append(f"from {Path(str(cfg['init_from'])).parent.name or cfg['init_from']}")
    how = cfg.get("trained_with") if isinstance(cfg.get("trained_with"), dict) else {}
    size = cfg.get("patch_size", "?")
    shape = f"whole {size}-px scans" if how.get("whole_scans") else f"{size}-px patches"
    parts.append(f"{shape}, lr {cfg.get('learning_rate', '?')}")
    if how.get("trainer"):
        parts[-1] += f", {how['trainer']} ({how.get('backend', '?')})"
    if cfg.get("loss") and cfg["loss"] != "dice_bce":   # the default loss goes unsaid
        parts.append(f"loss {cfg['loss']}")
    if how.get("epochs_fitted_to_minutes"):
        parts.append(f"epochs fitted to {how['epochs_fitted_to_minutes']} min")
    if isinstance(state, dict) and state.get("epoch") is not None:
        if not state.get("finished"):
            parts.append(f"IN PROGRESS: epoch {state['epoch']} of {cfg.get('epochs', '?')}")
        elif state["epoch"] < (cfg.get("epochs") or 0):
            parts.append(f"early stop at {state['epoch']}")
        if state.get("best_epoch"):
            parts.append(f"best epoch {state['best_epoch']}")
    return ", ".join(parts)
