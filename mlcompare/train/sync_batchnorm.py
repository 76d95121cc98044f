"""BatchNorm whose batch statistics are those of the global batch across torchrun's ranks.

Under DDP each rank normalises with its own share of the P x K batch unless BatchNorm is
synchronised; then a distributed step is not the single-process step on the same global batch,
and a comparison's result would depend on the number of processes. On GPUs torch's
``nn.SyncBatchNorm`` (fused NCCL kernels) does the job; it refuses CPU tensors, so on CPUs (gloo)
:class:`GlobalBatchNorm` computes the same statistics with one differentiable all-reduce.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch (every rank's images) for inputs ``[N, C, *]``, any backend.

    .. math::
        \\mu = \\frac{1}{M} \\sum_{r, i} x_{r i}, \\quad
        \\sigma^2 = \\frac{1}{M} \\sum_{r, i} (x_{r i} - \\mu)^2, \\quad
        y = \\gamma \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

    with M the number of values per channel over all ranks. One all-reduce carries, per channel,
    each rank's sum and its sum of squares about the global origin, built from the rank's own mean
    and squared deviations (in the input's precision, at least float32) and added up in float64, so that
    E[x^2] - E[x]^2 does not cancel; its backward is one all-reduce too, so every rank's gradient
    is that of one big batch. The running variance is unbiased (M / (M - 1)), as in
    ``nn.BatchNorm``. Outside training, or without a process group, it is plain BatchNorm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected input [N, C, *], got {x.dim()}-D input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1, *([1] * (x.dim() - 2))]
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # at least float32; float64 stays float64
        n = xf.numel() / xf.shape[1]
        local_mean = xf.mean(dims)
        local_m2 = (xf - local_mean.view(shape)).pow(2).sum(dims)
        mean_64 = local_mean.double()
        total = _AllReduceSum.apply(torch.cat([n * mean_64, local_m2.double() + n * mean_64 * mean_64, mean_64.new_tensor([n])]))
        channels, count = xf.shape[1], total[-1]
        mean_64 = total[:channels] / count
        mean = mean_64.to(xf.dtype)
        var = (total[channels:2 * channels] / count - mean_64 * mean_64).clamp_min(0).to(xf.dtype)
        centred = xf - mean.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_((var * (count / (count - 1).clamp_min(1))).to(self.running_var.dtype), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; its gradient is the sum over ranks of the incoming gradients (every rank's
    loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm layer replaced by one over the global batch, in place
    (the same parameter and running-statistics tensors; state-dict keys unchanged): torch's
    ``nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _replace(model)


def _replace(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        # The same Parameter and buffer objects, so that an optimiser built before still updates them.
        for name, value in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            setattr(new, name, value)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _replace(child))
    return module
