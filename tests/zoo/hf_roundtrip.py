"""Language models of the zoo as ``from_pretrained`` folders: written by ``tpp.save_pretrained``, loaded
by ``transformers`` alone.

For every case that pruned exactly, the saved pruned file is read back with ``tpp.load_pruned`` (as
``tpp export --format hf`` does) and written with ``tpp.save_pretrained``. Then one fresh Python
process (:mod:`tests.zoo.hf_check`) first loads every folder with the family's Auto class while
``import tpp`` fails, comparing its logits with the pruned model's, and then reloads every pruned file
with tpp as :mod:`tests.zoo.reload` does (one process for both: each costs seconds of imports).
``case.export`` is ``"equal"`` or what went wrong; ``case.units`` names the widths pruned.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from tests.zoo.runner import EXACT_TOLERANCE, SEED, CaseResult, verdicts_of


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def units(base: torch.nn.Module, pruned: torch.nn.Module) -> str:
    """The widths that changed, e.g. ``MLP 64->32, heads 4->2, KV heads 2->1`` ("none" if none)."""
    from tpp.deploy.hf_config import layer_widths

    def summary(values: dict[str, int], per: int = 1) -> str:
        return "/".join(str(v) for v in sorted({v // per for v in values.values()}))

    head_dim = getattr(base.config, "head_dim", None) or base.config.hidden_size // base.config.num_attention_heads
    before, after = layer_widths(base), layer_widths(pruned)
    parts = []
    for kind, label, per in (("mlp", "MLP", 1), ("attention", "heads", head_dim), ("keys", "KV heads", head_dim)):
        old, new = summary(before[kind], per), summary(after[kind], per)
        if old != new:
            parts.append(f"{label} {old}->{new}")
    hidden = (base.get_input_embeddings().weight.shape[1], pruned.get_input_embeddings().weight.shape[1])
    if hidden[0] != hidden[1]:
        parts.append(f"hidden {hidden[0]}->{hidden[1]}")
    return ", ".join(parts) or "none"


def _export(case: CaseResult, out_dir: Path) -> str | None:
    """Write the case's folder; its path, or None with ``case.export`` saying why not."""
    import tpp
    from tests.zoo.suites import specs

    folder = out_dir / f"{case.suite}-{case.model}-{case.scope}-hf"
    try:
        torch.manual_seed(SEED)
        base = specs(case.suite)[case.model].build()
        pruned = tpp.load_pruned(case.pruned_file)
        case.units = units(base, pruned)
        # verify=False: the fresh process below checks the folder, without tpp
        tpp.save_pretrained(pruned, folder, verify=False)
    except tpp.TPPError as error:
        case.export = f"refused: {error}"
        return None
    except Exception as error:  # noqa: BLE001 - reported in the case, never raised
        case.export = f"RAW {_one_line(error)}"
        return None
    return str(folder)


def export_and_reload(cases: list[CaseResult], out_dir: Path) -> None:
    """Export every exactly pruned case, then check the folders (without tpp) and reload every saved
    file (with tpp) in one fresh process; fills ``case.export`` and ``case.reload``."""
    from tests.zoo.suites import specs

    saved = [c for c in cases if c.pruned_file]
    for case in cases:
        case.reload = case.save_note if not case.pruned_file and case.save_note else case.reload
    if not saved:
        return
    entries = []
    for case in saved:
        folder = _export(case, out_dir) if case.result == "exact" else None
        entries.append(
            {
                "key": case.key,
                "suite": case.suite,
                "model": case.model,
                "pruned_file": case.pruned_file,
                "io_file": case.io_file,
                "folder": folder,
                "auto": specs(case.suite)[case.model].auto_class,
            }
        )
    manifest = out_dir / "hf_check.json"
    manifest.write_text(json.dumps(entries))
    script = Path(__file__).with_name("hf_check.py")
    verdicts = verdicts_of(
        [sys.executable, str(script), str(manifest), str(torch.get_num_threads()), str(EXACT_TOLERANCE)], saved
    )
    if verdicts is None:
        return
    for case, entry in zip(saved, entries):
        case.reload = verdicts["reload"].get(case.key, "not reloaded")
        if entry["folder"]:
            case.export = verdicts["export"].get(case.key, "not checked")
