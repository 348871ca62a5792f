"""Serving benchmarks for `spatial-ttt serve` (results in docs/serving.md). Localhost only, bounded in time.

    python benchmarks/bench_serve.py load  [--shape tiny|2b] [--device cpu|cuda] [--sessions 1 2 4 8] [--fps 1 2 4]
    python benchmarks/bench_serve.py state [--frames 16 64 256]      # session save/restore time and size
    python benchmarks/bench_serve.py batch [--sessions 2 4]          # frames of S sessions: one after another vs batched
    python benchmarks/bench_serve.py sizes                           # per-token state sizes at the 2B width

``load`` runs a real uvicorn server on 127.0.0.1 (in this process) and S client threads, each pushing JPEG frames
at F frames/s (timestamps from a paced clock) for --seconds, then asking one question; a rate is "held" when every
client pushed all its frames within 10% of the schedule. The 2B shape is a randomly initialised model of
Qwen3-VL-2B's dimensions (weights do not change the cost), with the tiny processor's token ids.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from spatial_ttt.configuration import SpatialTTTConfig  # noqa: E402
from spatial_ttt.models.modeling import SpatialTTTForConditionalGeneration  # noqa: E402
from spatial_ttt.pipeline import SpatialTTTPipeline, make_tiny_model_folder  # noqa: E402
from spatial_ttt.streaming import StreamSession  # noqa: E402
from spatial_ttt.tiny import tiny_config  # noqa: E402
from spatial_ttt.video import SpatialTTTProcessor, make_tiny_processor  # noqa: E402

SIZE = (352, 480)  # the released evaluation's frame size: 165 video tokens per frame pair
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TEXT_2B, VISION_2B  # noqa: E402  (the 2B shape, one copy for every benchmark)


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def processor() -> SpatialTTTProcessor:
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-proc-"))
    make_tiny_processor(folder)
    return SpatialTTTProcessor.from_pretrained(folder)


def config_2b(layers: int = 28, vision_depth: int = 24, **settings) -> SpatialTTTConfig:
    """Qwen3-VL-2B's shape with the released TTT settings (3 of 4 layers TTT) and the tiny processor's token ids;
    fewer layers / a shallower vision tower for the state-size measurement."""
    text = dict(TEXT_2B, num_hidden_layers=layers)
    vision = dict(VISION_2B, depth=vision_depth,
                  deepstack_visual_indexes=VISION_2B["deepstack_visual_indexes"] if vision_depth == 24 else [0])
    tiny = tiny_config()
    ids = {k: getattr(tiny, k) for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    ttt = [i for i in range(layers) if i % 4 != 3]
    return SpatialTTTConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, ttt_layers=ttt, **ids,
                            **settings)


def pipeline(shape: str, device: str, dtype: torch.dtype) -> SpatialTTTPipeline:
    if shape == "tiny":
        folder = make_tiny_model_folder(Path(tempfile.mkdtemp(prefix="bench-serve-")) / "tiny")
        return SpatialTTTPipeline.from_pretrained(folder, device=device, dtype=dtype)
    # short answers: the eager decode (graphed decoding compiles for ~80 s on first use, which would stall the worker)
    model = SpatialTTTForConditionalGeneration(config_2b(decode_kernel="eager")).to(device=device, dtype=dtype).eval()
    return SpatialTTTPipeline(model, processor(), source="random 2B shape")


def jpeg_frames(count: int = 8, size: tuple[int, int] = SIZE) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


# ----------------------------------------------------------------------------------------------------------------
# load: sessions x frames/s through a real server


def load(args) -> dict:
    import uvicorn

    from spatial_ttt.serve import ServeSettings, create_app

    pipe = pipeline(args.shape, args.device, getattr(torch, args.dtype))
    frames = jpeg_frames()
    state = tempfile.mkdtemp(prefix="bench-serve-state-")
    settings = ServeSettings(state_dir=Path(state), chunk_frames=args.chunk_frames, size=SIZE,
                             max_session_bytes=1 << 40, max_total_bytes=1 << 40, idle_seconds=3600)
    server = uvicorn.Server(uvicorn.Config(create_app(pipe, settings), host="127.0.0.1", port=args.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{args.port}"
    rows = []
    try:
        for fps in args.fps:
            for sessions in args.sessions:
                row = _load_round(url, frames, sessions, fps, args.seconds, args.chunk_frames)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if not row["held"]:
                    break  # more sessions at this rate will not be held either
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    return {"machine": machine(), "shape": args.shape, "device": args.device, "dtype": args.dtype,
            "size": list(SIZE), "chunk_frames": args.chunk_frames, "seconds": args.seconds, "rows": rows}


def _load_round(url: str, frames: list[bytes], sessions: int, fps: float, seconds: float, chunk: int) -> dict:
    import httpx

    count = int(seconds * fps) // chunk * chunk or chunk
    results: list[dict] = []

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as c:
            name = c.post("/api/sessions", json={"fps": fps, "chunk_frames": chunk}).json()["id"]
            start, latencies = time.perf_counter(), []
            for k in range(count):
                delay = start + k / fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = time.perf_counter()
                response = c.post(f"/api/sessions/{name}/frames", params={"t": k / fps}, content=frames[k % len(frames)])
                response.raise_for_status()
                latencies.append(time.perf_counter() - sent)
            done = time.perf_counter() - start
            asked = time.perf_counter()
            c.post(f"/api/sessions/{name}/ask", json={"question": "How many chairs?", "max_new_tokens": 8, "stream": False}).raise_for_status()
            results.append({"elapsed": done, "latencies": latencies, "ask_s": time.perf_counter() - asked})
            c.delete(f"/api/sessions/{name}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    schedule = (count - 1) / fps
    latencies = sorted(x for r in results for x in r["latencies"])
    worst = max(r["elapsed"] for r in results)
    return {
        "sessions": sessions, "fps": fps, "frames_per_session": count,
        "achieved_fps_per_session": round(min(count / max(r["elapsed"], 1e-9) for r in results), 3),
        "server_frames_per_s": round(sessions * count / worst, 2),
        "push_latency_p50_s": round(latencies[len(latencies) // 2], 4),
        "push_latency_p95_s": round(latencies[int(len(latencies) * 0.95)], 4),
        "ask_s_max": round(max(r["ask_s"] for r in results), 3),
        "held": worst <= schedule * 1.1 + 1.0 / fps,
    }


# ----------------------------------------------------------------------------------------------------------------
# state: save / restore time and size against stream length


def state(args) -> dict:
    pipe = pipeline(args.shape, args.device, getattr(torch, args.dtype))
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (args.chunk_frames, *SIZE, 3), dtype=np.uint8))
    tokens_per_pair = int(pipe.processor.encode_frames(frames[:2], [0.0, 1.0]).input_ids.shape[1])
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-save-"))
    session, seen, rows, observing = pipe.stream(), 0, [], 0.0
    for target in sorted(args.frames):
        start = time.perf_counter()
        while seen < target:
            session.observe(frames, [float(seen + i) for i in range(args.chunk_frames)])  # 1 frame per second
            seen += args.chunk_frames
        _sync(args.device)
        observing += time.perf_counter() - start
        path = folder / f"{seen}.safetensors"
        start = time.perf_counter()
        session.save(path)
        saved = time.perf_counter() - start
        start = time.perf_counter()
        resumed = StreamSession.load(path, pipe.model, pipe.processor)
        _sync(args.device)
        loaded = time.perf_counter() - start
        del resumed
        row = {"frames": seen, "file_bytes": path.stat().st_size, "memory_bytes": session.memory_bytes(),
               "save_s": round(saved, 4), "load_s": round(loaded, 4), "observe_frames_per_s": round(seen / observing, 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        path.unlink()
    return {"machine": machine(), "shape": args.shape, "device": args.device, "dtype": args.dtype, "size": list(SIZE),
            "chunk_frames": args.chunk_frames, "tokens_per_frame_pair": tokens_per_pair, "rows": rows}


# ----------------------------------------------------------------------------------------------------------------
# batch: does observing several sessions' frames in one batch pay?


def batch(args) -> dict:
    pipe = pipeline(args.shape, args.device, getattr(torch, args.dtype))
    rng = np.random.default_rng(0)
    rows = []
    for sessions in args.sessions:
        chunks = [torch.from_numpy(rng.integers(0, 256, (args.chunk_frames, *SIZE, 3), dtype=np.uint8)) for _ in range(sessions)]
        times = [float(i) for i in range(args.chunk_frames)]
        singles = [pipe.stream() for _ in range(sessions)]
        together = StreamSession(pipe.model, pipe.processor, batch_size=sessions)
        for s, c in zip(singles, chunks):  # warm-up, and the prefix
            s.observe(c, times)
        together.observe(chunks, times)
        times = [t + args.chunk_frames for t in times]
        _sync(args.device)
        start = time.perf_counter()
        for s, c in zip(singles, chunks):
            s.observe(c, times)
        _sync(args.device)
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        together.observe(chunks, times)
        _sync(args.device)
        batched = time.perf_counter() - start
        row = {"sessions": sessions, "frames_each": args.chunk_frames, "one_after_another_s": round(one_by_one, 4),
               "batched_s": round(batched, 4), "speedup": round(one_by_one / batched, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"machine": machine(), "shape": args.shape, "device": args.device, "size": list(SIZE), "rows": rows}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------------------------
# sizes: per-token state at the 2B width, measured on a 4-layer model of that width (3 TTT + 1 anchor)


def sizes(args) -> dict:
    """Stream state by kind on a 4-layer model of the 2B width (fp32 parameters; fast weights are fp32 in any case,
    the KV cache takes the model's dtype), after 6 and after 10 frame pairs: the difference is 4 pairs that reached
    every layer (each conv layer holds one group back, so the first groups do not reach the top at once)."""
    torch.manual_seed(0)
    cfg = config_2b(layers=4, vision_depth=1)
    model = SpatialTTTForConditionalGeneration(cfg).eval()
    proc = processor()
    session = StreamSession(model, proc)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, *SIZE, 3), dtype=np.uint8))
    tokens = int(proc.encode_frames(frames[:2], [0.0, 1.0]).input_ids.shape[1])
    rows = []
    for step in range(5):
        session.observe(frames, [float(4 * step + i) for i in range(4)])
        if step in (2, 4):
            rows.append({"frame_pairs": 2 * (step + 1), "memory_bytes": session.memory_bytes()})
            print(json.dumps(rows[-1]), flush=True)
    first, second = rows[0]["memory_bytes"], rows[1]["memory_bytes"]
    per_token = {k: (second[k] - first[k]) / (4 * tokens) for k in first}
    return {"machine": machine(), "config": "2B width, 4 layers (TTT 0/1/2, anchor 3), fp32",
            "tokens_per_frame_pair": tokens, "rows": rows, "growth_per_token_bytes": per_token,
            "ttt_layers": 3, "anchor_layers": 1, "lact_chunk_size": cfg.lact_chunk_size, "window_size": cfg.window_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["load", "state", "batch", "sizes"])
    parser.add_argument("--shape", choices=["tiny", "2b"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--fps", type=float, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=24.0, help="load: seconds of video each client pushes")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--chunk-frames", type=int, default=8)
    parser.add_argument("--port", type=int, default=8931)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the tiny model is fastest so, "
                        "and a busy machine does not stall it)")
    parser.add_argument("--out", help="write the JSON result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "load" and args.device.startswith("cuda") is False and args.shape == "2b":
        parser.error("the 2B shape load test is for a GPU (--device cuda)")
    result = {"load": load, "state": state, "batch": batch, "sizes": sizes}[args.what](args)
    result["command"] = " ".join(sys.argv)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
