"""Mechanism check: can the evidence models carry a key -> value binding past their attention window?

python benchmarks/evidence/recall.py OUT_JSON --variant ttt_all [--seed 1] [--steps 600] [--length 1024]

The video suite (EVIDENCE.md, studies 1-4) has not shown the fast weights helping. This asks the narrower question
first, on text alone, with the same models (configs/evidence_<variant>.yaml, trained from scratch): associative
recall. A row of ``--length`` tokens holds a block of P key/value pairs at a random offset, filler tokens, and near
the end the same P keys again in another order, each followed by its value; the loss is on those values only.
A windowed model reaches back layers x window tokens at most (4 x 128 = 512 for the evidence models), so a
query further than that from its pair can only be answered from the fast weights (or by full attention). The
held-out accuracy per distance bin says which.

Rows have one fixed length, so the compiled fast-weight step compiles once. Output: JSON (atomic) with the
training loss every ``--log-every`` steps and the held-out accuracy per distance bin; chance is 1 / ``VALUES``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from spatial_ttt.files import atomic_write_json
from spatial_ttt.train.config import load_config
from spatial_ttt.train.trainer import load_training_model

KEYS = range(100, 164)  # token ids: 64 keys, 64 values, the rest filler (the tiny vocabulary has 512)
VALUES = range(200, 264)
FILLER = (300, 500)
BINS = "0,128,512"  # edges of the distance bins (pair to query, in tokens): the window and 4 layers x window


def recall_rows(
    rows: int, length: int, pairs: int, generator: torch.Generator, near: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids [rows, length], a mask of the positions whose next token is a queried value [rows, length], and
    each such position's distance to its pair [rows, length] (0 elsewhere). The pair block starts at a uniform
    offset, so distances cover 0 .. length - 4 * pairs; in a ``near`` share of the rows it sits right before the
    queries instead (distances < 4 * pairs, inside every model's window: recall is learnt there first)."""
    ids = torch.randint(*FILLER, (rows, length), generator=generator)
    target = torch.zeros(rows, length, dtype=torch.bool)
    distance = torch.zeros(rows, length, dtype=torch.long)
    query_start = length - 2 * pairs
    for r in range(rows):
        keys = torch.tensor(KEYS)[torch.randperm(len(KEYS), generator=generator)[:pairs]]
        values = torch.tensor(VALUES)[torch.randint(len(VALUES), (pairs,), generator=generator)]
        start = int(torch.randint(query_start - 2 * pairs + 1, (1,), generator=generator))
        if float(torch.rand((), generator=generator)) < near:
            start = query_start - 2 * pairs
        ids[r, start : start + 2 * pairs : 2], ids[r, start + 1 : start + 2 * pairs : 2] = keys, values
        order = torch.randperm(pairs, generator=generator)
        ids[r, query_start::2], ids[r, query_start + 1 :: 2] = keys[order], values[order]
        key_at = query_start + 2 * torch.arange(pairs)  # the query key's position predicts its value
        target[r, key_at] = True
        distance[r, key_at] = key_at - (start + 2 * order)
    return ids, target, distance


def recall_loss(model, ids: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the queried values and the predictions there (argmax)."""
    logits = model(input_ids=ids).logits[target]
    labels = ids[:, 1:][target[:, :-1]]
    return F.cross_entropy(logits.float(), labels), logits.argmax(-1) == labels


def distance_bins(edges: str) -> list[tuple[int, int]]:
    """"0,128,512" -> [(0, 128), (128, 512), (512, end)]."""
    cuts = [int(e) for e in edges.split(",")]
    if cuts[0] != 0 or cuts != sorted(set(cuts)):
        raise ValueError(f"--bins {edges!r}: expected increasing edges starting at 0")
    return list(zip(cuts, cuts[1:] + [1 << 30]))


def evaluate(
    model, rows: int, length: int, pairs: int, batch: int, device: str, autocast: bool, bins: list[tuple[int, int]]
) -> dict:
    generator = torch.Generator().manual_seed(12345)  # the same held-out rows for every variant and seed
    right = {b: [0, 0] for b in bins}
    model.eval()
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        for _ in range(math.ceil(rows / batch)):
            ids, target, distance = recall_rows(batch, length, pairs, generator)
            _, correct = recall_loss(model, ids.to(device), target.to(device))
            for d, ok in zip(distance[target].tolist(), correct.tolist()):
                b = next(b for b in bins if b[0] <= d < b[1])
                right[b][0] += ok
                right[b][1] += 1
    model.train()
    return {f"{lo}-{hi if hi < 1 << 30 else 'end'}": {"accuracy": round(ok / n, 4), "answers": n}
            for (lo, hi), (ok, n) in right.items() if n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--variant", default="ttt_all", help="configs/evidence_<variant>.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--near", type=float, default=0.0, help="share of training rows with the pairs right before "
                        "the queries (held-out rows: uniform offsets only)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-rows", type=int, default=256)
    parser.add_argument("--bins", default=BINS, help="edges of the held-out distance bins, in tokens")
    parser.add_argument("--eval-every", type=int, default=0, help="also score --eval-rows held-out rows every N "
                        "steps (the held-out curve: variants compared at equal steps)")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--budget-s", type=float, default=1e9, help="stop training after this many seconds, then score")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training setting KEY=VALUE")
    args = parser.parse_args()
    bins = distance_bins(args.bins)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = load_config(f"configs/evidence_{args.variant}.yaml", [f"seed={args.seed}", *args.overrides])
    torch.manual_seed(args.seed)
    model = load_training_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(args.steps // 20, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / args.steps))))
    generator = torch.Generator().manual_seed(args.seed)
    autocast = device == "cuda"
    result = {"variant": args.variant, "seed": args.seed, "device": torch.cuda.get_device_name() if autocast else "cpu",
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "chance": 1 / len(VALUES), "log": [], "held_out_curve": []}
    began, window = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        ids, target, _ = recall_rows(args.batch, args.length, args.pairs, generator, args.near)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss, correct = recall_loss(model, ids.to(device), target.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        window.append((loss.item(), correct.float().mean().item()))
        if step % args.log_every == 0 or step == args.steps:
            losses, accuracies = zip(*window)
            entry = {"step": step, "loss": round(sum(losses) / len(losses), 4),
                     "train_accuracy": round(sum(accuracies) / len(accuracies), 4),
                     "seconds": round(time.perf_counter() - began, 1)}
            result["log"].append(entry)
            print(json.dumps(entry), flush=True)
            window = []
        if args.eval_every and step % args.eval_every == 0 and step < args.steps:
            scores = evaluate(model, args.eval_rows, args.length, args.pairs, args.batch, device, autocast, bins)
            result["held_out_curve"].append({"step": step, **scores})
            print(json.dumps(result["held_out_curve"][-1]), flush=True)
        if time.perf_counter() - began > args.budget_s:
            break
    result["steps_done"] = step
    result["train_s"] = round(time.perf_counter() - began, 1)
    result["held_out"] = evaluate(model, args.eval_rows, args.length, args.pairs, args.batch, device, autocast, bins)
    print(json.dumps(result["held_out"]), flush=True)
    atomic_write_json(args.out, result, indent=1)


if __name__ == "__main__":
    main()
