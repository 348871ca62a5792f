"""Compiled calls per training forward and host time per chunk, at each ``ttt_train_chunks_per_call`` (G).

python benchmarks/evidence/chunk_calls.py OUT_JSON [--groups 1 2 4 8] [--tokens 2113] [--steps 6]
    [--operator-chunks 16] [--backend inductor]

Two measurements per G, on whatever device is present (CPU: one thread, so that another process's load moves the
numbers less):

* ``model``: the evidence ``ttt_all`` model (configs/evidence_ttt_all.yaml, compiled kernel) on one text row of
  ``--tokens`` tokens: the compiled fast-weight calls of one training forward (counted), the first forward +
  backward (compilation) and the median of the later ones;
* ``operator``: the fast-weight operator alone at negligible arithmetic (4 heads of d = 16, chunk 8, Muon on)
  through ``FastWeightMemory.advance`` with autograd, ``--operator-chunks`` updating chunks: forward and forward +
  backward time per chunk, the host cost a compiled call adds.

``--backend`` is torch.compile's (aot_eager for a quick check without code generation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from spatial_ttt.ops import FastWeightKernel, FastWeightMemory, FastWeights, TokenStream
from spatial_ttt.train.config import load_config
from spatial_ttt.train.trainer import load_training_model

CALLS: Counter = Counter()


def counting_compile(backend: str):
    """torch.compile on ``backend``, counting the calls of the compiled fast-weight steps by function name."""
    compile_ = torch.compile

    def compile(fn, **kwargs):
        inner = compile_(fn, **{**kwargs, "backend": backend})

        def counted(*args):
            CALLS[fn.__name__] += 1
            return inner(*args)

        return counted

    return compile


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def model_row(group: int, tokens: int, steps: int, device: str) -> dict:
    overrides = ["model_settings.ttt_kernel=compiled", f"model_settings.ttt_train_chunks_per_call={group}"]
    model = load_training_model(load_config("configs/evidence_ttt_all.yaml", overrides)).to(device)
    ids = torch.randint(10, 400, (1, tokens), device=device)
    calls = []

    def step() -> None:
        CALLS.clear()
        logits = model(input_ids=ids).logits
        calls.append(CALLS["flat_step"] + CALLS["flat_steps"])
        F.cross_entropy(logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten()).backward()

    times = [timed(step) for _ in range(steps)]
    return {"group": group, "tokens": tokens, "compiled_calls_forward": calls[-1], "first_s": round(times[0], 2),
            "step_s": round(statistics.median(times[1:]), 4)}


def operator_row(group: int, chunks: int, device: str) -> dict:
    bh, d, chunk = 4, 16, 8
    n = chunks * chunk + 1  # every chunk followed by a token: all update
    kernel = FastWeightKernel.standalone(chunk, True, kernel="compiled", train_chunks_per_call=group)
    g = torch.Generator(device=device).manual_seed(0)

    def rows(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, device=device).requires_grad_()

    forward, total = [], []
    for _ in range(12):
        w = [(rows(bh, d, d) - 0.5) / d**0.5 for _ in range(3)]
        q, k, v = (F.normalize(rows(bh, n, d), dim=-1) for _ in range(3))
        stream = TokenStream(k, v, *(0.3 * rows(bh, n, 1) for _ in range(3)), rows(bh, n, 1))
        out = []
        forward.append(timed(lambda: out.append(FastWeightMemory(FastWeights.start(*w)).advance(q, stream, kernel))))
        total.append(forward[-1] + timed(lambda: out[0].pow(2).sum().backward()))
    per_chunk = lambda ts: round(1e3 * statistics.median(ts[2:]) / chunks, 3)  # noqa: E731
    return {"group": group, "chunks": chunks, "first_s": round(total[0], 2), "forward_ms_per_chunk": per_chunk(forward),
            "fwd_bwd_ms_per_chunk": per_chunk(total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--tokens", type=int, default=2113)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--operator-chunks", type=int, default=16)
    parser.add_argument("--backend", default="inductor")
    args = parser.parse_args()
    torch.compile = counting_compile(args.backend)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
              "backend": args.backend, "model": [], "operator": []}
    for group in args.groups:
        for name, row in (("model", model_row(group, args.tokens, args.steps, device)),
                          ("operator", operator_row(group, args.operator_chunks, device))):
            result[name].append(row)
            print(json.dumps({name: row}), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
