"""The training loop (accelerate): one process per GPU under torchrun / accelerate launch, FSDP2 or DDP.

Checkpoints (``output_dir/checkpoint-N``) are model folders that :func:`spatial_ttt.load_model` opens
(config.json + model.safetensors, fp32, plus the processor files), with ``training_state/`` (optimizer,
scheduler and RNG states, written by accelerate) and ``trainer_state.json`` (step, losses, settings) for resume.
A checkpoint is written to ``.tmp-checkpoint-N`` and renamed when complete, so an interrupted save leaves none.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from ..checkpoint import convert_qwen3vl, copy_processor_files, load_model, load_state_strict, read_tensors
from ..layouts import folder_layout
from ..tiny import tiny_model
from ..video import SpatialTTTProcessor, make_tiny_processor
from .config import TrainConfig
from .data import PackDataset, PackSampler, SFTEncoder, collate_pack, estimate_lengths, make_packs, read_records
from .nonfinite import GradientCheck, NonFiniteWatch
from .optim import build_optimizer, build_scheduler, configure_trainable
from .packing import pack_loss

STATE_NAME = "trainer_state.json"


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    strategy = config.strategy
    if strategy == "auto":
        strategy = "fsdp" if distributed and torch.cuda.is_available() else "ddp"
    if strategy == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin
        from torch.distributed.fsdp import MixedPrecisionPolicy

        # FSDP2 keeps fp32 (sharded) master weights and computes in bf16: the model's explicit fp32 parts (fast
        # weights, their updates) stay fp32, as with the reference's DeepSpeed bf16. No autocast.
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if config.bf16 else None
        plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2,
            auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=["DecoderLayer", "Qwen3VLVisionBlock"],
            reshard_after_forward=config.fsdp_reshard_after_forward,
            mixed_precision_policy=policy,
            state_dict_type="SHARDED_STATE_DICT",
            cpu_ram_efficient_loading=False,
        )
        return Accelerator(mixed_precision="no", fsdp_plugin=plugin, cpu=not torch.cuda.is_available()), strategy
    # DDP / one process: bf16 through autocast (fp32 weights and optimizer states).
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    cpu = not torch.cuda.is_available()
    return Accelerator(mixed_precision="bf16" if config.bf16 else "no", kwargs_handlers=[ddp], cpu=cpu), strategy


def check_sources(config: TrainConfig) -> None:
    """Missing model, processor or data folders, named before anything slow starts."""
    for setting, folder in (("model", config.model), ("processor", config.processor)):
        if folder not in (None, "tiny") and not Path(folder).is_dir():
            raise FileNotFoundError(f"{setting} folder not found: {folder} (set {setting}: in the config or "
                                    f"--set {setting}=PATH; a local folder, nothing is downloaded)")
    if not Path(config.data_path).is_dir():
        raise FileNotFoundError(f"data folder not found: {config.data_path} (set data_path: in the config or "
                                f"--set data_path=PATH)")


def usable_workers(requested: int) -> int:
    """DataLoader workers: no more than the cores this process may use, one left for the training loop."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(requested, cores - 1))


class TrainingDiverged(RuntimeError):
    """More than ``max_skipped_steps`` steps in a row had a non-finite loss or gradient norm."""


class Heartbeat:
    """Progress lines on stderr inside long steps, at most one every `every` seconds (none when steps are fast)."""

    def __init__(self, enabled: bool, every: float) -> None:
        self.enabled, self.every, self.last = enabled, every, time.perf_counter()

    def __call__(self, message: str) -> None:
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.every:
            print(message, file=sys.stderr, flush=True)
            self.last = now


def load_processor(config: TrainConfig, accelerator) -> tuple[SpatialTTTProcessor, Path]:
    folder = config.processor or config.model
    if folder == "tiny":
        folder = Path(config.output_dir) / "processor"
        with accelerator.main_process_first():
            if accelerator.is_main_process or not (folder / "tokenizer.json").exists():
                make_tiny_processor(folder)
    return SpatialTTTProcessor.from_pretrained(folder), Path(folder)


def load_training_model(config: TrainConfig):
    if config.model == "tiny":
        model = tiny_model(seed=config.seed, **config.model_settings)
    else:
        fresh = folder_layout(config.model) == "qwen3_vl"
        model = (convert_qwen3vl if fresh else load_model)(config.model, **config.model_settings)
    return model.float().train()


def find_checkpoint(config: TrainConfig) -> Path | None:
    if not config.resume:
        return None
    if config.resume != "auto":
        path = Path(config.resume)
        if not (path / STATE_NAME).is_file():
            raise FileNotFoundError(f"{path} is not a complete training checkpoint (no {STATE_NAME})")
        return path
    done = [p for p in Path(config.output_dir).glob("checkpoint-*") if (p / STATE_NAME).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


@contextlib.contextmanager
def fsdp_no_sync(model) -> Iterator[None]:
    """FSDP2: accumulate gradients unreduced and keep parameters unsharded (no collectives) until the exit."""
    model.set_requires_gradient_sync(False)
    model.set_reshard_after_backward(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
        model.set_reshard_after_backward(True)


def to_device(pack: list[dict[str, torch.Tensor]], device: torch.device) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device, non_blocking=True) for k, v in ex.items()} for ex in pack]


class Trainer:
    """Builds everything from a :class:`TrainConfig`; :meth:`train` runs to ``total_steps`` (or ``stop_after``)."""

    def __init__(self, config: TrainConfig) -> None:
        from accelerate.utils import set_seed

        check_sources(config)
        self.config = config
        self.accelerator, self.strategy = make_accelerator(config)
        acc = self.accelerator
        if self.strategy == "fsdp" and not acc.is_fsdp2:
            self.strategy = "ddp"  # accelerate runs FSDP on accelerators only; on CPU processes it uses DDP
        self.out = Path(config.output_dir)
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
        set_seed(config.seed)
        self.processor, self.processor_dir = load_processor(config, acc)
        self.encoder = SFTEncoder(self.processor, config)

        records = read_records(config.data_path, config.data_files)
        lengths = estimate_lengths(self.encoder, records)
        answered = [any(t["from"] in ("gpt", "assistant") for t in r["conversations"]) for r in records]
        lengths = [n if ok else config.max_length + 1 for n, ok in zip(lengths, answered)]
        packs, dropped = make_packs(lengths, config.max_length, config.seed, config.packing)
        if not packs:
            raise ValueError("no record fits in max_length")
        if self.strategy == "fsdp" and config.fsdp_reshard_after_forward and (config.packing or config.grad_accum > 1):
            raise ValueError("fsdp_reshard_after_forward: true needs packing: false and grad_accum: 1 (packs of "
                             "different sizes would all-gather a different number of times on each process)")
        self.dataset = PackDataset(records, packs, self.encoder)
        self.dropped = dropped
        self.world, self.rank = acc.num_processes, acc.process_index
        self.num_workers = usable_workers(config.num_workers)
        self.per_rank = math.ceil(len(packs) / self.world)  # packs each process sees per epoch
        steps_per_epoch = max(1, self.per_rank // config.grad_accum)
        self.total_steps = config.max_steps if config.max_steps > 0 else max(1, math.ceil(config.epochs * steps_per_epoch))
        self.data_summary = {"records": len(records), "packs": len(packs), "dropped_too_long": len(dropped),
                             "tokens": sum(lengths[i] for p in packs for i in p), "steps": self.total_steps,
                             "workers": self.num_workers}

        model = load_training_model(config)
        self.trainable = configure_trainable(model, config)
        model.model.language_model.gradient_checkpointing = config.gradient_checkpointing
        self.resume_from = find_checkpoint(config)
        if self.resume_from is not None:
            load_state_strict(model, read_tensors(self.resume_from))
        optimizer = build_optimizer(model, config)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.scheduler = build_scheduler(self.optimizer, config, self.total_steps)
        self.watch = NonFiniteWatch(acc.unwrap_model(self.model)) if config.trace_nonfinite else None
        acc.register_for_checkpointing(self.scheduler)
        # Model weights live in the checkpoint's own safetensors (our format); accelerate keeps the rest.
        acc.register_save_state_pre_hook(lambda models, weights, folder: weights.clear())
        acc.register_load_state_pre_hook(lambda models, folder: models.clear())
        self.step = 0
        self.skipped_in_a_row = 0  # consecutive steps with a non-finite loss or gradient norm (not applied)
        self.history: list[dict[str, Any]] = []
        # Set (by the train command's Ctrl-C handler) to stop with KeyboardInterrupt at the next step or sequence:
        # an interrupt that Python swallows (raised inside a finaliser, e.g. a DataLoader's shutdown) still stops.
        self.stop_requested = threading.Event()
        if self.resume_from is not None:
            acc.load_state(str(self.resume_from / "training_state"))
            state = json.loads((self.resume_from / STATE_NAME).read_text())
            self.step, self.history = state["step"], state["history"]

    # -- data -------------------------------------------------------------------------------------------------
    def packs(self, start: int) -> Iterator[list[dict[str, torch.Tensor]]]:
        """This process's packs from its ``start``-th onwards, epoch after epoch (reshuffled each epoch)."""
        epoch, skip = divmod(start, self.per_rank)
        while True:
            sampler = PackSampler(len(self.dataset), self.config.seed, epoch, self.rank, self.world, skip)
            loader = DataLoader(self.dataset, batch_size=1, sampler=sampler, collate_fn=collate_pack,
                                num_workers=self.num_workers, pin_memory=torch.cuda.is_available())
            for pack in loader:
                yield to_device(pack, self.accelerator.device)
            epoch, skip = epoch + 1, 0

    @contextlib.contextmanager
    def accumulating(self) -> Iterator[None]:
        """Forward + backward of a sequence that is not the step's last: gradients accumulate locally.

        Processes may hold packs of different sizes, so nothing here may issue a collective: DDP skips its
        all-reduce (no_sync); FSDP2 skips the reduce-scatter AND keeps the parameters unsharded after backward
        (otherwise each extra sequence would all-gather again, and processes with more sequences would wait on
        collectives the others never join). The step's last sequence reduces the accumulated gradients."""
        if self.strategy != "fsdp":
            with self.accelerator.no_sync(self.model):
                yield
            return
        with fsdp_no_sync(self.model):
            yield

    # -- loop -------------------------------------------------------------------------------------------------
    def train(self, stop_after: int | None = None) -> list[dict[str, Any]]:
        """Runs optimizer steps until total_steps (or until ``stop_after`` steps have been done, for tests)."""
        acc, config = self.accelerator, self.config
        end = self.total_steps if stop_after is None else min(self.total_steps, stop_after)
        stream = self.packs(self.step * config.grad_accum)
        self.model.train()
        if acc.is_main_process:
            acc.print(f"training {self.strategy} on {self.world} process(es): {self.data_summary}; "
                      f"trainable {self.trainable}; from step {self.step}")
        beat = Heartbeat(acc.is_main_process, config.progress_every_s)
        while self.step < end:
            self.stop_if_requested()
            start = time.perf_counter()
            if self.watch is not None:
                self.watch.reset()
            losses, answer, tokens, sequences = [], 0, 0, 0
            for micro in range(config.grad_accum):
                beat(f"step {self.step + 1}/{end}: reading pack {micro + 1}/{config.grad_accum} (decoding videos)")
                pack = next(stream)
                last_micro = micro == config.grad_accum - 1
                done = [0]

                def context(last_sequence: bool) -> contextlib.AbstractContextManager:
                    self.stop_if_requested()
                    done[0] += 1
                    beat(f"step {self.step + 1}/{end}: pack {micro + 1}/{config.grad_accum}, sequence "
                         f"{done[0]}/{len(pack)} ({time.perf_counter() - start:.0f} s into the step)")
                    if (last_sequence and last_micro) or self.world == 1:
                        return contextlib.nullcontext()
                    return self.accumulating()

                loss, n = pack_loss(self.model, pack, backward=acc.backward, context=context, scale=1 / config.grad_accum,
                                    rows=config.pack_rows, row_multiple=config.pack_row_multiple)
                losses.append(loss)
                answer += n
                tokens += sum(int(ex["input_ids"].numel()) for ex in pack)
                sequences += len(pack)
            gradients = GradientCheck.of(self.model)  # before clipping; read only if the step is skipped
            grad_norm = None
            if config.max_grad_norm and config.max_grad_norm > 0:
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
            lrs = {g["kind"]: g["lr"] for g in self.optimizer.param_groups}
            counts = acc.reduce(torch.tensor([tokens, answer, sequences], device=acc.device, dtype=torch.float64), "sum")
            loss = acc.reduce(torch.stack(losses).mean().detach().to(acc.device), "mean")
            # the same decision on every process: the loss is reduced and the clipped norm is the global one
            finite = math.isfinite(float(loss)) and (grad_norm is None or math.isfinite(float(grad_norm)))
            if finite:
                self.optimizer.step()
                self.skipped_in_a_row = 0
            else:  # one NaN/inf step would make every weight NaN: this step changes nothing
                self.skipped_in_a_row += 1
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            elapsed = time.perf_counter() - start
            peak = None
            if acc.device.type == "cuda":  # the largest per-process peak, since the start
                peak = float(acc.reduce(torch.tensor(torch.cuda.max_memory_allocated(acc.device) / 2**30, device=acc.device), "max"))
            record = {"step": self.step, "loss": float(loss), "lr": lrs.get("llm", lrs.get("conv")), "lact_lr": lrs.get("ttt"),
                      "grad_norm": None if grad_norm is None else float(grad_norm), "tokens": int(counts[0]),
                      "answer_tokens": int(counts[1]), "sequences": int(counts[2]), "step_s": round(elapsed, 4),
                      "tokens_per_s": round(float(counts[0]) / elapsed, 1),
                      "peak_gib_per_process": None if peak is None else round(peak, 2)}
            if not finite:
                record["skipped"] = True
                record["nonfinite_grads"] = gradients.report()
                if self.watch is not None:
                    record["nonfinite_trace"] = self.watch.report()
            self.history.append(record)
            if acc.is_main_process:
                with open(self.out / "log.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if self.step % config.logging_steps == 0 or self.step == end or not finite:
                    acc.print(json.dumps(record) + ("  (non-finite: step skipped, weights unchanged)" if not finite else ""))
            if self.skipped_in_a_row > config.max_skipped_steps:
                raise TrainingDiverged(
                    f"{self.skipped_in_a_row} steps in a row (up to step {self.step}) had a non-finite loss or gradient "
                    f"norm and were skipped; the weights are those after step {self.step - self.skipped_in_a_row}. "
                    "Lower lr / lact_lr or max_grad_norm, or check the data; the latest checkpoint in "
                    f"{self.out} resumes from before the failure (max_skipped_steps={config.max_skipped_steps})"
                )
            if self.step % config.save_steps == 0 or self.step == self.total_steps:
                self.save_checkpoint()
        return self.history

    def stop_if_requested(self) -> None:
        if self.stop_requested.is_set():
            raise KeyboardInterrupt

    # -- checkpoints ------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        acc = self.accelerator
        final = self.out / f"checkpoint-{self.step}"
        tmp = self.out / f".tmp-checkpoint-{self.step}"
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp / "training_state"))
        state_dict = acc.get_state_dict(self.model)  # gathers FSDP shards (all processes take part)
        if acc.is_main_process:
            self.write_model(state_dict, tmp)
            state = {"step": self.step, "total_steps": self.total_steps, "history": self.history,
                     "config": self.config.to_dict(), "world_size": self.world, "strategy": self.strategy}
            (tmp / STATE_NAME).write_text(json.dumps(state, indent=1))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            self.prune()
        acc.wait_for_everyone()
        return final

    def write_model(self, state_dict: dict[str, torch.Tensor], folder: Path) -> None:
        """Our checkpoint format (what save_model writes): config.json + model.safetensors, plus the processor."""
        model = self.accelerator.unwrap_model(self.model)
        config = model.config
        config.architectures = ["SpatialTTTForConditionalGeneration"]
        config.save_pretrained(str(folder))
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        if model.ties_embeddings:
            tensors.pop("lm_head.weight", None)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "model.safetensors").chmod(0o644)  # safetensors creates it 0600; the rest of the folder is 0644
        copy_processor_files(self.processor_dir, folder, overwrite=True)

    def prune(self) -> None:
        limit = self.config.save_total_limit
        if not limit:
            return
        done = sorted((p for p in self.out.glob("checkpoint-*") if (p / STATE_NAME).is_file()),
                      key=lambda p: int(p.name.split("-")[1]))
        for old in done[:-limit]:
            shutil.rmtree(old)


def train(config: TrainConfig) -> list[dict[str, Any]]:
    """Runs a whole training job (resuming when a checkpoint is found and resume is on); returns the step log."""
    trainer = Trainer(config)
    history = trainer.train()
    trainer.accelerator.end_training()
    return history
