"""How many kernels a long prefill and a stream launch, by aten op and by the source line that asks for them: on
the CPU, without a GPU. Op counts do not depend on the device, so they show where launches come from (and what a
change removes) before any GPU time is spent.

    PYTHONPATH=src:benchmarks python benchmarks/count_ops.py --out counts.json            # small model, ~1 min
    PYTHONPATH=src:benchmarks python benchmarks/count_ops.py --tiny --out counts.json     # seconds (tests)

What runs: ``generate(max_new_tokens=1)`` on a video prompt longer than the prefill piece (so it goes through
``streaming.prefill_in_pieces``), the same prompt as one forward (a piece as long as the prompt: the path of a
prompt within one piece, e.g. 128 frames), then a ``StreamSession`` fed piece by piece; a model of the 2B model's token
layout (352x480 frames: 165 video tokens per 2-frame group) but narrow, with the chunk, window and prefill piece
scaled down so that the chunk loop and the pieces loop several times. bf16 weights, bf16 fast-weight products and
``ttt_kernel="graphed"`` (what runs on an H100) unless told otherwise.

How it counts what the GPU would launch: every aten op that reaches the dispatcher from Python is one launch,
except views and metadata ops (no kernel). The graphed kernel's chunk step runs on the CPU eagerly over its static
buffers (uncaptured); here its body counts as one ``[graph replay]``, as the CUDA graph is one launch. A function
the kernel would ``torch.compile`` (``FastWeightKernel.compiled``) runs eagerly and counts as one
``[compiled <name>]`` (on a GPU a few fused kernels). Ops are also attributed to the innermost frame of
spatial_ttt (or transformers) that called them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench_e2e import Shape, build_ours, prompt

from spatial_ttt.files import atomic_write_json
from spatial_ttt.ops import fast_weight_kernels
from spatial_ttt.streaming import StreamSession

# no kernel: views, metadata, allocation without a fill
NO_LAUNCH = {
    "view", "_unsafe_view", "slice", "select", "transpose", "t", "expand", "as_strided", "unsqueeze", "squeeze",
    "permute", "split", "split_with_sizes", "unbind", "alias", "detach", "empty", "empty_like", "new_empty",
    "empty_strided", "new_empty_strided", "_reshape_alias", "unflatten", "lift_fresh", "is_same_size", "sym_size",
    "sym_stride", "sym_numel", "sym_storage_offset", "_local_scalar_dense", "item", "resolve_conj", "resolve_neg",
    "is_nonzero", "_has_compatible_shallow_copy_type", "set_", "view_as_real", "view_as_complex", "diagonal",
    "narrow", "chunk", "movedim", "unfold", "expand_as", "reshape", "flatten", "contiguous",
}
COPIES = {"copy_", "_to_copy", "clone", "cat", "stack", "index_put_", "index_put", "index_copy", "index_copy_",
          "index_select", "masked_scatter", "repeat", "repeat_interleave", "index", "gather", "scatter", "_foreach_copy_"}

PACKAGES = (os.sep + "spatial_ttt" + os.sep, os.sep + "transformers" + os.sep)
HOST = ("positions.py:",)  # sites that work on CPU tensors whatever the model's device (no launch on a GPU)


def caller(skip: str) -> str:
    """The innermost frame of spatial_ttt (else transformers) above the dispatcher: 'file.py:function'."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if any(p in name for p in PACKAGES) and skip not in name:
            package = "transformers:" if PACKAGES[1] in name else ""
            return f"{package}{os.path.basename(name)}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


class LaunchCounter(TorchDispatchMode):
    """Counts aten ops by name and by calling function; ``hidden`` > 0 while a region counts as one launch."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()
        self.bytes: Counter = Counter()  # bytes written by copy-like ops
        self.sites: Counter = Counter()
        self.hidden = 0

    def region(self, label: str) -> None:
        self.ops[label] += 1
        self.sites[f"{label} <- {caller('count_ops')}"] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if not self.hidden and name not in NO_LAUNCH:
            site = caller("torch" + os.sep)
            if site.startswith(HOST):
                self.ops["[host]"] += 1
                return out
            self.ops[name] += 1
            self.sites[f"{name} <- {site}"] += 1
            if name in COPIES:
                written = out if isinstance(out, torch.Tensor) else args[0] if isinstance(args[0], torch.Tensor) else None
                if written is not None:
                    self.bytes[name] += written.numel() * written.element_size()
        return out

    @contextlib.contextmanager
    def one_launch(self, label: str):
        self.region(label)
        self.hidden += 1
        try:
            yield
        finally:
            self.hidden -= 1


ACTIVE: list[LaunchCounter] = []  # the counter now counting (compiled functions and graphs outlive one count)


@contextlib.contextmanager
def as_on_gpu(counter: LaunchCounter):
    """Counts the graphed kernel's replay and the compiled functions as the GPU launches them (see module doc)."""
    kernel_cls, graph_cls = fast_weight_kernels.FastWeightKernel, fast_weight_kernels.ChunkGraph
    compiled, graph_init = kernel_cls.compiled, graph_cls.__init__

    def eager(self, fn, variant=None, dynamic=None):
        def run(*args, **kwargs):
            with ACTIVE[-1].one_launch(f"[compiled {fn.__name__}]"):
                return fn(*args, **kwargs)

        return run

    def init(self, step, example, capture, pool=None, warmups=2, rewind=None, inputs=None):
        def replay(*args):
            with ACTIVE[-1].one_launch("[graph replay]"):
                return step(*args)

        graph_init(self, replay, example, capture, pool, warmups, rewind=rewind, inputs=inputs)

    kernel_cls.compiled, graph_cls.__init__ = eager, init
    ACTIVE.append(counter)
    try:
        yield
    finally:
        ACTIVE.pop()
        kernel_cls.compiled, graph_cls.__init__ = compiled, graph_init


def small_shape(tiny: bool) -> Shape:
    """The 2B model's token layout (352x480 frames), narrow layers; ``tiny``: 64x64 frames, fewer layers."""
    text = dict(vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=4 if tiny else 8,
                num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=65536,
                rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                                    "mrope_section": [4, 6, 6], "mrope_interleaved": True})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=128, num_position_embeddings=64, deepstack_visual_indexes=[0, 1])
    ids = dict(image_token_id=1000, video_token_id=1001, vision_start_token_id=1002, vision_end_token_id=1003)
    chunk = 16 if tiny else 256
    ttt = dict(lact_chunk_size=chunk, window_size=chunk)
    return Shape(text, vision, ids, ttt, (64, 64) if tiny else (352, 480), torch.bfloat16)


def count(label: str, fn, tokens: int) -> dict:
    counter = LaunchCounter()
    start = time.perf_counter()
    with as_on_gpu(counter), counter:
        fn()
    seconds = time.perf_counter() - start
    copies = {k: v for k, v in counter.ops.items() if k in COPIES}
    host = counter.ops.pop("[host]", 0)
    launches = sum(counter.ops.values())
    return dict(
        what=label, tokens=tokens, cpu_seconds=round(seconds, 2), host_ops=host,
        launches=launches, launches_per_1k_tokens=round(launches * 1000 / tokens, 1),
        copy_like=sum(copies.values()), copy_like_mib=round(sum(counter.bytes.values()) / 2**20, 1),
        ops=dict(counter.ops.most_common()),
        ops_per_1k_tokens={k: round(v * 1000 / tokens, 2) for k, v in counter.ops.most_common()},
        copy_bytes={k: v for k, v in counter.bytes.most_common()},
        sites=dict(counter.sites.most_common()),
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a few seconds: tiny frames and layers")
    parser.add_argument("--groups", type=int, help="2-frame groups in the prompt (default 48; --tiny 12)")
    parser.add_argument("--piece-tokens", type=int, help="prefill piece (default 2048; --tiny 60)")
    parser.add_argument("--stream-groups", type=int, default=4, help="frame groups per observed stream piece")
    parser.add_argument("--kernel", default="graphed", choices=fast_weight_kernels.KERNELS)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    shape = small_shape(args.tiny)
    groups = args.groups or (12 if args.tiny else 48)
    piece_tokens = args.piece_tokens or (60 if args.tiny else 2048)
    model = build_ours(shape, torch.device("cpu"), args.precision)
    model.config.ttt_kernel = args.kernel
    inputs = prompt(shape, groups)
    tokens = int(inputs["input_ids"].shape[1])
    keys = ("input_ids", "pixel_values_videos", "video_grid_thw")
    pieces = [{k: v for k, v in prompt(shape, args.stream_groups, prefix=0, suffix=0, seed=i).items() if k in keys}
              for i in range(max(groups // args.stream_groups, 1))]
    stream_tokens = sum(int(p["input_ids"].shape[1]) for p in pieces)

    def prefill() -> None:
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=1, stop_token_ids=[], piece_tokens=piece_tokens)

    def one_forward() -> None:  # a prompt within one piece (128 frames of the 2B shape): model.forward
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=1, stop_token_ids=[], piece_tokens=tokens)

    def stream() -> None:
        session = StreamSession(model)
        for piece in pieces:
            session.observe_tokens(**piece)

    if tokens <= 2 * piece_tokens:
        parser.error(f"the prompt ({tokens} tokens) must span several pieces of {piece_tokens}")
    results = dict(
        settings=dict(shape="tiny" if args.tiny else "small", groups=groups, piece_tokens=piece_tokens,
                      chunk=model.config.lact_chunk_size, window=model.config.window_size, kernel=args.kernel,
                      precision=args.precision, layers=model.config.text_config.num_hidden_layers,
                      stream_groups_per_piece=args.stream_groups),
        generate=count("generate(max_new_tokens=1)", prefill, tokens),
        one_forward=count("generate(max_new_tokens=1), one forward", one_forward, tokens),
        stream=count("StreamSession.observe_tokens", stream, stream_tokens),
    )
    atomic_write_json(args.out, results, indent=2)
    for key in ("generate", "one_forward", "stream"):
        r = results[key]
        print(f"{r['what']}: {r['tokens']} tokens, {r['launches']} launches ({r['launches_per_1k_tokens']} per 1k "
              f"tokens), copy-like {r['copy_like']} ({r['copy_like_mib']} MiB), {r['cpu_seconds']} s")
        for name, n in list(r["ops"].items())[: args.top]:
            print(f"  {n:7d}  {r['ops_per_1k_tokens'][name]:8.2f}/1k  {name}")
        print("  by site:")
        for name, n in list(r["sites"].items())[: args.top]:
            print(f"  {n:7d}  {name}")
    return results


if __name__ == "__main__":
    main()
