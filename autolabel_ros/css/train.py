"""Training of the CSS network on NOCS samples (``.npz`` chunks written by
:func:`autolabel_ros.sim.nocs.write_sample_chunks`), with photometric randomisation at training time.

Loss: L1 between predicted and target NOCS on the mask pixels of the half-resolution grid + L1 on the
proportions. Randomisation per sample: horizontal flip (cars are mirror-symmetric: NOCS y -> 1 - y),
gain / colour cast / contrast / gamma, grey, Gaussian blur, sensor noise, and a one-pixel erosion or
dilation of the mask (SAM's masks are not exact). Runs for a fixed number of steps or minutes
(whichever comes first) and saves a ``state_dict`` with plain metadata, loadable with
``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autolabel_ros.core.train_clock import TrainClock
from autolabel_ros.css.model import CssNet


def load_chunks(paths) -> dict:
    parts = [dict(np.load(p)) for p in paths]
    if not parts:
        raise ValueError('no NOCS samples')
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def to_tensors(data: dict) -> dict:
    rgb = torch.from_numpy(data['rgb']).permute(0, 3, 1, 2).float() / 255.0
    mask = torch.from_numpy(data['mask']).float()[:, None]
    nocs = torch.from_numpy(data['nocs'].astype(np.float32)).permute(0, 3, 1, 2)
    return dict(rgb=rgb, mask=mask, nocs=nocs, dims=torch.from_numpy(data['dims']).float(),
                facing=torch.from_numpy(data['facing']).float())


def half_res_target(nocs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target NOCS and validity on the network's half-resolution grid (mask-weighted 2 x 2 means)."""
    m = F.avg_pool2d(mask, 2)
    n = F.avg_pool2d(nocs * mask, 2) / m.clamp(min=1e-6)
    return n, (m > 0.49).float()


def augment(b: dict, gen: torch.Generator) -> dict:
    rgb, mask, nocs = b['rgb'].clone(), b['mask'].clone(), b['nocs'].clone()
    B = len(rgb)

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(B, *shape, generator=gen)

    flip = torch.rand(B, generator=gen) < 0.5
    rgb[flip], mask[flip], nocs[flip] = rgb[flip].flip(-1), mask[flip].flip(-1), nocs[flip].flip(-1)
    nocs[flip, 1] = torch.where(mask[flip, 0] > 0, 1 - nocs[flip, 1], nocs[flip, 1])
    rgb = rgb * u(0.5, 1.5, 1, 1, 1) * u(0.85, 1.15, 3, 1, 1)
    mean = rgb.mean(dim=(1, 2, 3), keepdim=True)
    rgb = (rgb - mean) * u(0.6, 1.4, 1, 1, 1) + mean
    rgb = rgb.clamp(0, 1) ** u(0.6, 1.6, 1, 1, 1)
    grey = torch.rand(B, generator=gen) < 0.1
    rgb[grey] = rgb[grey].mean(1, keepdim=True).expand(-1, 3, -1, -1)
    blur = torch.rand(B, generator=gen) < 0.5
    if blur.any():
        sig = float(u(0.4, 1.5)[0])
        k = torch.exp(-0.5 * (torch.arange(-2, 3).float() / sig) ** 2)
        k = k / k.sum()
        x = rgb[blur].reshape(-1, 1, *rgb.shape[-2:])
        x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode='replicate'), k.view(1, 1, 1, 5))
        x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode='replicate'), k.view(1, 1, 5, 1))
        rgb[blur] = x.reshape(-1, 3, *rgb.shape[-2:])
    rgb = (rgb + torch.randn(rgb.shape, generator=gen) * u(0.0, 0.05, 1, 1, 1)).clamp(0, 1)
    r = torch.rand(B, generator=gen)
    dil, ero = r < 0.25, (r >= 0.25) & (r < 0.5)
    inp_mask = mask.clone()
    inp_mask[dil] = F.max_pool2d(mask[dil], 3, 1, 1)
    inp_mask[ero] = -F.max_pool2d(-mask[ero], 3, 1, 1)
    return dict(b, rgb=rgb, mask=mask, inp_mask=inp_mask, nocs=nocs)


def loss_of(net: CssNet, b: dict) -> tuple[torch.Tensor, dict]:
    pred, dims = net(torch.cat([b['rgb'], b.get('inp_mask', b['mask'])], 1))
    tgt, valid = half_res_target(b['nocs'], b['mask'])
    l_nocs = ((pred - tgt).abs() * valid).sum() / (3 * valid.sum().clamp(min=1))
    l_dims = (dims - b['dims']).abs().mean()
    return l_nocs + l_dims, {"nocs_l1": float(l_nocs.detach()), "dims_l1": float(l_dims.detach())}


def save_weights(net: CssNet, path, meta: dict) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    meta = {k: str(v) for k, v in meta.items()}
    torch.save({'state_dict': state, 'width': int(net.width), 'meta': meta}, path)


def load_net(path, device='cpu') -> CssNet:
    blob = torch.load(path, map_location=device, weights_only=True)
    net = CssNet(width=int(blob['width']))
    net.load_state_dict(blob['state_dict'])
    return net.to(device).eval()


def balance_weights(facing: torch.Tensor) -> torch.Tensor:
    """Sampling weights that give fronts, rears and side views (|facing| <= 0.3) equal shares: the
    simulator's roads show more rears (two lanes one way, one the other) than the world need."""
    cls = torch.where(facing > 0.3, 0, torch.where(facing < -0.3, 1, 2))
    counts = torch.bincount(cls, minlength=3).float().clamp(min=1)
    return 1.0 / counts[cls]


# what a fine-tuning may change (the curriculum's ``tune``): everything; everything but the batch-norm
# statistics (they stay the bootstrap's: the fine-tuning batches are half real patches); the decoder and
# heads only (the encoder, statistics included, stays the bootstrap's); the two output heads only
TUNE_MODES = ('all', 'frozen-bn', 'decoder', 'head')


def set_trainable(net: CssNet, tune: str) -> list:
    """Put ``net`` in training mode for ``tune`` (:data:`TUNE_MODES`): frozen parts get no gradient
    and their batch norms keep their running statistics. Returns the parameters to optimise."""
    if tune not in TUNE_MODES:
        raise ValueError(f'unknown tune mode {tune!r}; allowed: {", ".join(TUNE_MODES)}')
    net.train()
    trained = {'all': [net], 'frozen-bn': [net], 'decoder': [net.dec, net.head, net.dims],
               'head': [net.head, net.dims]}[tune]
    keep = {id(p) for m in trained for p in m.parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) in keep)
    # batch norms whose running statistics may move: the trained convolutions' (not with frozen-bn)
    moving = {'all': [net], 'frozen-bn': [], 'decoder': [net.dec], 'head': []}[tune]
    moving_ids = {id(x) for m in moving for x in m.modules()}
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and id(m) not in moving_ids:
            m.eval()
    return [p for p in net.parameters() if p.requires_grad]


def train(data: dict, steps: int, minutes: float, batch: int = 32, lr: float = 2e-3, seed: int = 0,
          net: CssNet | None = None, log=print, log_every: int = 50, balance: bool = False,
          tune: str = 'all') -> tuple[CssNet, list]:
    """Adam with a short warm-up and a cosine decay over ``steps``; stops early at ``minutes``.
    ``balance``: draw fronts, rears and side views equally often; ``tune``: what may change
    (:data:`TUNE_MODES`, for fine-tuning). Returns the net and the per-step losses."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = net or CssNet()
    params = set_trainable(net, tune)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-5)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(k, steps) / max(steps, 1))))
    n = len(data['rgb'])
    weights = balance_weights(data['facing']) if balance else None
    clock = TrainClock(steps, minutes, log_every, log)
    losses = []
    for step in range(steps):
        if weights is None:
            idx = torch.randint(0, n, (min(batch, n),), generator=gen)
        else:
            idx = torch.multinomial(weights, min(batch, n), replacement=True, generator=gen)
        b = augment({k: v[idx] for k, v in data.items()}, gen)
        loss, parts = loss_of(net, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if clock.due(step):
            clock.report(f'step {step:5d}  loss {np.mean(losses[-log_every:]):.4f}  '
                         f'nocs_l1 {parts["nocs_l1"]:.4f}  dims_l1 {parts["dims_l1"]:.4f}')
        if clock.expired(step):
            break
    for p in net.parameters():
        p.requires_grad_(True)
    return net.eval(), losses
