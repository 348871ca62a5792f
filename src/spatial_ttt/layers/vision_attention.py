"""Qwen3-VL's vision tower with a video's frames attended in one call, each block compiled on the GPU, and the
patch embedding a GEMM there.

The vision tower attends within each frame (the chunks of ``cu_seqlens``). transformers' SDPA path runs one
``scaled_dot_product_attention`` per chunk, plus a transposed copy of each output and a concatenation: at 1024
frames of the 2B shape, 24 layers x 512 frames = 12k attention calls and 12k copies. The frames of a video all
have the same size, so here they go in as one batch [frames, heads, tokens, head_dim]: the same attention of
each frame, one call per layer. Anything else (chunks of several sizes, flash-attention varlen, attention
dropout) takes transformers' forward.

Around the products a block is elementwise work: two LayerNorms, the fp32 rope of q and k (casts, ``rotate_half``'s
concatenation, four broadcast products), GELU and the residuals, ~40% of the tower's GPU time at 1024 frames
(session 7 profile). A block therefore runs as one function through the model's kernel
(:meth:`spatial_ttt.ops.FastWeightKernel.fused`: compiled, so that work is fused, unless the reference kernel
runs); the 24 blocks share one compiled graph (their parameters are its inputs).

The patch embedding is a Conv3d whose stride is its kernel, i.e. one linear map per patch; cuDNN runs it through
a generic implicit-GEMM kernel (53 ms of a 1024-frame prompt on an H200, session 23's profile), so where the
model's inference kernels run it goes through cuBLAS instead (:class:`GemmPatchEmbed`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.activations import GELUTanh
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLVisionAttention,
    Qwen3VLVisionBlock,
    Qwen3VLVisionModel,
    Qwen3VLVisionPatchEmbed,
    apply_rotary_pos_emb_vision,
)
from transformers.vision_utils import (
    get_vision_attention_seqlens,
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)


def vision_inputs_for_grid(visual: Qwen3VLVisionModel, grid: tuple[int, int, int]) -> dict[str, Any]:
    """The vision tower's keyword inputs for one video of ``grid`` (t, h, w patches): ``grid_thw`` and what the
    tower derives from it before its blocks, computed once by transformers' own helpers with the tower's
    arguments (the tower takes them as kwargs instead of recomputing), and ``frame_layout`` for the blocks. Derived
    from a grid on the GPU at every call they cost a synchronisation each (``.tolist()``, ``repeat_interleave``),
    and each block another to find its frames: 24 per call at the 2B shape, each leaving the GPU idle while the
    host launched the next block (session 21)."""
    grid_thw = torch.tensor([grid], device=visual.device)
    indices, weights = get_vision_interpolation_indices_and_weights(
        grid_thw, num_grid_per_side=visual.num_grid_per_side, mode=visual.interpolation_mode,
        align_corners=visual.interpolation_align_corners, spatial_merge_size=visual.config.spatial_merge_size)
    cu_seqlens, max_seqlen = get_vision_attention_seqlens(grid_thw, visual.config)
    return dict(grid_thw=grid_thw, interp_indices=indices, interp_weights=weights, cu_seqlens=cu_seqlens,
                max_seqlen=max_seqlen, position_ids=get_vision_position_ids(grid_thw, visual.spatial_merge_size),
                frame_layout=(grid[0], grid[1] * grid[2]))  # a video's chunks: its t frames of h * w patches


def equal_frames(cu_seqlens: Tensor) -> tuple[int, int] | None:
    """(frames, tokens per frame) when every chunk of ``cu_seqlens`` has the same length, else None."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    return (len(lengths), lengths[0]) if len(set(lengths)) == 1 else None


class FrameBatchedVisionAttention(Qwen3VLVisionAttention):
    """Same parameters and results as Qwen3VLVisionAttention (``attn`` of every vision block)."""

    def batched(self, cu_seqlens: Tensor, layout: tuple[int, int] | None = None) -> tuple[int, int] | None:
        """(frames, tokens) where the frames can go in as one batch, else None (transformers' forward runs);
        ``layout``: the frames as the caller knows them (:func:`vision_inputs_for_grid`), else read off
        ``cu_seqlens``."""
        if self.config._attn_implementation != "sdpa" or (self.training and self.attention_dropout):
            return None
        return layout if layout is not None else equal_frames(cu_seqlens)

    def forward(
        self,
        hidden_states: Tensor,
        cu_seqlens: Tensor,
        position_embeddings: tuple[Tensor, Tensor] | None = None,
        max_seqlen: int | None = None,
        **kwargs,
    ) -> Tensor:
        frames = self.batched(cu_seqlens)
        if frames is None:
            return super().forward(hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
        return self.attend_frames(hidden_states, *position_embeddings, *frames)

    def attend_frames(self, hidden_states: Tensor, cos: Tensor, sin: Tensor, frames: int, tokens: int) -> Tensor:
        """The attention of ``frames`` consecutive chunks of ``tokens`` rows each, as one batch."""
        seq_length = hidden_states.shape[0]
        q, k, v = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        # [S, heads, hd] -> [frames, heads, tokens, hd]: views; each frame's rows are those of its chunk
        q, k, v = (t.view(frames, tokens, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)
        return self.proj(out.transpose(1, 2).reshape(seq_length, -1))


def frame_block(block: Qwen3VLVisionBlock, x: Tensor, cos: Tensor, sin: Tensor, frames: int, tokens: int) -> Tensor:
    """Qwen3VLVisionBlock.forward with the frames attended as one batch (what the kernel compiles)."""
    x = x + block.attn.attend_frames(block.norm1(x), cos, sin, frames, tokens)
    return x + block.mlp(block.norm2(x))


def frame_block_gelu_epilogue(block: Qwen3VLVisionBlock, x: Tensor, cos: Tensor, sin: Tensor, frames: int,
                              tokens: int) -> Tensor:
    """frame_block with the MLP's first linear and its tanh GELU as :func:`linear_gelu_tanh`. For a tower whose
    MLP is a tanh GELU (:func:`gelu_epilogue_applies`)."""
    x = x + block.attn.attend_frames(block.norm1(x), cos, sin, frames, tokens)
    fc1 = block.mlp.linear_fc1
    return x + block.mlp.linear_fc2(linear_gelu_tanh(block.norm2(x), fc1.weight, fc1.bias))


def linear_gelu_tanh(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """gelu_tanh(x @ weight.T + bias), x [N, K]. On CUDA one GEMM whose epilogue adds the bias and applies the GELU
    to the fp32 sums (``torch._addmm_activation``: cuBLASLt's GELU_BIAS epilogue, the tanh approximation; inductor
    keeps it one call): transformers rounds the linear's output to bf16 and reads it back for the GELU, a pass
    over [patches, 4096] of its own (43 ms of a 1024-frame prompt, session 23's profile); here that rounding is
    skipped, so the two differ by the products' rounding. Elsewhere the linear, then the GELU
    (``_addmm_activation``'s GELU off CUDA is the exact one, not the tanh approximation)."""
    if x.is_cuda:
        return torch._addmm_activation(bias, x, weight.t(), use_gelu=True)
    return F.gelu(F.linear(x, weight, bias), approximate="tanh")


def gelu_epilogue_applies(block: Qwen3VLVisionBlock) -> bool:
    """Whether the block's MLP is what :func:`frame_block_gelu_epilogue` computes: a biased linear, then
    transformers' tanh GELU (Qwen3-VL's ``gelu_pytorch_tanh``; its Python form is the same function), then a
    linear."""
    return isinstance(block.mlp.act_fn, GELUTanh) and block.mlp.linear_fc1.bias is not None


class FrameBatchedVisionBlock(Qwen3VLVisionBlock):
    """Same parameters and results as Qwen3VLVisionBlock; ``kernel`` (the model's FastWeightKernel) is set by
    the model and decides whether the block runs compiled (without one, as outside a model, it runs eagerly)."""

    kernel = None

    def forward(
        self, hidden_states: Tensor, cu_seqlens: Tensor, position_embeddings: tuple[Tensor, Tensor] | None = None,
        **kwargs,
    ) -> Tensor:
        layout = kwargs.pop("frame_layout", None)  # vision_inputs_for_grid's (transformers' layers take no such kwarg)
        frames = self.attn.batched(cu_seqlens, layout) if position_embeddings is not None else None
        if frames is None:
            return super().forward(hidden_states, cu_seqlens, position_embeddings, **kwargs)
        if self.kernel is None:
            run = frame_block
        else:  # where the model's inference kernels run: the MLP's GELU in its GEMM's epilogue, compiled around it
            inference = self.kernel.compiled(frame_block_gelu_epilogue) if gelu_epilogue_applies(self) else None
            run = self.kernel.fused(frame_block, hidden_states, inference)
        return run(self, hidden_states, *position_embeddings, *frames)


PATCH_ROWS = 8192  # patches per GEMM of GemmPatchEmbed (2B shape: 26 GFLOP, well past cuBLAS's small-shape regime)


def patch_gemm(patches: Tensor, weight: Tensor, bias: Tensor | None, rows: int = PATCH_ROWS) -> Tensor:
    """patches [N, K] (a patch's pixels in the Conv3d weight's order), weight [E, K], bias [E] -> [N, E], as GEMMs
    of exactly ``rows`` patches each (the last one zero-padded): the GEMM library picks its kernel, and with it
    the order of each sum, by shape, so a patch's result would otherwise depend on how many patches came with it
    (a stream's pieces and the one-shot prompt would see different features)."""
    out = torch.empty(patches.shape[0], weight.shape[0], dtype=patches.dtype, device=patches.device)
    bias = torch.zeros_like(weight[:, 0]) if bias is None else bias
    for start in range(0, patches.shape[0], rows):
        block = patches[start : start + rows]
        n = block.shape[0]
        if n == rows:
            torch.addmm(bias, block, weight.t(), out=out[start : start + n])
        else:
            out[start : start + n] = torch.addmm(bias, F.pad(block, (0, 0, 0, rows - n)), weight.t())[:n]
    return out


class GemmPatchEmbed(Qwen3VLVisionPatchEmbed):
    """Same parameters and results (to the products' rounding) as Qwen3VLVisionPatchEmbed. ``kernel`` (the model's
    FastWeightKernel, set by the model): where it runs its inference kernels (CUDA, no autograd) the embedding is
    :func:`patch_gemm`; elsewhere (the CPU, training) the Conv3d as transformers runs it."""

    kernel = None

    def forward(self, hidden_states: Tensor) -> Tensor:
        if self.kernel is None or not self.kernel.runs_inference_kernels(hidden_states):
            return super().forward(hidden_states)
        weight = self.proj.weight.flatten(1)  # [E, C * T * P * P], the order of a patch's row of pixels
        return patch_gemm(hidden_states.reshape(-1, weight.shape[1]).to(weight.dtype), weight, self.proj.bias)
