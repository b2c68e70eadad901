"""Run one zoo case: build TPPPruner on a third-party model, train a few steps, prune, check.

A case is one (model, scope). It ends as one of :data:`RESULTS`:

* ``exact``: ``prune()`` returned a model whose eval output equals the zeroed model's (relative max
  error <= :data:`EXACT_TOLERANCE`);
* ``refused at build``: ``TPPPruner(...)`` raised a :class:`tpp.errors.TPPError` (the contract's
  only allowed refusal);
* ``refused in training`` / ``refused at prune``: a ``TPPError`` later on (counted against the
  pass rate; after a refused ``prune()`` the model and optimizer must be exactly as before);
* ``inexact``: ``prune()`` returned a model that computes something else;
* ``RAW``: any other exception; ``HANG``: a stage ran past :data:`STAGE_SECONDS`.

The pruned model is saved with ``tpp.save_pruned`` and reloaded later in a fresh process
(:mod:`tests.zoo.reload`), which must reproduce its outputs bit for bit.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from tests.loop import pruner_step
from tests.zoo.snapshot import differences, snapshot
from tests.zoo.spec import ModelSpec

RESULTS = ("exact", "refused at build", "refused in training", "refused at prune", "inexact", "RAW", "HANG")
SCOPES = ("internal", "all")
EXACT_TOLERANCE = 1e-5
STAGE_SECONDS = 60  # default bound on each stage; a suite may set its own (see tests.zoo.suites)
SEED = 0
# A short schedule: lambda reaches its ceiling in 3 steps, then 3 stabilisation steps zero the
# pruned filters; small enough that the gram term (weight 1000) cannot blow the weights up.
SCHEDULE = dict(reg_step=1e-3, reg_interval=1, reg_ceiling=3e-3, stabilize_iters=3, zero_out_interval=1)
LEARNING_RATE = 1e-3


@dataclass
class CaseResult:
    """What happened to one (model, scope) case; plain data, so it goes to JSON as is."""

    suite: str
    model: str
    scope: str
    inputs: str  # "tensor" or "dict"
    result: str = ""
    reason: str = ""  # the TPPError message, or "Type: message" of a raw error, or the hung stage
    where: str = ""  # innermost tpp / torch_pruning / library frame of a raw error or hang
    error: float | None = None  # relative max error, pruned vs zeroed, eval mode
    params: tuple[int, int] | None = None  # before -> after
    flops: tuple[int, int] | None = None
    count_note: str = ""  # why params/FLOPs are missing
    changed: list[str] = field(default_factory=list)  # what a refused prune() left changed
    optimizer_note: str = ""  # after prune(): optimizer not pointing at the model's parameters
    pruned_file: str = ""
    io_file: str = ""
    save_note: str = ""
    reload: str = ""  # "identical", or what went wrong in the fresh process
    units: str = ""  # language models: the widths pruned ("MLP 64->32, heads 4->2")
    export: str = ""  # language models: "equal" (from_pretrained without tpp), or what went wrong
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.model}/{self.scope}"

    @property
    def meets_contract_exactly(self) -> bool:
        """Pruned exactly and reloaded identically in a fresh process."""
        return self.result == "exact" and self.reload == "identical"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Hang(BaseException):
    """A stage ran out of time (BaseException, so ``except Exception`` in the code under test cannot eat it)."""


@contextlib.contextmanager
def time_limit(stage: str, seconds: float = STAGE_SECONDS) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``."""

    def fire(signum, frame):
        raise Hang(f"{stage} ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(
    suite: str, spec: ModelSpec, scope: str, out_dir: Path, stage_seconds: float = STAGE_SECONDS
) -> CaseResult:
    """Run the whole case for ``spec`` under ``scope``, each stage bounded by ``stage_seconds``;
    files go to ``out_dir``."""
    case = CaseResult(suite, spec.name, scope, "dict" if spec.dict_inputs else "tensor")
    start = time.perf_counter()
    torch.manual_seed(SEED)
    model = spec.build()
    inputs = spec.inputs()
    original = eval_logits(model, inputs)
    if not torch.isfinite(original).all() or original.dim() not in (2, 3):  # 3: (batch, tokens, vocabulary)
        raise AssertionError(f"zoo model {spec.name} is broken before pruning: logits {tuple(original.shape)}")
    stages = ["build"]  # _run_stages appends each stage it enters
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _run_stages(case, model, inputs, out_dir, stages, stage_seconds, getattr(spec, "options", {}))
        case.warnings = sorted({str(w.message).splitlines()[0] for w in caught if "tpp" in str(w.message)})
    except Hang as hang:
        case.result, case.reason, case.where = "HANG", str(hang), _where(hang)
    except Exception as error:  # classified, never re-raised: one case must not stop the zoo
        from tpp.errors import TPPError

        stage = stages[-1]
        if isinstance(error, TPPError):
            case.result = {"build": "refused at build", "train": "refused in training"}.get(stage, "refused at prune")
            case.reason = str(error)
        else:
            case.result, case.reason, case.where = "RAW", f"{stage}: {_one_line(error)}", _where(error)
    case.seconds = round(time.perf_counter() - start, 2)
    return case


def _run_stages(
    case: CaseResult, model, inputs, out_dir: Path, stages: list[str], limit: float, options: dict[str, Any]
) -> None:
    import tpp
    from tpp.util.inputs import call_model, logits_of

    before = _count(case, model, inputs, limit)
    with time_limit("TPPPruner(...)", limit):
        pruner = tpp.TPPPruner(model, inputs, ratio=0.5, scope=case.scope, **SCHEDULE, **options)

    stages.append("train")
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9)
    with time_limit("training loop", limit):
        logits = logits_of(call_model(model, inputs))
        target = torch.randint(0, logits.shape[-1], logits.shape[:-1], generator=torch.Generator().manual_seed(SEED))
        for _ in range(pruner.total_iterations):
            logits = logits_of(call_model(model, inputs))  # a language model's: one class per token
            pruner_step(pruner, optimizer, F.cross_entropy(logits.flatten(0, -2), target.flatten()))
            if pruner.done:
                break
        pruner.zero_pruned()
    reference = eval_logits(model, inputs)
    saved = snapshot(model, optimizer)

    stages.append("prune")
    try:
        with time_limit("prune()", limit):
            pruned = pruner.prune(optimizer)
    except BaseException:  # a refusal, a raw error or a hang: all must leave everything as it was
        case.changed = differences(saved, snapshot(model, optimizer))
        try:
            if not torch.equal(eval_logits(model, inputs), reference):
                case.changed.append("eval output differs from before prune()")
        except Exception as error:
            case.changed.append(f"the model no longer runs ({_one_line(error)})")
        raise
    pruned.eval()
    output = eval_logits(pruned, inputs)
    case.error = relative_error(output, reference)
    if case.error is not None and case.error <= EXACT_TOLERANCE:  # False for NaN too
        case.result = "exact"
    else:
        case.result = "inexact"
        if case.error is None:
            case.reason = f"output shape {tuple(reference.shape)} -> {tuple(output.shape)}"
        elif not torch.isfinite(reference).all():
            case.reason = "the zeroed model's output is not finite (training diverged)"
        else:
            case.reason = f"pruned output differs from the zeroed model's by {case.error:.2e} (relative)"
    case.optimizer_note = _optimizer_note(optimizer, pruned)

    stages.append("count")
    after = _count(case, pruned, inputs, limit)
    if before is not None and after is not None:
        case.params, case.flops = (before.params, after.params), (before.flops, after.flops)
    _save(case, pruned, inputs, output, out_dir)


def eval_logits(model: torch.nn.Module, inputs: Any) -> torch.Tensor:
    """The logits of ``model`` on ``inputs`` in eval mode, without touching its training flags."""
    from tpp.util.inputs import call_model, logits_of

    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            return logits_of(call_model(model, inputs)).detach().clone()
    finally:
        for module, mode in modes.items():
            module.train(mode)


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float | None:
    """``max|output - reference| / max|reference|``; None when the shapes differ."""
    if output.shape != reference.shape:
        return None
    scale = reference.abs().max().clamp_min(1e-12)
    return float((output - reference).abs().max() / scale)


def _count(case: CaseResult, model, inputs, limit: float):
    import tpp

    try:
        with time_limit("tpp.count", limit):
            return tpp.count(model, inputs)
    except Exception as error:
        case.count_note = case.count_note or f"tpp.count failed: {_one_line(error)}"
        return None


def _save(case: CaseResult, model, inputs, output: torch.Tensor, out_dir: Path) -> None:
    import tpp

    stem = f"{case.suite}-{case.model}-{case.scope}"
    try:
        tpp.save_pruned(model, out_dir / f"{stem}.pt")
        torch.save({"inputs": inputs, "logits": output}, out_dir / f"{stem}-io.pt")
    except Exception as error:
        case.save_note = f"save_pruned failed: {_one_line(error)}"
        return
    case.pruned_file, case.io_file = str(out_dir / f"{stem}.pt"), str(out_dir / f"{stem}-io.pt")


def _optimizer_note(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> str:
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    current = {id(p) for p in model.parameters()}
    if held == current:
        return ""
    return (
        f"optimizer holds {len(held - current)} tensors that are not the model's, "
        f"misses {len(current - held)} of the model's parameters"
    )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def _where(error: BaseException) -> str:
    """The innermost traceback frame in tpp and, if deeper, the innermost frame of all."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.endswith("zoo/runner.py")]
    ours = [f for f in frames if "/tpp/" in f.filename]
    picked = ([ours[-1]] if ours else []) + (
        [frames[-1]] if frames and (not ours or frames[-1] is not ours[-1]) else []
    )
    return " -> ".join(f"{_short(f.filename)}:{f.lineno or '?'} ({f.name})" for f in picked)


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/tests/zoo/"):
        if marker in filename:
            return filename.rsplit(marker, 1)[-1]
    return filename


def run_suite(
    suite: str, out_dir: Path, names: list[str] | None = None, scopes: tuple[str, ...] = SCOPES
) -> list[CaseResult]:
    """Every case of ``suite`` (or of ``names``) in every scope, then one reload process for all."""
    from tests.zoo.suites import STAGE_SECONDS as suite_seconds
    from tests.zoo.suites import specs

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = specs(suite)
    limit = suite_seconds.get(suite, STAGE_SECONDS)
    cases = [run_case(suite, table[name], scope, out_dir, limit) for name in (names or list(table)) for scope in scopes]
    if suite == "lm":  # language models: also a from_pretrained folder, loaded in a process without tpp
        from tests.zoo.hf_roundtrip import export_and_reload

        export_and_reload(cases, out_dir)
    else:
        reload_all(cases, out_dir)
    return cases


def reload_all(cases: list[CaseResult], out_dir: Path) -> None:
    """Fill ``case.reload`` for every saved case, from one fresh Python process."""
    import json
    import os
    import sys

    saved = [c for c in cases if c.pruned_file]
    for case in cases:
        case.reload = case.save_note if not case.pruned_file and case.save_note else case.reload
    if not saved:
        return
    manifest = out_dir / "reload.json"
    manifest.write_text(
        json.dumps(
            [
                {"key": c.key, "suite": c.suite, "model": c.model, "pruned_file": c.pruned_file, "io_file": c.io_file}
                for c in saved
            ]
        )
    )
    root = str(Path(__file__).resolve().parents[2])
    inherited = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *inherited]))  # absolute: the child runs in root
    verdicts = verdicts_of(
        [sys.executable, "-m", "tests.zoo.reload", str(manifest), str(torch.get_num_threads())],
        saved,
        cwd=root,
        env=env,
    )
    for case in saved if verdicts is not None else ():
        case.reload = verdicts.get(case.key, "not reloaded")


def verdicts_of(argv: list[str], saved: list[CaseResult], **options: Any) -> Any:
    """Run a checking process whose last stdout line is its verdicts as JSON; None (every saved
    case's ``reload`` then says why) when the process failed."""
    import json
    import subprocess

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, **options)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-1:])
        for case in saved:
            case.reload = f"reload process failed (exit {proc.returncode}): {tail}"
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])
