"""The vision tower's blocks run through the model's kernel (compiled unless the reference kernel runs) with the
same numbers."""

import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from spatial_ttt.layers.vision_attention import frame_block
from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt


def test_compiled_vision_blocks_give_the_reference_numbers_and_share_one_graph():
    """ttt_kernel="compiled" on the CPU (inductor's C++ backend) against "reference", on a video prompt. The fused
    block only reorders fp32 arithmetic, so the logits agree to rounding; the vision tower's blocks (all of one
    shape) compile once per kind of input, not once per block. Muon off: its bf16 Newton-Schulz makes any two implementations differ
    at O(1e-2)."""
    # dynamo's automatic dynamic shapes remember sizes by source location, which every private copy of frame_block
    # shares: a compile of another test's shapes would make this one recompile as dynamic (seen with the tests of
    # test_kernels.py and test_memory.py run first)
    torch._dynamo.reset()
    model = tiny_model(seed=0, lact_chunk_size=8, use_muon=False, vision_config={"depth": 3}).eval()
    inputs = video_prompt(frames_groups=4, grid_hw=4)
    with torch.no_grad():
        expected = model(**inputs).logits
        model.config.ttt_kernel = "compiled"
        got = model(**inputs).logits
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    assert (got - expected).abs().max() > 0  # the compiled functions really ran (fused arithmetic rounds differently)
    kernel = model.model.language_model.kernel
    assert len(model.model.visual.blocks) == 3
    (blocks,) = [c for key, c in kernel._compiled.items() if key[0] is frame_block]
    # the first block's input is a view (of the patch embedding's output), the others' are not: two kinds of
    # input (ops.compiled.input_kind), one compiled graph each, shared by the blocks after the first
    entries = [len(_debug_get_cache_entry_list(f._torchdynamo_orig_callable.__code__)) for f in blocks.variants.values()]
    assert entries == [1, 1]
