"""A stream saved on the GPU resumes on the GPU and on the CPU with the same next answer (CUDA only)."""

import copy

import numpy as np
import pytest
import torch

from spatial_ttt.streaming import StreamSession
from spatial_ttt.tiny import tiny_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_a_stream_saved_on_the_gpu_resumes_on_the_gpu_and_on_the_cpu(tmp_path, processor):
    cpu_model = tiny_model(use_muon=False, lact_chunk_size=16)
    gpu_model = copy.deepcopy(cpu_model).cuda()
    video = np.random.default_rng(0).integers(0, 255, size=(7, 64, 64, 3), dtype=np.uint8)
    session = gpu_model.stream(processor)
    session.observe(video[:5], [0.5 * i for i in range(5)])
    session.save(tmp_path / "s.safetensors")
    answers = []
    for model in (gpu_model, cpu_model):
        resumed = StreamSession.load(tmp_path / "s.safetensors", model, processor)
        assert {t.device.type for t in resumed.stream.model.layers[0].ttt.weights[:3]} == {model.device.type}
        resumed.observe(video[5:], [2.5, 3.0])
        answers.append(resumed.ask("How many chairs?", max_new_tokens=6, stop_token_ids=[]))
    assert answers[0] == answers[1]
