"""The TTT layer: sliding-window attention plus a fast-weight branch that shares its Q/K/V projections."""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm

from ..ops import FastWeightKernel, FastWeightMemory, FastWeights, TokenStream, row_dtype, swiglu_apply
from ..ops.conv_triton import conv_token_groups_triton, depthwise_conv3_triton
from ..state import LayerState
from .attention import Attention
from .rope import apply_partial_rope
from .spatial_conv import VideoSpan, conv_token_groups, conv_video_tokens, depthwise_conv3, init_identity, make_conv


# The elementwise math of the fast-weight branch, as plain functions of tensors: the reference kernel runs them as
# they are, the compiled kernels through torch.compile (FastWeightKernel.fused), so there is one copy of the math.


def fast_weight_inputs(
    q: Tensor, k: Tensor, v: Tensor, q_scale: Tensor, q_offset: Tensor, k_scale: Tensor, k_offset: Tensor, group: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The fast-weight branch's q/k/v [B, S, H*hd] from the attention's q [B, S, H, hd] and k/v [B, S, H_kv, hd]:
    per-channel scale + offset of q and k, KV heads repeated to the query heads."""
    qf = q.flatten(2) * q_scale + q_offset
    kf = k.repeat_interleave(group, dim=2).flatten(2) * k_scale + k_offset
    vf = v.repeat_interleave(group, dim=2).flatten(2)
    return qf, kf, vf


def branch_prologue(
    qf: Tensor,
    kf: Tensor,
    vf: Tensor,
    cos: Tensor,
    sin: Tensor,
    lr_logits: Tensor,
    momentum: Tensor | None,
    nh: int,
    lr_offset: float,
    v_silu: bool,
    rope: bool,
    qk_dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """q/k/v [B, S, nh*d] (after the conv), lr_proj(x) [B, S, 3*nh], momentum_proj(x) [B, S, nh] or None ->
    the operator's rows: q, k [B*nh, S, d] in ``qk_dtype``, v fp32, lr0/lr1/lr2 and momentum [B*nh, S, 1] fp32."""
    batch, length, width = qf.shape
    d = width // nh
    qf, kf, vf = [t.view(batch, length, nh, d).transpose(1, 2) for t in (qf, kf, vf)]
    qf, kf = F.silu(qf), F.silu(kf)
    if v_silu:
        vf = F.silu(vf)
    qf = qf / (qf.norm(dim=-1, keepdim=True) + 1e-5)
    kf = kf / (kf.norm(dim=-1, keepdim=True) + 1e-5)
    if rope:
        qf, kf = apply_partial_rope(qf, cos, sin), apply_partial_rope(kf, cos, sin)

    def per_head(t: Tensor) -> Tensor:  # [B, S, nh, c] -> [B*nh, S, c]
        return t.transpose(1, 2).reshape(batch * nh, length, -1)

    rates = F.softplus(lr_logits.float() + lr_offset).view(batch, length, nh, 3)
    lr0, lr1, lr2 = [per_head(rates[..., j : j + 1]) for j in range(3)]
    if momentum is not None:
        momentum = per_head(momentum.float().view(batch, length, nh, 1))
    qf, kf = [t.reshape(batch * nh, length, d).to(qk_dtype) for t in (qf, kf)]
    return qf, kf, vf.reshape(batch * nh, length, d).float(), lr0, lr1, lr2, momentum


def branch_epilogue(
    out: Tensor, norm_weight: Tensor, eps: float, gate_logits: Tensor, nh: int, dtype: torch.dtype
) -> Tensor:
    """Operator output [B*nh, S, d] -> ttt_norm (the Qwen3-VL RMSNorm), times silu(ttt_scale_proj(x)) per head
    (gate_logits [B, S, nh]), heads merged: [B, S, nh*d] in ``dtype``."""
    batch, length = gate_logits.shape[:2]
    out = out.view(batch, nh, length, -1)
    input_dtype = out.dtype
    out = out.to(torch.float32)  # (reassigned as it goes: no [S, nh*d] intermediate outlives its use)
    out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + eps)
    out = (norm_weight * out.to(input_dtype)).transpose(1, 2)
    gate = F.silu(gate_logits).float().unsqueeze(-1)  # [B, S, nh, 1]
    return (out * gate).flatten(2).to(dtype)


class Projected(NamedTuple):
    """A TTT layer's projections of its input: attention q/k/v per head, fast-weight q/k/v before the conv."""

    q: Tensor
    k: Tensor
    v: Tensor
    qf: Tensor
    kf: Tensor
    vf: Tensor


class Precomputed:
    """A TTT layer's projections and conv features, computed by its caller (the streaming engine, which convolves one
    frame group at a time) and handed over: the layer takes them out, so that no caller's frame keeps the
    projections alive while the fast-weight branch runs (at 16k tokens of the 2B shape they are 0.3 GB).
    ``normed``: the decoder layer's input after its input norm, which the projections were made from (the layer
    uses it instead of normalising again)."""

    def __init__(self, projected: Projected, conv_features: tuple[Tensor, Tensor, Tensor], normed: Tensor) -> None:
        self._contents: tuple[Projected, tuple[Tensor, Tensor, Tensor]] | None = (projected, conv_features)
        self.normed = normed

    def take(self) -> tuple[Projected, tuple[Tensor, Tensor, Tensor]]:
        contents, self._contents = self._contents, None
        if contents is None:
            raise RuntimeError("precomputed inputs are taken once")
        return contents


class LowRankWeight(nn.Module):
    """W = w_left @ w_right + 0.5 * I (the reference's w0_w2_low_rank variant)."""

    def __init__(self, heads: int, rows: int, cols: int, rank: int) -> None:
        super().__init__()
        self.w_left = nn.Parameter(torch.randn(heads, rows, rank) * (0.5 / math.sqrt(rank)))
        self.w_right = nn.Parameter(torch.randn(heads, rank, cols) * (0.5 / math.sqrt(cols)))
        self.register_buffer("identity", 0.5 * torch.eye(rows, cols), persistent=False)

    def forward(self) -> Tensor:
        return self.w_left @ self.w_right + self.identity


class TTTAttention(nn.Module):
    """Replaces a decoder layer's ``self_attn``; keeps the pretrained attention as ``attn_layer``.

    Output = o_proj(window_attention(q, k, v) + fast_weight_branch(x)), see spec/official-model.md.
    """

    def __init__(self, config) -> None:
        super().__init__()
        text = config.text_config
        self.config = config
        self.attn_layer = Attention(text)
        self.num_heads, self.num_kv_heads, self.head_dim = text.num_attention_heads, text.num_key_value_heads, text.head_dim
        hidden = text.hidden_size
        self.nh = config.num_lact_heads
        self.d = hidden // self.nh
        dh = self.d * config.inter_multi
        qk_width = self.num_heads * self.head_dim
        rank = config.w0_w2_low_rank
        if rank > 0:
            self.w0 = LowRankWeight(self.nh, dh, self.d, rank)
            self.w2 = LowRankWeight(self.nh, dh, self.d, rank)
        else:
            self.w0 = nn.Parameter(torch.empty(self.nh, dh, self.d))
            self.w2 = nn.Parameter(torch.empty(self.nh, dh, self.d))
        self.w1 = nn.Parameter(torch.empty(self.nh, self.d, dh))
        self.lr_proj = nn.Linear(hidden, 3 * self.nh)
        self.q_scale = nn.Parameter(torch.ones(qk_width))
        self.k_scale = nn.Parameter(torch.ones(qk_width))
        self.q_offset = nn.Parameter(torch.zeros(qk_width))
        self.k_offset = nn.Parameter(torch.zeros(qk_width))
        self.ttt_scale_proj = nn.Linear(hidden, self.nh)
        self.ttt_norm = Qwen3VLTextRMSNorm(self.d, eps=1e-5)
        if config.use_momentum:
            self.momentum_proj = nn.Sequential(nn.Linear(hidden, self.nh), nn.Sigmoid())
        if config.use_conv_layer:
            self.conv_q, self.conv_k, self.conv_v = (make_conv(qk_width) for _ in range(3))
        # softplus(x + lr_offset) == base lr where the projection outputs 0
        self.lr_offset = math.log(math.expm1(config.ttt_base_lr))
        # how the operator runs (config.ttt_kernel); the model hands all its TTT layers one shared kernel
        self.kernel = FastWeightKernel(config)
        self.reset_ttt_parameters()

    @torch.no_grad()
    def reset_ttt_parameters(self) -> None:
        """The spec's initialisation of every parameter this layer adds (the attention stays pretrained)."""
        if isinstance(self.w0, nn.Parameter):
            nn.init.normal_(self.w0, std=1 / math.sqrt(self.d))
            nn.init.normal_(self.w2, std=1 / math.sqrt(self.d))
        else:
            for low_rank in (self.w0, self.w2):
                rank = low_rank.w_left.shape[-1]
                nn.init.normal_(low_rank.w_left, std=0.5 / math.sqrt(rank))
                nn.init.normal_(low_rank.w_right, std=0.5 / math.sqrt(self.d))
        nn.init.normal_(self.w1, std=1 / math.sqrt(self.w1.shape[-1]))
        self.lr_proj.reset_parameters()
        for p in (self.q_scale, self.k_scale):
            nn.init.ones_(p)
        for p in (self.q_offset, self.k_offset, self.ttt_scale_proj.weight, self.ttt_scale_proj.bias):
            nn.init.zeros_(p)
        nn.init.ones_(self.ttt_norm.weight)
        if self.config.use_momentum:
            self.momentum_proj[0].reset_parameters()
        if self.config.use_conv_layer:
            for conv in (self.conv_q, self.conv_k, self.conv_v):
                init_identity(conv)

    def initial_weights(self, batch_size: int) -> FastWeights:
        """Fast weights at the start of a sequence, one copy per batch row: [B*nh, ...]."""
        w0, w2 = (w if isinstance(w, nn.Parameter) else w() for w in (self.w0, self.w2))
        return FastWeights.start(*(w.repeat(batch_size, 1, 1) for w in (w0, self.w1, w2)))

    def project(self, x: Tensor, fuse: Callable[[Callable], Callable] | None = None) -> Projected:
        """Attention q/k/v and the fast-weight branch's q/k/v before the spatial conv. ``fuse`` gives the function
        that runs the elementwise stage (default: the kernel's choice for ``x``)."""
        q, k, v = self.attn_layer.project(x)
        group = self.num_heads // self.num_kv_heads
        expand = self.kernel.fused(fast_weight_inputs, x) if fuse is None else fuse(fast_weight_inputs)
        qf, kf, vf = expand(q, k, v, self.q_scale, self.q_offset, self.k_scale, self.k_offset, group)
        return Projected(q, k, v, qf, kf, vf)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        state: LayerState | None,
        start: int,
        videos: list[VideoSpan],
        decoding: bool = False,
        precomputed: Precomputed | None = None,
    ) -> Tensor:
        """``precomputed`` lets a caller that already has the projections and conv features (the streaming engine,
        which convolves one frame group at a time) skip recomputing; otherwise the conv runs over ``videos``."""
        projected, conv_features = (None, None) if precomputed is None else precomputed.take()
        p = self.project(x) if projected is None else projected
        kv = None if state is None else state.kv
        attended = self.attn_layer.attend(p.q, p.k, p.v, cos, sin, kv, start, window=self.config.window_size)
        if not self.config.ttt_branch:
            return self.attn_layer.o_proj(attended)
        if conv_features is not None:
            qf, kf, vf = conv_features
        elif self.config.use_conv_layer:
            stencil = self.conv_stencil(x)
            qf, kf, vf = (conv_video_tokens(t, c, videos, stencil) for t, c in zip(p[3:], self.convs))
        else:
            qf, kf, vf = p.qf, p.kf, p.vf
        del p, projected  # dead from here: dropping the pre-conv projections lowers peak memory on long prompts
        memory = self.fast_weight_branch(x, qf, kf, vf, cos, sin, None if state is None else state.ttt, decoding)
        return self.attn_layer.o_proj(attended + memory)

    @property
    def convs(self) -> tuple[nn.Conv3d, nn.Conv3d, nn.Conv3d]:
        return self.conv_q, self.conv_k, self.conv_v

    def conv_stencil(self, x: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """The spatial conv's stencil for inputs like x (one-shot prompt and streaming alike), as the kernel
        chooses: the reference, compiled, or the Triton kernel where the graphed kernel runs on CUDA."""
        return self.kernel.fused(depthwise_conv3, x, inference=depthwise_conv3_triton)

    def conv_groups(self, x: Tensor) -> Callable[..., Tensor]:
        """:func:`~.spatial_conv.conv_token_groups` (the streaming engine's frame groups among a piece's tokens)
        for inputs like x, with the stencil :meth:`conv_stencil` chooses: where that is the Triton kernel, the
        kernel reads and writes the groups' rows where they lie instead of a gathered copy."""
        if self.kernel.runs_inference_kernels(x):
            return conv_token_groups_triton
        return functools.partial(conv_token_groups, stencil=self.conv_stencil(x))

    def fast_weight_branch(
        self,
        x: Tensor,
        qf: Tensor,
        kf: Tensor,
        vf: Tensor,
        cos: Tensor,
        sin: Tensor,
        state: FastWeightMemory | None,
        decoding: bool,
    ) -> Tensor:
        """The fast-weight branch: per-head q/k/v and rates (``branch_prologue``), the operator (the layer's
        memory, ``state``, or a fresh one when stateless), then ttt_norm and the gate (``branch_epilogue``). The
        elementwise stages run compiled unless the reference kernel runs; the projections of ``x`` stay modules.
        Without autograd a long prompt goes through in pieces of whole chunks (``config.branch_piece`` tokens or
        fewer): every stage is per token except the memory, which takes pieces exactly, so the [S, hidden] fp32
        operator rows never exist whole."""
        memory = FastWeightMemory(self.initial_weights(x.shape[0])) if state is None else state
        chunk = self.config.lact_chunk_size
        piece = max(self.config.branch_piece // chunk, 1) * chunk
        if torch.is_grad_enabled() or x.shape[1] <= piece:
            return self._branch_piece(x, qf, kf, vf, cos, sin, memory, decoding)
        parts = [slice(start, start + piece) for start in range(0, x.shape[1], piece)]
        return torch.cat(
            [self._branch_piece(x[:, p], qf[:, p], kf[:, p], vf[:, p], cos[:, p], sin[:, p], memory, decoding) for p in parts],
            dim=1,
        )

    def _branch_piece(
        self, x: Tensor, qf: Tensor, kf: Tensor, vf: Tensor, cos: Tensor, sin: Tensor, memory: FastWeightMemory,
        decoding: bool,
    ) -> Tensor:
        def advance(q: Tensor, rows: TokenStream) -> Tensor:
            return memory.advance(q, rows, self.kernel, decoding)

        return self._branch(x, qf, kf, vf, cos, sin, advance, lambda fn: self.kernel.fused(fn, x))

    def _branch(
        self, x: Tensor, qf: Tensor, kf: Tensor, vf: Tensor, cos: Tensor, sin: Tensor,
        memory: Callable[[Tensor, TokenStream], Tensor], fuse: Callable[[Callable], Callable],
    ) -> Tensor:
        """The branch around its memory: ``memory`` answers the operator's queries [BH, S, d] and takes in the
        tokens' update inputs; ``fuse`` gives the function that runs an elementwise stage."""
        cfg = self.config
        lr_logits = self.lr_proj(x)
        momentum = self.momentum_proj(x) if cfg.use_momentum else None
        # q and k in the products' dtype (kept so in the memory's pending rows); fp32 under autograd, where the
        # gradients of a bf16 row would add up in bf16
        qk_dtype = torch.float32 if torch.is_grad_enabled() else row_dtype(cfg.fast_weight_precision)
        q, *rows = fuse(branch_prologue)(
            qf, kf, vf, cos, sin, lr_logits, momentum, self.nh, self.lr_offset, not cfg.no_v_silu, not cfg.ttt_nope,
            qk_dtype,
        )
        gate_logits = self.ttt_scale_proj(x)
        out = memory(q, TokenStream(*rows))
        del q, rows  # the operator's inputs are not needed past it
        epilogue = fuse(branch_epilogue)
        return epilogue(out, self.ttt_norm.weight, self.ttt_norm.variance_epsilon, gate_logits, self.nh, x.dtype)

    def decode_static(
        self, x: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor, index: Tensor,
        weights: tuple[Tensor, Tensor, Tensor] | None, pending: TokenStream | None, slot: Tensor,
    ) -> Tensor:
        """``forward`` for one decoded (text) token per row, at absolute index ``index`` [1], over static buffers
        (spatial_ttt.static_decode): the window's ring keys/values [B, H_kv, W, hd] (its slot: index mod W); the
        fast weights (w0, w1, w2) answer it and its update inputs go to slot ``slot`` of the ``pending`` buffers
        [BH, C + 1, ...]; the decode rule's update runs between tokens (FastWeightMemory.due). Plain functions
        throughout: the caller compiles the whole layer."""
        plain = lambda fn: fn  # noqa: E731  (the caller compiles the whole layer)
        q, k, v, qf, kf, vf = self.project(x, plain)  # a decoded token is text, which the spatial conv passes through
        # its key goes to slot index mod W; slots 0..index hold tokens of its window (all of them, once it is full)
        attended = self.attn_layer.attend_static(q, k, v, cos, sin, keys, values, index % keys.shape[2], index)
        if not self.config.ttt_branch:
            return self.attn_layer.o_proj(attended)

        def answer(q: Tensor, rows: TokenStream) -> Tensor:
            for buffer, row in zip(pending, rows):
                if buffer is not None:
                    buffer[:, slot] = row
            return swiglu_apply(FastWeights(*weights, None, None), q, self.config.fast_weight_precision)

        memory = self._branch(x, qf, kf, vf, cos, sin, answer, plain)
        return self.attn_layer.o_proj(attended + memory)
