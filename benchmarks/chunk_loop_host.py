"""The host's time per chunk of the fast-weight chunk loop (``FastWeightMemory.advance`` with the graphed kernel),
on the CPU, without the step's own work: each captured step is replaced by one that hands back its outputs, so
what is timed is the loop's bookkeeping, the kernel's dispatch and the copies into the graph's buffers (tiny
tensors). On the GPU the same Python runs per chunk while a replay takes ~0.2 ms at the 2B shape; where the host
falls behind, the GPU waits (profile_prefill.py --idle: the chunk loop and the kernel step lead its idle time).

    PYTHONPATH=src:benchmarks python benchmarks/chunk_loop_host.py --out chunk_loop_host.json

Reported: microseconds per chunk, the fastest of --repeats advances over --chunks whole chunks in one piece (as a
prompt's pieces hand the memory). Session 25 (this machine's CPU, 2 cores): 53.5 us a chunk, 76.5 before the loop
stopped slicing a whole chunk's rows twice (commit 20f8ccf). Pieces whose ends fall inside chunks are
not timed here: their partial runs are answered by the reference products, which on the CPU are compute.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import write_json

from spatial_ttt.ops import FastWeightKernel, FastWeightMemory, FastWeights, TokenStream


def stub_steps(kernel: FastWeightKernel) -> None:
    """Every captured step of ``kernel`` hands back the outputs of one real run of it, doing nothing else."""
    for graph in kernel._graphs.values():
        outputs = graph.step(*graph.inputs)
        graph.step = lambda *args, outputs=outputs: outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    bh, d, n = 4, 8, args.chunk * args.chunks
    kernel = FastWeightKernel.standalone(args.chunk, False, "bf16", "graphed")
    weights = [torch.randn(bh, d, d) / d**0.5 for _ in range(3)]
    q = torch.randn(bh, n, d).bfloat16()
    rows = TokenStream(torch.randn(bh, n, d).bfloat16(), torch.randn(bh, n, d),
                       *(torch.rand(bh, n, 1) for _ in range(4)))
    FastWeightMemory(FastWeights.start(*weights)).advance(q[:, : 3 * args.chunk], rows.slice(0, 3 * args.chunk), kernel)
    stub_steps(kernel)  # both graphs (answer + update, update alone) exist now

    def advance() -> float:
        memory = FastWeightMemory(FastWeights.start(*weights))
        start = time.perf_counter()
        with torch.inference_mode():
            memory.advance(q, rows, kernel)
        return time.perf_counter() - start

    seconds = min(advance() for _ in range(args.repeats))
    result = dict(chunks=args.chunks, chunk=args.chunk, us_per_chunk=seconds / args.chunks * 1e6)
    print(result, flush=True)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
