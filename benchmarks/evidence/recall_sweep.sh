#!/usr/bin/env bash
# Study 5 (EVIDENCE.md): recall with a short window, several variants at once on one GPU (about 8 minutes on an H100).
# bash benchmarks/evidence/recall_sweep.sh OUT_DIR [BUDGET_S] [SET]
#   SET=all    (call 1) full, swa_all, ttt_all (TTT chunk 64 and 16), seeds 1-2, each to 4000 steps or BUDGET_S
#   SET=curves (call 2) ttt_all seeds 1-3 and swa_all seeds 1-2, held-out bins scored every 250 steps
#   SET=long   (call 3) ttt_all seeds 4-5 alone on the GPU (faster steps: further in the same budget), same scoring
# Window and TTT chunk 64: a windowed model's direct reach is 64 tokens, 4 layers x 64 = 256 at most, and the
# rows are 512 long, so the held-out bins 0-64 / 64-256 / 256-end separate attention from the fast weights.
set -euo pipefail
out=$1; budget=${2:-400}; set=${3:-all}
mkdir -p "$out"
common=(--length 512 --pairs 8 --batch 32 --lr 3e-3 --near 0.5 --steps 4000 --budget-s "$budget" --eval-rows 512
        --bins 0,64,256 --log-every 50 --set model_settings.window_size=64 --set model_settings.lact_chunk_size=64)
run() {  # NAME VARIANT SEED [extra recall.py arguments]
    local name=$1 variant=$2 seed=$3; shift 3
    python3 benchmarks/evidence/recall.py "$out/$name.json" --variant "$variant" --seed "$seed" "${common[@]}" "$@" \
        > "$out/$name.log" 2>&1 &
}
case $set in
    all)
        run full-s1 full 1; run full-s2 full 2
        run swa_all-s1 swa_all 1; run swa_all-s2 swa_all 2
        run ttt_all-s1 ttt_all 1; run ttt_all-s2 ttt_all 2
        run ttt_all-chunk16-s1 ttt_all 1 --set model_settings.lact_chunk_size=16
        run ttt_all-chunk16-s2 ttt_all 2 --set model_settings.lact_chunk_size=16 ;;
    curves)
        for s in 1 2 3; do run ttt_all-s$s ttt_all $s --eval-every 250 --eval-rows 256; done
        for s in 1 2; do run swa_all-s$s swa_all $s --eval-every 250 --eval-rows 256; done ;;
    long)
        for s in 4 5; do run ttt_all-s$s ttt_all $s --eval-every 250 --eval-rows 256; done ;;
    *) echo "unknown SET $set (all, curves, long)" >&2; exit 2 ;;
esac
wait
