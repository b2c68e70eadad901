"""Load exported folders with ``transformers`` alone (``import tpp`` fails meanwhile), then reload the
pruned files with tpp.

``python tests/zoo/hf_check.py MANIFEST THREADS TOLERANCE`` reads ``[{key, suite, model, pruned_file,
io_file, folder, auto}]``. First, with ``sys.modules["tpp"] = None`` so that any ``import tpp`` raises,
it loads each ``folder`` with ``transformers.<auto>.from_pretrained`` (default settings, as a user
would), runs the saved token ids in eval mode and compares the logits with the pruned model's:
"equal" when the relative max difference is within TOLERANCE. Only then is tpp allowed, and each
pruned file is reloaded as :mod:`tests.zoo.reload` does. Prints one JSON object
``{"export": {key: verdict}, "reload": {key: verdict}}``. Run as a script, not with ``-m``, so that
nothing of this repository is imported before the check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def _tpp_modules() -> list[str]:
    return sorted(
        name
        for name, module in sys.modules.items()
        if module is not None and (name == "tpp" or name.startswith("tpp."))
    )


def check(entry: dict, tolerance: float) -> str:
    """Load one folder with transformers and compare its logits with the saved ones."""
    import transformers

    try:
        model = getattr(transformers, entry["auto"]).from_pretrained(entry["folder"], local_files_only=True).eval()
        saved = torch.load(entry["io_file"], weights_only=True)
        with torch.no_grad():
            logits = model(**saved["inputs"]).logits
    except Exception as error:  # noqa: BLE001 - reported, never raised
        return f"from_pretrained failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
    expected = saved["logits"]
    if logits.shape != expected.shape:
        return f"logits {tuple(expected.shape)} -> {tuple(logits.shape)} from the folder"
    error = float((logits - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
    return "equal" if error <= tolerance else f"logits differ by {error:.2e} (relative)"


def main(argv: list[str]) -> int:
    torch.set_num_threads(int(argv[1]))
    entries = json.loads(open(argv[0]).read())
    exports = [e for e in entries if e.get("folder")]
    before = _tpp_modules()
    sys.modules["tpp"] = None  # type: ignore[assignment] # any `import tpp` (or tpp.*) now raises ImportError
    verdicts = {e["key"]: check(e, float(argv[2])) for e in exports}
    leaked = before or _tpp_modules()
    if leaked:
        verdicts = {key: f"tpp was imported ({leaked[0]})" for key in verdicts}
    del sys.modules["tpp"]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.zoo.reload
    from tests.zoo.reload import reload_one

    print(json.dumps({"export": verdicts, "reload": {e["key"]: reload_one(e) for e in entries}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
