"""SpatialTTTConfig: a Qwen3-VL config plus the test-time-training settings, with the released defaults."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import Qwen3VLConfig

from .ops.attention_gpu import AFTER_CACHE
from .ops.fast_weight_kernels import KERNELS
from .static_decode import DECODE_KERNELS


def default_ttt_layers(num_layers: int) -> list[int]:
    """Three of every four layers; every 4th (3, 7, ...) keeps full attention as an anchor."""
    return [i for i in range(num_layers) if i % 4 != 3]


# Settings that choose how the model runs, not what it computes: a saved state is valid under any value of them.
EXECUTION_SETTINGS = (
    "ttt_kernel", "decode_kernel", "anchor_attention", "prefill_piece", "mlp_piece", "branch_piece", "vision_patches",
    "ttt_train_chunks_per_call",
)


@strict
class SpatialTTTConfig(Qwen3VLConfig):
    """Qwen3-VL with TTT layers. Field names follow the reference's ``lact`` settings."""

    model_type = "spatial_ttt"

    ttt_layers: list[int] | None = None  # None: default_ttt_layers(num_hidden_layers)
    num_lact_heads: int = 4
    lact_chunk_size: int = 2648
    window_size: int = 2648
    use_muon: bool = True
    use_momentum: bool = True
    use_conv_layer: bool = True
    # False switches the fast-weight branch off (its parameters stay, unused): TTT layers become sliding-window
    # attention only. For ablations; the released models keep it on.
    ttt_branch: bool = True
    w0_w2_low_rank: int = 0
    inter_multi: int = 1
    ttt_base_lr: float = 0.001
    no_v_silu: bool = False
    ttt_nope: bool = False
    # Released values the reference also exposes; other values are not implemented (and refused).
    learnable_ttt_scale: bool = True
    ttt_prenorm: bool = False
    qkv_silu: bool = True
    lr_dim: int = 1
    fp32_states: bool = True
    # How the fast-weight products run (ours, not the reference's): "fp32" multiplies in fp32 like the reference's
    # inference path (exact); "bf16" takes bf16 operands with fp32 accumulation (fast mode). Prefill, decode and
    # streaming, CPU and GPU, all honour it.
    fast_weight_precision: str = "fp32"
    # Which implementation of the fast-weight operator runs: "auto" (compiled + CUDA graphs on CUDA, plain on CPU),
    # "reference" (plain PyTorch), "compiled" (torch.compile'd step) or "graphed" (compiled step in a CUDA graph).
    ttt_kernel: str = "auto"
    # Training only (ours, not the math): how many whole chunks of a row one call of the fast-weight kernel takes
    # where autograd is on; the compiled kernel runs them in one compiled call, as the host cost of a call per chunk
    # bounded a small model's training step (benchmarks/EVIDENCE.md, study 4). 1: one call per chunk, the default
    # until the GPU step time is measured (on the CPU, 4 cut the calls 4x but tripled the cold compile).
    ttt_train_chunks_per_call: int = 1
    # How decoding runs a token (ours): "eager" (a forward per token), "graphed" (one step over static buffers,
    # compiled and replayed as a CUDA graph; on CPU the same step runs uncompiled) or "auto" (graphed on CUDA,
    # eager on CPU). Not part of the math: spatial_ttt.static_decode.
    decode_kernel: str = "auto"
    # How the anchors' attention runs on the GPU in fp16/bf16 when the keys end with the queries (a prefill's
    # pieces after a KV cache, or the square) (ours; not part of the math): "flash" (SDPA's flash kernel with the
    # diagonal bottom-right) or "split" (cuDNN on the square diagonal block plus unmasked prefix blocks, merged by
    # log-sum-exp; spatial_ttt.ops.attention_gpu). Elsewhere (CPU, fp32, small problems) both run the same path.
    # "split" is the default since session 22: a 1024-frame prompt 2.20 s against flash's 2.67 (medians of five
    # interleaved rounds, one H200), once the host's overhead no longer hid the anchors' gain; a process's first
    # split call pays cuDNN's plans (~0.9 s) (docs/model.md, "Anchor attention"; benchmarks/RESULTS.md, session 22).
    anchor_attention: str = "split"
    # Memory against speed (ours; not part of the math: the same numbers at any value, the MLP's to its products'
    # last bit). Smaller pieces lower the prefill's peak memory and cost time (docs/model.md, "Memory settings").
    # Tokens per piece when generate prefills a long video prompt as a stream of pieces of whole frame groups
    # (one video per row, no images; generation.prefill's ``piece_tokens`` overrides it per call).
    prefill_piece: int = 16384
    # Tokens per MLP call in a prefill without autograd (each piece added in place into the residual).
    mlp_piece: int = 4096
    # Tokens per pass of a TTT layer's fast-weight branch in a forward without autograd (rounded down to whole
    # chunks, at least one): the branch's fp32 operator rows of a long one-shot prompt never exist whole.
    branch_piece: int = 16384
    # Patches per vision tower call, cut between temporal groups (at least one group per call): 64 groups of
    # 352x480 frames, the fastest: 0.80 s of vision at 1024 frames on an H100, where 32 groups (21,120) lower that
    # prefill's peak by 0.34 GiB for 0.12 s (session 7: benchmarks/RESULTS.md, benchmarks/prefill_ab.py).
    # encode_visual's ``patches_per_call`` overrides it per call.
    vision_patches: int = 42240

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.ttt_layers is None:
            self.ttt_layers = default_ttt_layers(self.text_config.num_hidden_layers)
        self.validate_ttt()

    def validate_ttt(self) -> None:
        text = self.text_config
        problems = []
        bad = [i for i in self.ttt_layers if not 0 <= i < text.num_hidden_layers]
        if bad:
            problems.append(f"ttt_layers {bad} outside 0..{text.num_hidden_layers - 1}")
        if len(set(self.ttt_layers)) != len(self.ttt_layers):
            problems.append(f"ttt_layers has duplicates: {self.ttt_layers}")
        if self.num_lact_heads <= 0 or text.hidden_size % self.num_lact_heads:
            problems.append(f"hidden_size {text.hidden_size} is not divisible by num_lact_heads {self.num_lact_heads}")
        elif text.hidden_size // self.num_lact_heads < text.head_dim and not self.ttt_nope:
            problems.append("fast-weight head dim (hidden / num_lact_heads) is smaller than head_dim: no room for rope")
        if text.num_attention_heads * text.head_dim != text.hidden_size:
            problems.append("num_attention_heads * head_dim must equal hidden_size (the TTT branch adds to attention)")
        if text.num_attention_heads % text.num_key_value_heads:
            problems.append("num_attention_heads must be a multiple of num_key_value_heads")
        for name in (
            "lact_chunk_size", "window_size", "inter_multi", "prefill_piece", "mlp_piece", "branch_piece",
            "vision_patches", "ttt_train_chunks_per_call",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.w0_w2_low_rank < 0 or (self.w0_w2_low_rank and self.inter_multi != 1):
            problems.append("w0_w2_low_rank must be >= 0, and low rank needs inter_multi == 1")
        if self.fast_weight_precision not in ("fp32", "bf16"):
            problems.append(f"fast_weight_precision must be 'fp32' or 'bf16', not {self.fast_weight_precision!r}")
        for name, choices in (("ttt_kernel", KERNELS), ("decode_kernel", DECODE_KERNELS),
                              ("anchor_attention", AFTER_CACHE)):
            if getattr(self, name) not in choices:
                problems.append(f"{name} must be one of {'/'.join(choices)}, not {getattr(self, name)!r}")
        if self.ttt_base_lr <= 0:
            problems.append("ttt_base_lr must be positive")
        unsupported = {"learnable_ttt_scale": True, "ttt_prenorm": False, "qkv_silu": True, "lr_dim": 1, "fp32_states": True}
        for name, released in unsupported.items():
            if getattr(self, name) != released:
                problems.append(f"{name}={getattr(self, name)!r} is not implemented (only the released {released!r})")
        if problems:
            raise ValueError("invalid SpatialTTTConfig: " + "; ".join(problems))
