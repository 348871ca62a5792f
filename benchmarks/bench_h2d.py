"""How fast do a video's pixels reach the GPU from host memory? The copies a library could make, timed alone.

    PYTHONPATH=src:benchmarks python benchmarks/bench_h2d.py --out h2d.json          # one GPU

bench_e2e (session 14) found the vision tower 0.05 s slower at 128 frames and 0.3 s slower at 1024 frames on
pixels in pageable host memory (as the processor leaves them) than on pinned ones; staging each piece through
``Tensor.pin_memory()`` in the library made it slower still (0.19-0.21 s against 0.13 s at 128 frames, on a host
shared with three other jobs). Per size (the pixels of 64 frame groups of 352x480, fp32: one vision call; and of
1024 frames), each copy ends with the data on the GPU and the host synchronised:
  pageable       tensor.to("cuda") from pageable memory (the processor's default output; the pipeline has it
                 write pinned pixels since session 15);
  pin_then_copy  tensor.pin_memory() (a host copy into the caching host allocator's pinned memory), then an
                 asynchronous copy (what the staging did, in one block);
  register       cudaHostRegister on the tensor's own pages, an asynchronous copy, cudaHostUnregister (no host
                 copy; page-locking costs instead);
  pinned         from memory pinned beforehand (the floor: what a processor writing into pinned memory would give).
Median of --repeat runs after one warm-up; GB/s = bytes / seconds.
"""

from __future__ import annotations

import argparse

import torch

from common import cuda_time, environment, median, write_json

PATCH_ROW = 1536  # fp32 values per patch row: 3 channels x 2 frames x 16 x 16
SIZES = {"64 groups (one vision call)": 64 * 22 * 30, "1024 frames": 512 * 22 * 30}


def pageable(t: torch.Tensor) -> torch.Tensor:
    return t.to("cuda")


def pin_then_copy(t: torch.Tensor) -> torch.Tensor:
    return t.pin_memory().to("cuda", non_blocking=True)


def register(t: torch.Tensor) -> torch.Tensor:
    cudart = torch.cuda.cudart()
    nbytes = t.numel() * t.element_size()
    assert cudart.cudaHostRegister(t.data_ptr(), nbytes, 0) == 0
    out = t.to("cuda", non_blocking=True)
    torch.cuda.current_stream().synchronize()  # the pages stay locked until the copy has read them
    assert cudart.cudaHostUnregister(t.data_ptr()) == 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("times copies to a CUDA GPU; none is available here")
    result = dict(environment=environment(), threads=torch.get_num_threads(), runs=[])
    for name, rows in SIZES.items():
        host = torch.randn(rows, PATCH_ROW)
        nbytes = host.numel() * host.element_size()
        run = dict(size=name, gib=nbytes / 2**30)
        for label, copy, source in (("pageable", pageable, host), ("pin_then_copy", pin_then_copy, host),
                                    ("register", register, host), ("pinned", pageable, host.pin_memory())):
            try:
                seconds = median(cuda_time(lambda: copy(source), repeat=args.repeat))
                run[label] = dict(seconds=seconds, gb_per_s=nbytes / seconds / 1e9)
            except Exception as error:  # one failing copy must not lose the others
                run[label] = dict(error=repr(error)[:300])
            print(name, label, run[label], flush=True)
        result["runs"].append(run)
        write_json(args.out, result)


if __name__ == "__main__":
    main()
