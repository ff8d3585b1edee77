"""Run under torchrun by tests/test_train_ddp.py: the gradient of one global P x K batch
computed by 2 processes (each its half of the rows: DDP + all-gathered embeddings +
CrossRankBatchNorm) must equal the one-process gradient. In float64, so that what is
compared is the method, not float32 rounding. Prints one JSON line on rank 0."""
import copy
import json

import torch
import torch.distributed as dist

from edgeface import models
from edgeface.train import distributed as D
from edgeface.train.losses import MultibatchLoss, RelationalDistillationLoss

torch.manual_seed(0)
card = models.get("mobilenet_v1_a0.25_r64").card
model = models.build_from_card(card).train().double()
x = torch.randn(16, 3, *card.input_size, dtype=torch.float64)
labels = torch.arange(16) // 4
teacher = torch.randn(16, 32, dtype=torch.float64)


def loss_of(emb):
    return MultibatchLoss().double()(emb, labels) + RelationalDistillationLoss()(emb, teacher)


single = copy.deepcopy(model)
loss_one = loss_of(single(x))
loss_one.backward()

dist.init_process_group("gloo")
world = D.world_from_env()
shared = D.CrossRankBatchNorm.convert(copy.deepcopy(model))
ddp = torch.nn.parallel.DistributedDataParallel(shared)
emb = D.gather_rows(ddp(x[D.shard_rows(len(x), world)]), world)
loss_two = loss_of(emb)
loss_two.backward()
if world.rank == 0:
    worst = max(((p1.grad - p2.grad).abs().max() / p1.grad.abs().max().clamp_min(1e-30)).item() for p1, p2 in zip(single.parameters(), shared.parameters()) if p1.grad.abs().max() > 1e-12)
    bn_stats = max((b1 - b2).abs().max().item() for b1, b2 in zip(single.buffers(), shared.buffers()) if b1.dtype.is_floating_point)
    print(json.dumps({"loss_one": loss_one.item(), "loss_two": loss_two.item(), "max_rel_grad_diff": worst, "max_bn_buffer_diff": bn_stats}))
dist.destroy_process_group()
