"""What a user waits for in a fresh process, step by step: a stream's first pieces, its first questions, a question
after more video, two streams at once, then a one-shot prompt; each step's seconds and how many graphs dynamo
compiled during it. Compares how the inference stages are compiled (``--dynamic``): "auto" (the library: static,
then symbolic sizes at the second size) against "true" (symbolic sizes from the first call), each in its own fresh
process with its own cold compile caches.

    PYTHONPATH=src:benchmarks python benchmarks/first_answer.py --out first_answer.json     # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/first_answer.py --tiny --out first_answer.json   # CPU check

Steps (``build``: imports and the model; then bench_e2e's random 2B-shaped model, bf16, uint8 frames through the processor as StreamSession.observe
runs them): ``piece_i`` observes a piece of ``--piece-frames`` frames; ``ask_prefill`` a 20-token question with
one new token (no decode step), ``ask_prefill_again`` the same; ``ask_decode`` the question with ``--new-tokens``
(the static decode's compilation and capture), ``ask_decode_again``, ``ask_decode_long`` with
``--long-tokens`` (its difference from ``ask_decode_again`` per extra token: ``decode_ms_per_token``); ``more_video`` one more piece, then
``ask_after_more`` (a longer KV cache) and ``ask_other_length`` (a 12-token question); ``two_streams_*``: a
StreamSession of two streams, a piece and a question; ``oneshot_first`` / ``oneshot_again``: ``generate`` on a
``--frames`` prompt (its pieces of config.prefill_piece tokens are new shapes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import child_environment
from spatial_ttt.files import atomic_write_json

CHILD = "--child"


def child(options: dict) -> dict:
    """One fresh process's steps (runs in the child)."""
    began = time.perf_counter()
    import torch
    from torch._dynamo.utils import counters

    import bench_e2e
    from spatial_ttt.ops import compiled as compiled_module
    from spatial_ttt.streaming import StreamSession

    if options["dynamic"] == "true":  # every compiled stage symbolic from its first call
        init = compiled_module.Compiled.__init__
        compiled_module.Compiled.__init__ = lambda self, fn, dynamic=None: init(self, fn, True)
    tiny = options["tiny"]
    if tiny:  # the script's check: dynamo's graphs and guards as on the GPU, aot_eager instead of inductor's C++
        compile_ = torch.compile
        torch.compile = lambda fn, **kw: compile_(fn, **{**kw, "backend": "aot_eager"})
    device = torch.device("cpu" if tiny else "cuda")
    shape = bench_e2e.shape_tiny() if tiny else bench_e2e.shape_2b()
    model = bench_e2e.build_ours(shape, device, "bf16", ttt_kernel="graphed" if tiny else "auto")
    steps: list[dict] = []

    def record(entry: dict) -> None:
        steps.append(entry)
        with open(options["steps_file"], "a") as f:  # kept if the parent stops this process
            f.write(json.dumps(entry) + "\n")
        print(json.dumps(entry), file=sys.stderr, flush=True)

    record(dict(step="build", seconds=time.perf_counter() - began, graphs=0))  # imports and building the model
    processor, dtype = bench_e2e.video_processor(shape), model.model.visual.dtype
    groups = options["piece_frames"] // 2
    keys = ("input_ids", "video_grid_thw")
    to = lambda d: {k: v.to(device) for k, v in d.items() if k in keys}  # noqa: E731
    prefix = to(bench_e2e.prompt(shape, 0, prefix=10, suffix=0))
    question = to(bench_e2e.prompt(shape, 0, prefix=0, suffix=20))["input_ids"]
    other = question[:, :12]

    class Stop(Exception):
        pass

    def step(name: str, fn) -> object:
        graphs = counters["stats"]["unique_graphs"]
        if device.type == "cuda":
            torch.cuda.synchronize()
        profile = profiler(name in options["profile_steps"])
        compiles.clear()
        model.static_decoding.last = {}
        start = time.perf_counter()
        with torch.inference_mode(), profile:
            out = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
        entry = dict(step=name, seconds=time.perf_counter() - start, graphs=counters["stats"]["unique_graphs"] - graphs,
                     triton_compiles=len(compiles), triton_compile_s=sum(c[1] for c in compiles),
                     triton_kernels=sorted({c[0] for c in compiles}),
                     triton_specialised=[dict(kernel=c[0], seconds=c[1], **c[2]) for c in compiles][:20])
        if name.startswith("ask") or name.endswith("ask"):
            entry["decode"] = dict(model.static_decoding.last)  # the static decoder's setup (buffers, capture)
        record(entry)
        if isinstance(profile, torch.profiler.profile):  # the step's operators and kernels, host and device time
            table = profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
            if device.type == "cuda":
                table += "\n" + profile.key_averages().table(sort_by="self_cuda_time_total", row_limit=30)
            path = Path(options["profile_dir"]) / f"profile_{options['dynamic']}_{name}.txt"
            path.write_text(table)
        if name == options["stop_after"]:
            raise Stop
        return out

    def piece(seed: int, batch: int = 1) -> tuple[dict, torch.Tensor]:
        ids = to(bench_e2e.prompt(shape, groups, prefix=0, suffix=0, seed=seed, pixels=False))
        pixels = [bench_e2e.process(processor, bench_e2e.video_frames(shape, groups, seed=seed + row), "pipeline",
                                    dtype, device) for row in range(batch)]
        ids = {k: v.repeat(batch, 1) for k, v in ids.items()}
        return ids, torch.cat(pixels).to(device, non_blocking=True)

    def observe(session: StreamSession, seed: int, batch: int = 1) -> None:
        ids, pixels = piece(seed, batch)
        session.observe_tokens(**ids, pixel_values_videos=pixels)

    def profiler(wanted: bool):
        if not wanted:
            return contextlib.nullcontext()
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        return torch.profiler.profile(activities=activities)

    compiles = watch_triton_compiles()

    def user_steps() -> None:
        session = StreamSession(model)
        step("prefix", lambda: session.observe_tokens(**prefix))
        for i in range(options["pieces"]):
            step(f"piece_{i}", lambda: observe(session, 1 + i))
        new = options["new_tokens"]
        step("ask_prefill", lambda: session.ask_tokens(question, max_new_tokens=1))
        step("ask_prefill_again", lambda: session.ask_tokens(question, max_new_tokens=1))
        answer = step("ask_decode", lambda: session.ask_tokens(question, max_new_tokens=new))
        again = step("ask_decode_again", lambda: session.ask_tokens(question, max_new_tokens=new))
        assert torch.equal(answer, again), "the same question on the same memory gave another answer"
        long = options["long_tokens"]
        step("ask_decode_long", lambda: session.ask_tokens(question, max_new_tokens=long))
        steps[-1]["decode_ms_per_token"] = 1e3 * (steps[-1]["seconds"] - steps[-2]["seconds"]) / (long - new)
        step("more_video", lambda: observe(session, 100))
        step("ask_after_more", lambda: session.ask_tokens(question, max_new_tokens=new))
        step("ask_other_length", lambda: session.ask_tokens(other, max_new_tokens=new))
        session = None  # its memory freed before the next steps
        pair = StreamSession(model, batch_size=2)
        step("two_streams_prefix", lambda: pair.observe_tokens(**{k: v.repeat(2, 1) for k, v in prefix.items()}))
        step("two_streams_piece", lambda: observe(pair, 200, batch=2))
        step("two_streams_ask", lambda: pair.ask_tokens(question.repeat(2, 1), max_new_tokens=new))
        pair = None
        inputs = {k: v.to(device) for k, v in bench_e2e.prompt(shape, options["frames"] // 2, pixels=False).items()}
        inputs["pixel_values_videos"] = bench_e2e.process(processor, bench_e2e.video_frames(shape, options["frames"] // 2),
                                                          "pipeline", dtype, device)
        first = step("oneshot_first", lambda: model.generate(**inputs, max_new_tokens=1))
        second = step("oneshot_again", lambda: model.generate(**inputs, max_new_tokens=1))
        assert torch.equal(first, second), "the compiled one-shot call changed the answer"
        step("oneshot_third", lambda: model.generate(**inputs, max_new_tokens=1))

    try:
        user_steps()
    except Stop:  # --stop-after
        pass
    return dict(options, steps=steps, process_s=time.perf_counter() - began)


def watch_triton_compiles() -> list[tuple[str, float, dict]]:
    """A list that gets (kernel, seconds, what it was specialised on) for every Triton compilation in this process
    from now on (a kernel of ours or of inductor's, compiled for new shapes or a new specialisation of its integer
    arguments), which dynamo's graph count does not see. Empty and unwatched where Triton is not installed."""
    compiles: list[tuple[str, float, dict]] = []
    try:
        import triton
        import triton.compiler.compiler as compiler
        from triton.runtime.jit import JITFunction
    except ImportError:
        return compiles
    original = compiler.compile
    depth = [0]

    def timed(src, *args, **kwargs):
        depth[0] += 1
        began = time.perf_counter()
        try:
            return original(src, *args, **kwargs)
        finally:
            depth[0] -= 1
            if not depth[0]:
                name = getattr(src, "name", None) or getattr(getattr(src, "fn", None), "__name__", None) or str(src)[:60]
                # what the compilation was specialised on (constexprs, integer and pointer attributes)
                specialised = {k: str(getattr(src, k, None))[:400] for k in ("constants", "attrs", "signature")}
                compiles.append((str(name), time.perf_counter() - began, specialised))

    for owner in (compiler, triton.compiler, triton):
        if getattr(owner, "compile", None) is original:
            owner.compile = timed
    if getattr(JITFunction, "compile", None) is original:
        JITFunction.compile = timed
    return compiles


def run_child(options: dict, cache: Path, timeout_s: float) -> dict:
    """One child with its own caches; its stderr goes to ours as it runs. Past ``timeout_s`` it is stopped and the
    steps it finished are kept."""
    env = child_environment(cache)
    options = dict(options, steps_file=str(cache / "steps.jsonl"))
    cache.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run([sys.executable, __file__, CHILD, json.dumps(options)], env=env, stdout=subprocess.PIPE,
                                text=True, timeout=timeout_s)
        error = None if result.returncode == 0 else f"exit status {result.returncode} (its stderr above)"
    except subprocess.TimeoutExpired:
        result, error = None, f"stopped after {timeout_s:.0f} s"
    if error is None:
        return json.loads(result.stdout.strip().splitlines()[-1])
    done = Path(options["steps_file"])
    steps = [json.loads(line) for line in done.read_text().splitlines()] if done.exists() else []
    return dict(options, steps=steps, error=error)


def summary(results: dict) -> str:
    """The steps of each run, one line each: seconds, dynamo graphs, Triton compilations (the device scripts print it)."""
    lines = []
    for run in results["runs"]:
        lines.append(f'{run["dynamic"]} {run.get("error", "")}')
        for s in run.get("steps", []):
            extra = f'  triton {s["triton_compiles"]} ({s["triton_compile_s"]:.2f} s)' if "triton_compiles" in s else ""
            extra += f'  {s["decode_ms_per_token"]:.2f} ms/token' if "decode_ms_per_token" in s else ""
            setup = s.get("decode", {}).get("setup_s")  # files before session 18 lack these fields
            extra += f"  decode setup {setup:.3f} s" if setup is not None else ""
            lines.append(f'  {s["step"]:20s} {s["seconds"]:8.3f} s  {s["graphs"]:3d} graphs{extra}')
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == CHILD:
        print(json.dumps(child(json.loads(sys.argv[2]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON file to write (required unless --show)")
    parser.add_argument("--show", metavar="JSON", help="print the steps of an earlier run's file and exit")
    parser.add_argument("--tiny", action="store_true",
                        help="the tiny shape on the CPU (graphed kernel, aot_eager backend): checks the script")
    parser.add_argument("--dynamic", nargs="+", default=["auto", "true"], choices=["auto", "true"])
    parser.add_argument("--pieces", type=int, default=4, help="pieces before the first question")
    parser.add_argument("--piece-frames", type=int, default=None, help="frames per piece (default 128; tiny: 4)")
    parser.add_argument("--frames", type=int, default=None, help="the one-shot prompt's frames (default 1024; tiny: 8)")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--long-tokens", type=int, default=72, help="new tokens of ask_decode_long")
    parser.add_argument("--profile-steps", nargs="*", default=[],
                        help="steps to run under torch.profiler: their operator tables go to --profile-dir")
    parser.add_argument("--profile-dir", default=None,
                        help="where profile_DYNAMIC_STEP.txt files go (default: beside --out)")
    parser.add_argument("--stop-after", default=None, help="the last step to run")
    parser.add_argument("--child-timeout-s", type=float, default=3600, help="stop a child after this long")
    args = parser.parse_args()
    if args.show:
        path = Path(args.show)
        print(summary(json.loads(path.read_text())) if path.exists() else f"{path}: no such file")
        return
    if not args.out:
        parser.error("--out is required")
    results = dict(runs=[])
    with tempfile.TemporaryDirectory() as tmp:
        for dynamic in args.dynamic:
            options = dict(dynamic=dynamic, tiny=args.tiny, pieces=args.pieces, new_tokens=args.new_tokens,
                           long_tokens=args.long_tokens, profile_steps=args.profile_steps, stop_after=args.stop_after,
                           profile_dir=str(args.profile_dir or Path(args.out).resolve().parent),
                           piece_frames=args.piece_frames or (4 if args.tiny else 128),
                           frames=args.frames or (8 if args.tiny else 1024))
            results["runs"].append(run_child(options, Path(tmp) / dynamic, args.child_timeout_s))  # own cold caches
            atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
