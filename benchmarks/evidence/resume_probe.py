"""Does a resumed training process repeat the uninterrupted run's steps on the GPU? (EVIDENCE.md, studies 7-9: its
first step gave NaN gradients until session 11's fix)

python benchmarks/evidence/resume_probe.py CONFIG DATA_DIR OUT_DIR [--steps 20] [--after 3]
    [--modes default dynamic reference static] [--set KEY=VALUE ...] [--unpack WORK]

One process trains ``--steps`` steps from scratch, saves a checkpoint and goes on for ``--after`` steps: the
uninterrupted reference. Then one new process per mode resumes from that checkpoint and trains the same ``--after``
steps with ``trace_nonfinite`` on (a skipped step names the first module whose output or incoming gradient was not
finite):

* ``default``: as the trainer runs (the fused stages compiled dynamic from the first step, the other compiled
  functions static for that step's shapes until a second shape comes);
* ``dynamic``: dynamo told to treat sizes as dynamic from the first compilation (the uninterrupted process has
  dynamic graphs by then: automatic dynamic shapes recompile after the first new shape);
* ``reference``: the plain PyTorch fast-weight kernel (``model_settings.ttt_kernel=reference``), nothing of the
  TTT step compiled;
* ``static``: the trainer before session 11's fix (the fused stages compiled static for the first step's shapes
  too).

OUT_DIR/probe.json holds every process's steps (loss, grad norm, skipped, the trace) and a table is printed. A
process whose OUT_DIR/PHASE.json exists is not run again, so the probe can span calls on a warm machine: e.g.
``--steps 160 --modes`` (the reference run alone: study 8's NaN came after 161-441 steps), then the modes.
DATA_DIR is what the trainer reads (train.jsonl and its videos or frame folders); on the device, which has no
PyAV, ``--unpack WORK`` first turns a rendered suite's videos into frame folders under WORK/data with
run_device.py's rule (OpenCV). On the CPU every mode must match the reference run (tests/train/test_resume_probe.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from spatial_ttt.files import atomic_write_text

MODES = ("default", "dynamic", "reference", "static")
KEYS = ("step", "loss", "grad_norm", "skipped", "nonfinite_grads", "nonfinite_trace")


def static_training_stages() -> None:
    """Undo session 11's fix in this process: training-time fused stages compiled static at their first shapes
    (dynamo's default), as the trainer did when studies 7-8 saw the NaN."""
    from spatial_ttt.ops import FastWeightKernel

    compiled = FastWeightKernel.compiled
    FastWeightKernel.compiled = lambda self, fn, variant=None, dynamic=None: compiled(self, fn, variant)


def run_phase(args: argparse.Namespace) -> None:
    """In a fresh process: the reference run (``--phase first``) or one mode's resume (``--phase MODE``)."""
    import torch

    from spatial_ttt.train import Trainer, load_config

    base = [*args.set, f"data_path={args.data_dir}", "save_steps=1000000", "save_total_limit=null",
            f"max_steps={args.steps + args.after}"]  # no pruning: the final save would remove the resume point
    out = Path(args.out_dir)
    if args.phase == "first":
        trainer = Trainer(load_config(args.config, [*base, f"output_dir={out / 'first'}"]))
        trainer.train(stop_after=args.steps)
        trainer.save_checkpoint()
        history = trainer.train(stop_after=args.steps + args.after)
    else:
        extra = ["model_settings.ttt_kernel=reference"] if args.phase == "reference" else []
        if args.phase == "dynamic":
            torch._dynamo.config.assume_static_by_default = False
        if args.phase == "static":
            static_training_stages()
        checkpoint = out / "first" / f"checkpoint-{args.steps}"
        config = load_config(args.config, [*base, *extra, f"output_dir={out / args.phase}", f"resume={checkpoint}",
                                           "trace_nonfinite=true"])
        trainer = Trainer(config)
        history = trainer.train(stop_after=args.steps + args.after)
    rows = [{k: h[k] for k in KEYS if k in h} for h in history if h["step"] > args.steps]
    atomic_write_text(out / f"{args.phase}.json", json.dumps(rows))  # its existence marks the phase done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--after", type=int, default=3)
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--unpack", metavar="WORK", help="unpack DATA_DIR's videos to frame folders first (OpenCV)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
        return
    if args.unpack:
        sys.path.insert(0, str(Path(__file__).parent))
        from run_device import to_frames

        to_frames(Path(args.data_dir), Path(args.unpack) / "data")
        args.data_dir = str(Path(args.unpack) / "data")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for phase in ("first", *args.modes):
        if (out / f"{phase}.json").exists():
            print(f"== {phase}: done before, kept", flush=True)
            results[phase] = json.loads((out / f"{phase}.json").read_text())
            continue
        cmd = [sys.executable, __file__, args.config, args.data_dir, args.out_dir, "--steps", str(args.steps),
               "--after", str(args.after), "--phase", phase, *[a for s in args.set for a in ("--set", s)]]
        print(f"== {phase}", flush=True)
        done = subprocess.run(cmd)
        results[phase] = json.loads((out / f"{phase}.json").read_text()) if done.returncode == 0 else {"rc": done.returncode}
    atomic_write_text(out / "probe.json", json.dumps(results, indent=1))
    print("| process | step | loss | grad norm | skipped | first non-finite (forward / backward) |")
    print("|---|---|---|---|---|---|")
    for phase, rows in results.items():
        for r in rows if isinstance(rows, list) else [{"step": f"failed (rc {rows['rc']})"}]:
            trace = r.get("nonfinite_trace") or {}
            where = f"{trace.get('forward_first')} / {trace.get('backward_first')}" if trace else "-"
            print(f"| {phase} | {r['step']} | {r.get('loss', '-')} | {r.get('grad_norm', '-')} | "
                  f"{r.get('skipped', False)} | {where} |")


if __name__ == "__main__":
    main()
