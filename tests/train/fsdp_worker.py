"""Run by test_fsdp_accumulation under torch.distributed.run: FSDP2 on gloo, processes with different numbers of
sequences per step (as packs of different sizes give), gradients accumulated with fsdp_no_sync."""

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

from spatial_ttt.train.trainer import fsdp_no_sync

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(3)])
reference = nn.Sequential(*[nn.Linear(8, 8) for _ in range(3)])
reference.load_state_dict(model.state_dict())
for layer in model:
    fully_shard(layer, reshard_after_forward=False)
fully_shard(model, reshard_after_forward=False)
inputs = [torch.randn(4, 8, generator=torch.Generator().manual_seed(10 * r + i)) for r in range(2) for i in range(2 + r)]
mine = inputs[:2] if rank == 0 else inputs[2:]
for i, x in enumerate(mine):
    if i < len(mine) - 1:
        with fsdp_no_sync(model):
            model(x).sum().backward()
    else:
        model(x).sum().backward()
for x in inputs:  # the same gradient on one process: sum over everything, / 2 for FSDP's mean over processes
    (reference(x).sum() / 2).backward()
for (name, p), q in zip(model.named_parameters(), reference.parameters()):
    torch.testing.assert_close(p.grad.full_tensor(), q.grad, rtol=1e-5, atol=1e-6)
print(f"rank {rank} ok", flush=True)
# both ranks done before either tears down, then no interpreter teardown: rank 1 aborted at exit ("terminate called
# without an active exception": a native thread destroyed while joinable) after both ranks had printed ok, once
# without the barrier and once (session 19, a fresh clone's suite) with it; what this test checks is done by then
dist.barrier()
dist.destroy_process_group()
os._exit(0)
