"""What one training step of the evidence models costs, and how it scales with streams per forward.

python benchmarks/evidence/step_cost.py OUT_JSON [--variants ttt_all swa_all full] [--kernels reference compiled]
    [--batches 1 4 8] [--tokens 2113] [--repeats 5] [--data DATA_DIR --packs 3] [--chunks-per-call 1 4]

The trainer runs a pack's streams one after another, one forward and backward each; the fast-weight chunk loop
is sequential in time, so a small model's step is bound by latency, not arithmetic. This times forward +
backward (bf16 autocast, fp32 weights, as the trainer) of B text-only rows of one 16x stream's length
(2113 tokens) for each variant and kernel: if the time barely grows with B, batching the streams of a pack
would multiply training throughput. Compilation time (the first call) is recorded apart.

With ``--data`` (a memory-suite folder: train.jsonl and its videos, or render_suite.py's, whose frames are then
unpacked first as run_device.py does), it also times the trainer's real step on
the first ``--packs`` packs of that data as the configs make them (videos included, ``pack_rows``), encoded once
beforehand and already on the device: the model's step without the data loader. Real steps on the H100 took
1.0-1.4 s (TTT) and 0.5-0.8 s (attention only) against 0.45 / 0.02 s for text rows (benchmarks/EVIDENCE.md,
study 3); this tells whether the difference is the model's video path or the loading. Each data row also has
``encode_s`` (one pack's reading and encoding in this process, a loader worker's work) and with ``--profile``
the GPU kernel time and launch count of one step. ``--chunks-per-call`` times each TTT variant and kernel at
each value of ``ttt_train_chunks_per_call`` (whole chunks per compiled call under autograd; default: the config's).
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import time
from pathlib import Path

import torch
import torch._inductor.config
import torch.nn.functional as F

from spatial_ttt.files import atomic_write_json
from spatial_ttt.train.config import load_config
from spatial_ttt.train.data import SFTEncoder, estimate_lengths, make_packs, read_records, record_videos
from spatial_ttt.train.packing import pack_loss
from spatial_ttt.train.trainer import load_training_model
from spatial_ttt.video import SpatialTTTProcessor, make_tiny_processor


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step_time(model, batch: int, tokens: int, repeats: int, device: str) -> dict:
    ids = torch.randint(10, 400, (batch, tokens), device=device)

    def once() -> float:
        sync()
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(input_ids=ids).logits
        F.cross_entropy(logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten()).backward()
        sync()
        return time.perf_counter() - start

    first = once()
    times = [once() for _ in range(repeats)]
    median = statistics.median(times)
    return {"batch": batch, "first_s": round(first, 3), "step_s": round(median, 4),
            "tokens_per_s": round(batch * tokens / median, 1)}


def usable_data(data: Path, work: Path) -> Path:
    """A memory-suite folder whose training records' videos all exist: ``data`` itself (as
    ``python -m spatial_ttt.data.memory_tasks`` writes it), or, for render_suite.py's layout (only each scene's 16x
    video; the other lengths and the near clips are cut from it), its frames unpacked under ``work`` by
    run_device.py's rule, as a training run on the device sees them."""
    videos = {v for record in read_records(data, ["train.jsonl"]) for v in record_videos(record)}
    if all((data / v).exists() for v in videos):
        return data
    from run_device import to_frames  # beside this script; needs OpenCV, as on the device

    to_frames(data, work / "data")
    return work / "data"


def encoded_packs(config, count: int, device: str) -> tuple[list[list[dict]], float]:
    """The first ``count`` packs of the config's data (its packing, seed and max_length), encoded, on ``device``,
    and the median seconds one pack's encoding took in this process (a loader worker's work per step)."""
    folder = Path(config.output_dir) / "processor"
    make_tiny_processor(folder)
    encoder = SFTEncoder(SpatialTTTProcessor.from_pretrained(folder), config)
    records = read_records(config.data_path, config.data_files)
    packs, _ = make_packs(estimate_lengths(encoder, records), config.max_length, config.seed, config.packing)
    encoded, seconds = [], []
    for pack in packs[:count]:
        start = time.perf_counter()
        examples = [encoder.encode(records[i]) for i in pack]
        seconds.append(time.perf_counter() - start)
        encoded.append([{k: v.to(device) for k, v in ex.items()} for ex in examples])
    return encoded, statistics.median(seconds)


def pack_step(model, pack: list[dict], rows: bool, row_multiple: int, device: str) -> None:
    """Forward + backward of one pack as the trainer runs it (bf16 autocast on a GPU), finished on the device."""
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        pack_loss(model, pack, backward=lambda part: part.backward(), rows=rows, row_multiple=row_multiple)
    sync()


def kernel_share(model, pack: list[dict], rows: bool, row_multiple: int, device: str) -> dict:
    """One profiled step: GPU kernel time and launches against the step's wall time (launch-bound when small)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        pack_step(model, pack, rows, row_multiple, device)
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return {"kernels": len(events), "kernel_s": round(sum(e.device_time for e in events) / 1e6, 4), "top_cpu": top}


def pack_time(model, packs: list[list[dict]], rows: bool, row_multiple: int, device: str) -> dict:
    """:func:`pack_step` of every pack once, then every pack again (the median of the second round is the step
    time: the first meets new shapes)."""

    def once(pack: list[dict]) -> float:
        sync()
        start = time.perf_counter()
        pack_step(model, pack, rows, row_multiple, device)
        return time.perf_counter() - start

    first = [once(pack) for pack in packs]
    times = [once(pack) for pack in packs]
    median = statistics.median(times)
    tokens = statistics.mean(sum(ex["input_ids"].numel() for ex in pack) for pack in packs)
    return {"packs": len(packs), "streams": statistics.mean(len(p) for p in packs), "tokens": round(tokens, 1),
            "row_multiple": row_multiple, "first_round_s": [round(t, 3) for t in first],
            "second_round_s": [round(t, 3) for t in times], "first_s": round(first[0], 3), "step_s": round(median, 4),
            "tokens_per_s": round(tokens / median, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--variants", nargs="+", default=["ttt_all", "swa_all", "full"])
    parser.add_argument("--kernels", nargs="+", default=["reference", "compiled"],
                        help="ttt_kernel values; graphed trains through CUDA-graph trees")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--tokens", type=int, default=2113)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", help="a memory-suite folder: also time real packs (videos, pack_rows)")
    parser.add_argument("--packs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="with --data: GPU kernel time of one real step")
    parser.add_argument("--row-multiple", type=int, default=1, help="with --data: pack_row_multiple of the packs")
    parser.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                        help="a torch._inductor.config setting for this process (e.g. cpp_wrapper=True), to try "
                             "what the compiled step's per-call host cost depends on")
    parser.add_argument("--chunks-per-call", type=int, nargs="+", default=[None],
                        help="ttt_train_chunks_per_call values to time (whole chunks per compiled call in training)")
    args = parser.parse_args()
    inductor = {key: ast.literal_eval(value) for key, value in (item.split("=", 1) for item in args.inductor)}
    for key, value in inductor.items():
        setattr(torch._inductor.config, key, value)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for variant in args.variants:
        # no fast weights: the kernel and its chunks per call are moot
        kernels = args.kernels if variant != "full" else args.kernels[:1]
        groups = args.chunks_per_call if variant != "full" else args.chunks_per_call[:1]
        for kernel, group in ((kernel, group) for kernel in kernels for group in groups):
            overrides = [f"model_settings.ttt_kernel={kernel}"]
            if group is not None:
                overrides.append(f"model_settings.ttt_train_chunks_per_call={group}")
            config = load_config(f"configs/evidence_{variant}.yaml", overrides)
            model = load_training_model(config).to(device)
            setting = {"variant": variant, "kernel": kernel,
                       "chunks_per_call": model.config.ttt_train_chunks_per_call}
            for batch in args.batches:
                row = {**setting, "tokens": args.tokens, **step_time(model, batch, args.tokens, args.repeats, device)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            if args.data:
                work = Path(args.out).parent / "step_cost_work"
                config.data_path, config.output_dir = str(usable_data(Path(args.data), work)), str(work)
                packs, encode_s = encoded_packs(config, args.packs, device)
                row = {**setting, "data": True, "encode_s": round(encode_s, 3),
                       **pack_time(model, packs, config.pack_rows, args.row_multiple, device)}
                if args.profile:
                    row.update(kernel_share(model, packs[0], config.pack_rows, args.row_multiple, device))
                rows.append(row)
                print(json.dumps(row), flush=True)
            del model
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
              "inductor": {k: repr(v) for k, v in inductor.items()}, "rows": rows}
    atomic_write_json(args.out, result, indent=1)


if __name__ == "__main__":
    main()
