#!/usr/bin/env bash
# Data-parallel `spatial-ttt eval` on 2 GPUs vs 1 GPU: tiny model, synthetic VSI-Bench made on the fly.
# Checks that the merged 2-GPU summary equals the 1-GPU one and prints both wall times.
# Usage (repository root, 2 GPUs): bash benchmarks/eval_2gpu.sh [WORK_DIR] [N_QUESTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK="${1:-${OUT:-/tmp}/eval_2gpu}"
N="${2:-200}"
rm -rf "$WORK" && mkdir -p "$WORK"

python - "$WORK" "$N" <<'PY'
import json, sys
from pathlib import Path
from spatial_ttt.demo import write_synthetic_video
from spatial_ttt.pipeline import make_tiny_model_folder

work, n = Path(sys.argv[1]), int(sys.argv[2])
make_tiny_model_folder(work / "tiny")
data = work / "VSI-Bench"
types = ["object_counting", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
         "room_size_estimation", "route_planning", "object_abs_distance", "obj_appearance_order",
         "object_size_estimation", "object_rel_distance"]
options = ["A. chair", "B. table", "C. sofa", "D. bed"]
scenes = [(d, f"scene{k}") for k, d in enumerate(["scannet", "arkitscenes", "scannetpp"] * 3)]
for dataset, scene in scenes:  # 4 s at 8 fps, 352x480 (the evaluation's frame size)
    (data / dataset).mkdir(parents=True, exist_ok=True)
    write_synthetic_video(data / dataset / f"{scene}.mp4", seconds=4.0, fps=8)
with open(data / "test.jsonl", "w") as f:
    for i in range(n):
        t, (dataset, scene) = types[i % len(types)], scenes[i % len(scenes)]
        mc = "direction" in t or t in ("route_planning", "obj_appearance_order", "object_rel_distance")
        f.write(json.dumps({"id": i, "dataset": dataset, "scene_name": scene, "question_type": t,
                            "question": f"Q{i}: {t.replace('_', ' ')}?", "options": options if mc else None,
                            "ground_truth": "A" if mc else str(1 + i % 7)}) + "\n")
print(f"{n} questions over {len(scenes)} videos in {data}")
PY

run() {  # NAME COMMAND...: time one eval run
    local name="$1"; shift
    local start=$SECONDS
    "$@" --data "$WORK/VSI-Bench" --model "$WORK/tiny" --out "$WORK/$name" > "$WORK/$name.log" 2>&1 \
        || { cat "$WORK/$name.log"; exit 1; }
    echo "$name: $((SECONDS - start)) s"
}
nvidia-smi --query-gpu=index,name --format=csv,noheader || echo "no GPU: CPU processes"
run one_gpu env CUDA_VISIBLE_DEVICES=0 python -m spatial_ttt eval vsibench
run two_gpu torchrun --standalone --nproc_per_node 2 -m spatial_ttt eval vsibench

python - "$WORK" <<'PY'
import json, sys
from pathlib import Path

work = Path(sys.argv[1])
one, two = (work / "one_gpu" / "summary.json").read_text(), (work / "two_gpu" / "summary.json").read_text()
rows = lambda d: {json.loads(l)["id"]: json.loads(l) for p in sorted(d.glob("results*.jsonl")) for l in p.read_text().splitlines()}
a, b = rows(work / "one_gpu"), rows(work / "two_gpu")
shards = {p.name: len(p.read_text().splitlines()) for p in sorted((work / "two_gpu").glob("results*.jsonl"))}
print("two_gpu shards:", shards)
print("answers differing:", sum(a[k]["prediction"] != b[k]["prediction"] for k in a), "of", len(a))
print("overall:", json.loads(one)["overall"], json.loads(two)["overall"])
print("summaries equal:", one == two)
sys.exit(0 if one == two and a.keys() == b.keys() else 1)
PY
