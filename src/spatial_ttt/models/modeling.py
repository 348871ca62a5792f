"""Spatial-TTT: Qwen3-VL whose decoder layers are TTT layers except every 4th (the anchors).

The vision tower, MLPs, norms and rope tables are transformers' Qwen3-VL modules; the decoder loop is ours so
that every layer can carry state (:mod:`spatial_ttt.state`) across prefill, decode and streaming.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers.modeling_outputs import ModelOutput
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLTextMLP,
    Qwen3VLTextRotaryEmbedding,
    Qwen3VLVisionModel,
)

from .. import generation
from ..configuration import SpatialTTTConfig
from ..layers.attention import Attention
from ..layers.norm import RMSNorm
from ..layers.spatial_conv import VideoSpan, video_spans
from ..layers.ttt import Precomputed, TTTAttention
from ..layers.vision_attention import (
    FrameBatchedVisionAttention,
    FrameBatchedVisionBlock,
    GemmPatchEmbed,
    vision_inputs_for_grid,
)
from ..ops import FastWeightKernel, FastWeightMemory
from ..state import KVCache, LayerState, ModelState
from ..static_decode import StaticDecoding
from .positions import rope_positions


def is_ttt_parameter(name: str, ttt_layers: Collection[int]) -> bool:
    """Whether a parameter is one a TTT layer adds to Qwen3-VL: everything under that layer's ``self_attn``
    except the pretrained ``attn_layer`` (anchor layers add nothing)."""
    parts = name.split(".")
    return (
        parts[:3] == ["model", "language_model", "layers"]
        and int(parts[3]) in ttt_layers
        and parts[4] == "self_attn"
        and parts[5] != "attn_layer"
    )


@dataclass
class SpatialTTTOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None


class DecoderLayer(nn.Module):
    def __init__(self, config: SpatialTTTConfig, layer_idx: int) -> None:
        super().__init__()
        text = config.text_config
        self.config = config  # read when called (config.mlp_piece, anchor_attention may be changed on a built model)
        self.is_ttt = layer_idx in config.ttt_layers
        self.self_attn = TTTAttention(config) if self.is_ttt else Attention(text)
        self.mlp = Qwen3VLTextMLP(text)
        self.input_layernorm = RMSNorm(text.hidden_size, eps=text.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(text.hidden_size, eps=text.rms_norm_eps)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        state: LayerState | None,
        start: int,
        videos: list[VideoSpan],
        decoding: bool,
        precomputed: Precomputed | None = None,
    ) -> Tensor:
        """``precomputed`` (TTT layers only): see TTTAttention.forward; it holds this layer's normed input too."""
        h = self.input_layernorm(x) if precomputed is None else precomputed.normed
        if self.is_ttt:
            h = self.self_attn(h, cos, sin, state, start, videos, decoding, precomputed)
        else:
            kv = None if state is None else state.kv
            h = self.self_attn(h, cos, sin, kv, start, after_cache=self.config.anchor_attention)
        return self.residual_mlp(x + h)

    def decode_static(self, x: Tensor, cos: Tensor, sin: Tensor, buffers, index: Tensor, slot: Tensor) -> Tensor:
        """``forward`` for one decoded token per row at absolute index ``index`` [1] over the layer's static
        buffers (a spatial_ttt.static_decode.LayerBuffers); ``slot``: where its fast-weight update inputs go."""
        h = self.input_layernorm(x)
        keys, values = buffers.keys, buffers.values
        if self.is_ttt:
            h = self.self_attn.decode_static(h, cos, sin, keys, values, index, buffers.weights, buffers.pending, slot)
        else:
            h = self.self_attn.decode_static(h, cos, sin, keys, values, index)
        x = x + h  # one token per row: never in MLP pieces, so the compiled step does not depend on config.mlp_piece
        return x + self.mlp(self.post_attention_layernorm(x))

    def residual_mlp(self, x: Tensor) -> Tensor:
        """x + mlp(post_attention_layernorm(x)), row by row. A long prompt without autograd goes in pieces of
        ``config.mlp_piece`` tokens, each piece's output added in place into x (the layer's own residual tensor), so
        neither its [S, intermediate] activations nor a second [S, hidden] ever exist whole (2B, 16k-token piece:
        3 x 48 MB at a time instead of 3 x 200 MB plus 64 MB)."""
        piece_tokens = self.config.mlp_piece
        if torch.is_grad_enabled() or x.shape[1] <= piece_tokens:
            return x + self.mlp(self.post_attention_layernorm(x))
        for piece in x.split(piece_tokens, dim=1):
            piece += self.mlp(self.post_attention_layernorm(piece))
        return x


class SpatialTTTTextModel(nn.Module):
    def __init__(self, config: SpatialTTTConfig) -> None:
        super().__init__()
        text = config.text_config
        self.embed_tokens = nn.Embedding(text.vocab_size, text.hidden_size, text.pad_token_id)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(text.num_hidden_layers))
        self.norm = RMSNorm(text.hidden_size, eps=text.rms_norm_eps)
        self.rotary_emb = Qwen3VLTextRotaryEmbedding(config=text)
        self.gradient_checkpointing = False
        # one per model: its compiled steps and CUDA graphs serve every layer (and the vision tower's blocks)
        self.kernel = kernel = FastWeightKernel(config)
        for module in self.modules():
            if isinstance(module, (TTTAttention, Attention, RMSNorm)):
                module.kernel = kernel


class SpatialTTTModel(nn.Module):
    """Holds ``visual`` and ``language_model`` so parameter names match Qwen3-VL checkpoints (``model.*``)."""

    def __init__(self, config: SpatialTTTConfig) -> None:
        super().__init__()
        self.visual = Qwen3VLVisionModel._from_config(config.vision_config)
        self.language_model = SpatialTTTTextModel(config)
        # the same modules with other forwards (new modules would draw their init from the RNG): a video's frames
        # in one attention call, each block through the model's kernel, the patch embedding a GEMM on the GPU
        for block in self.visual.blocks:
            block.__class__, block.attn.__class__ = FrameBatchedVisionBlock, FrameBatchedVisionAttention
            block.kernel = self.language_model.kernel
        self.visual.patch_embed.__class__ = GemmPatchEmbed
        self.visual.patch_embed.kernel = self.language_model.kernel
        self.grids: dict[tuple, dict] = {}  # the vision tower's inputs per (grid, device): vision_inputs_for_grid


class SpatialTTTForConditionalGeneration(PreTrainedModel):
    config_class = SpatialTTTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DecoderLayer", "Qwen3VLVisionBlock"]
    # lets save_pretrained drop the duplicate when embeddings are tied (Qwen3-VL-2B ties them)
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: SpatialTTTConfig) -> None:
        super().__init__(config)
        self.model = SpatialTTTModel(config)
        text = config.text_config
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
        self.static_decoding = StaticDecoding()  # its compiled decode step (spatial_ttt.static_decode)
        if self.ties_embeddings:
            self.lm_head.weight = self.model.language_model.embed_tokens.weight
        self.post_init()

    @property
    def ties_embeddings(self) -> bool:
        return bool(self.config.tie_word_embeddings or getattr(self.config.text_config, "tie_word_embeddings", False))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.language_model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, TTTAttention):  # runs after its children, so the spec's init wins
            module.reset_ttt_parameters()

    # ----------------------------------------------------------------------------------------------------------
    # state

    def new_state(self, batch_size: int = 1) -> ModelState:
        """Empty state for ``batch_size`` independent sequences (fast weights at their initial values)."""
        layers = []
        for layer in self.model.language_model.layers:
            if layer.is_ttt:
                with torch.no_grad():
                    weights = layer.self_attn.initial_weights(batch_size)
                layers.append(LayerState(KVCache(self.config.window_size), FastWeightMemory(weights)))
            else:
                layers.append(LayerState(KVCache(None)))
        return ModelState(layers, next_position=torch.zeros(batch_size, dtype=torch.long))

    def stream(self, processor: object = None, batch_size: int = 1):
        """A live :class:`~spatial_ttt.streaming.StreamSession` on this model."""
        from ..streaming import StreamSession  # the session builds on the model, not the other way round

        return StreamSession(self, processor, batch_size)

    # ----------------------------------------------------------------------------------------------------------
    # forward

    def token_types(self, input_ids: Tensor) -> Tensor:
        """mm_token_type_ids from input_ids: 1 image placeholder, 2 video placeholder, 0 text."""
        types = torch.zeros_like(input_ids)
        types[input_ids == self.config.image_token_id] = 1
        types[input_ids == self.config.video_token_id] = 2
        return types

    def encode_visual(
        self, pixels: Tensor, grid_thw: Tensor, patches_per_call: int | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Merged visual features and deepstack features, computing at most ``patches_per_call`` patches (default
        ``config.vision_patches``; at least one temporal group) per call of the vision tower: it attends only within
        a temporal group (``cu_seqlens`` has one segment per group) and embeds positions per group, so pieces cut between
        groups give the same features while its activation memory stays bounded on long videos. Each call's
        features go straight into the outputs (no list of pieces to concatenate: that would hold them twice)."""
        limit = self.config.vision_patches if patches_per_call is None else patches_per_call
        pieces, row = [], 0
        for t, h, w in grid_thw.tolist():
            per_call = max(limit // (h * w), 1)
            for first in range(0, t, per_call):
                count = min(per_call, t - first)
                pieces.append((row, row + count * h * w, [count, h, w]))
                row += count * h * w
        if row != pixels.shape[0]:
            raise ValueError(f"grid_thw describes {row} patches but {pixels.shape[0]} pixel rows were given")
        visual = self.model.visual
        merged = row // visual.spatial_merge_unit
        width, levels = self.config.vision_config.out_hidden_size, len(visual.deepstack_visual_indexes)
        features, *deepstack = (
            torch.empty(merged, width, dtype=visual.dtype, device=visual.device) for _ in range(1 + levels)
        )
        for start, end, grid in pieces:  # pixels may be in host memory: one piece at a time goes to the device,
            # in their own dtype (async when pinned; a cast on the way would run on the CPU), then cast there
            piece = pixels[start:end].to(visual.device, non_blocking=True).to(visual.dtype)
            out = visual(piece, **self.grid_inputs(tuple(grid)))
            rows = slice(start // visual.spatial_merge_unit, end // visual.spatial_merge_unit)
            features[rows] = out.pooler_output
            for level, part in zip(deepstack, out.deepstack_features):
                level[rows] = part
            del piece, out  # before the next call: one call's activations alive at a time
        return features, deepstack

    def grid_inputs(self, grid: tuple[int, int, int]) -> dict:
        """The vision tower's inputs for a video piece of ``grid`` (:func:`vision_inputs_for_grid`), kept per grid
        and device: a long video's calls share one or two grids."""
        key = (*grid, self.model.visual.device)
        if key not in self.model.grids:
            if len(self.model.grids) >= 16:  # frame sizes come and go in a server: keep the latest
                self.model.grids.pop(next(iter(self.model.grids)))
            self.model.grids[key] = vision_inputs_for_grid(self.model.visual, grid)
        return self.model.grids[key]

    def embed(
        self,
        input_ids: Tensor,
        mm_token_type_ids: Tensor,
        pixel_values: Tensor | None,
        image_grid_thw: Tensor | None,
        pixel_values_videos: Tensor | None,
        video_grid_thw: Tensor | None,
        host_types: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, list[Tensor]]:
        """Token embeddings with vision features scattered in; plus the visual mask and deepstack features.
        ``host_types``: ``mm_token_type_ids`` in host memory where the caller has them; the checks below count
        placeholders there (counted on the GPU, each count is a read-back that makes the host wait until the GPU's
        queue has drained: twice per piece of a prompt run in pieces, sync_points.py, session 22)."""
        embeds = self.model.language_model.embed_tokens(input_ids)
        visual_mask = None
        deepstack: list[Tensor] = []
        inputs = [(1, pixel_values, image_grid_thw, "image"), (2, pixel_values_videos, video_grid_thw, "video")]
        types = mm_token_type_ids.cpu() if host_types is None else host_types
        encoded = {}
        for kind, pixels, grid, name in inputs:
            placeholders = int((types == kind).sum())
            if pixels is None:
                if placeholders:
                    raise ValueError(f"the prompt has {name} placeholder tokens but no {name} pixels were given")
                continue
            if grid is None:
                raise ValueError(f"{name} pixels given without {name}_grid_thw")
            features, deepstack_features = self.encode_visual(pixels, grid)
            features = features.to(embeds.dtype)
            if features.shape[0] != placeholders:
                raise ValueError(
                    f"{name} features and placeholder tokens do not match: {features.shape[0]} features, "
                    f"{placeholders} tokens"
                )
            mask = mm_token_type_ids == kind
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), features)
            encoded[kind] = (mask, deepstack_features)
        if encoded:
            visual_mask = mm_token_type_ids > 0
        if len(encoded) == 1:  # images or videos alone: their features are the visual tokens' rows, in order
            deepstack = [features.to(embeds.dtype) for features in next(iter(encoded.values()))[1]]
        elif encoded:
            for level in range(len(self.config.vision_config.deepstack_visual_indexes)):
                joint = embeds.new_zeros(int((types > 0).sum()), embeds.shape[-1])
                for kind, (mask, features) in encoded.items():
                    joint[mask[visual_mask]] = features[level].to(embeds.dtype)
                deepstack.append(joint)
        return embeds, visual_mask, deepstack

    def forward(
        self,
        input_ids: Tensor,
        pixel_values_videos: Tensor | None = None,
        video_grid_thw: Tensor | None = None,
        pixel_values: Tensor | None = None,
        image_grid_thw: Tensor | None = None,
        mm_token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        state: ModelState | None = None,
        logits_to_keep: int = 0,
        **unused: object,
    ) -> SpatialTTTOutput:
        """All-position logits (or the last ``logits_to_keep``). With ``state``, continues from it and updates it."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise NotImplementedError("padded batches are not supported; pass sequences of equal length")
        if mm_token_type_ids is None:
            mm_token_type_ids = self.token_types(input_ids)
        batch, length = input_ids.shape
        text_model = self.model.language_model
        host_types = mm_token_type_ids.cpu()  # read back once: the embedding's checks and the rope positions
        hidden, visual_mask, deepstack = self.embed(
            input_ids, mm_token_type_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, host_types
        )
        start_pos = state.next_position if state is not None else torch.zeros(batch, dtype=torch.long)
        positions, next_pos = rope_positions(
            host_types, image_grid_thw, video_grid_thw, self.config.vision_config.spatial_merge_size, start_pos
        )
        cos, sin = text_model.rotary_emb(hidden, positions.to(hidden.device))
        start = state.num_tokens if state is not None else 0
        videos = video_spans(mm_token_type_ids, video_grid_thw, self.config.vision_config.spatial_merge_size)
        decoding = state is not None and state.decoding

        for i, layer in enumerate(text_model.layers):
            layer_state = None if state is None else state.layers[i]
            args = (hidden, cos, sin, layer_state, start, videos, decoding)
            if text_model.gradient_checkpointing and self.training and state is None:
                hidden = checkpoint(layer, *args, use_reentrant=False)
            else:
                hidden = layer(*args)
            if i < len(deepstack):
                if torch.is_grad_enabled():  # a layer's output is changed in place only outside autograd
                    hidden = hidden.clone()
                hidden[visual_mask] = hidden[visual_mask] + deepstack[i]
                if i == len(deepstack) - 1:  # its last level: dead for the layers above
                    deepstack = []

        if state is not None:
            state.num_tokens += length
            state.next_position = next_pos
        hidden = text_model.norm(hidden)
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten().to(logits.device), ignore_index=-100
            )
        return SpatialTTTOutput(loss=loss, logits=logits)

    # ----------------------------------------------------------------------------------------------------------
    # generation lives in spatial_ttt.generation; these are the HF-style entry points

    def generate(self, input_ids: Tensor, max_new_tokens: int = 16, **kwargs: object) -> Tensor:
        """Prompt + new tokens [B, S + n]: :func:`spatial_ttt.generation.generate`."""
        return generation.generate(self, input_ids, max_new_tokens, **kwargs)

    def decode(self, state: ModelState, logits: Tensor, max_new_tokens: int, **kwargs: object) -> Tensor:
        """New tokens [B, n] after a prefilled ``state``: :func:`spatial_ttt.generation.decode`."""
        return generation.decode(self, state, logits, max_new_tokens, **kwargs)
