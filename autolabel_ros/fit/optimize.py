"""Batched Adam over all objects x heading hypotheses of a frame.

Schedule: all hypotheses run for ``prune_after`` steps on the cheap terms (LiDAR, ground, shape;
the silhouette term joins at step ``mask_from``); at ``prune_after`` every hypothesis is scored with
the full energy (one forward pass, silhouette included) and only the ``keep_hypotheses`` lowest-
energy ones per object go on with the full energy, so the render cost goes to the survivors
(``prune_diverse``: the survivors must differ by > 90 deg in heading, i.e. the best and its flip;
``prune_twin``: when no survivor lies near the best's front/back flip, its twin -- the best turned by
180 deg -- joins them, so the heading choice always has the flip of the best to weigh).
Coarse-to-fine (``coarse_crop_size``, ``coarse_ray_samples``): the silhouette steps before the last
``fine_steps`` render a smaller crop with fewer samples per ray (the basin is wide there, ``zeta`` is
small), the last steps and the final energy the full ones. Early stop (``settle_steps``,
``settle_tol``): after the pruning and the coarse steps, a hypothesis whose energy has moved less than
``settle_tol`` over its last ``settle_steps`` steps leaves the batch with its parameters as they are.
Before the pruning (``prune_points``), the LiDAR term reads at most that many points per object (evenly
spaced through its list): the eight headings' cheap steps only decide which two go on, and the pruning
itself reads them all; so do the last ``fine_steps`` steps and the final energy, the steps between
the pruning and those at most ``coarse_points``.
Ground term: each hypothesis' columns near the plane found every ``ground_refresh`` steps are searched
in between (``ground_columns``, :func:`autolabel_ros.fit.energies.ground_columns`).
The silhouette hardness ``zeta`` grows geometrically from ``zeta_start`` (wide basin) to ``zeta``;
learning rates decay to ``lr_final_frac`` of their start. All survivors are returned (best first)
for the final choice (:mod:`autolabel_ros.fit.fitter`: lamp cue, fine mask IoU).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from autolabel_ros.fit.batch import FitBatch
from autolabel_ros.fit.energies import compute_energies, ground_columns, total_energy
from autolabel_ros.fit.render import Renderer, render_silhouettes
from autolabel_ros.core.stage_clock import no_clock


@dataclass
class ObjectFit:
    pose: np.ndarray                 # x, y, z, yaw (LiDAR frame; z = centre of the prior box)
    code: np.ndarray                 # shape code (metric units of the prior)
    scales: np.ndarray               # per-axis scale (1 when log scales are off)
    energy: float
    terms: dict = field(default_factory=dict)
    hyp_energies: list = field(default_factory=list)   # (yaw, energy) of every initial hypothesis
    hyp_index: int = 0                                  # which initial hypothesis won
    alternatives: list = field(default_factory=list)   # every surviving hypothesis (ObjectFit), best first
    steps: int = 0                                      # Adam steps it took (fewer: it settled early)


def _zeta(cfg, it: int, n: int) -> float:
    if n <= 1:
        return float(cfg.zeta)
    f = it / (n - 1)
    return float(cfg.zeta_start * (cfg.zeta / cfg.zeta_start) ** f)


class _State:
    """The hypotheses' parameters (position, heading, normalized code, optional log scales) as the
    columns of one (B, 4 + d [+ 3]) leaf, and their Adam state: one update of the whole block per step
    (the arithmetic of ``torch.optim.Adam`` with one learning rate per column) instead of the
    optimiser's loop over four parameter groups, which cost as much as a small energy term."""

    BETAS, EPS = (0.9, 0.999), 1e-8

    def __init__(self, xyz, yaw, code_n, log_scale, obj, hyp_id, cfg):
        parts = [xyz, yaw[:, None], code_n] + ([] if log_scale is None else [log_scale])
        self.p = torch.cat(parts, 1).detach().requires_grad_(True)
        self.d = code_n.shape[1]
        self.has_scale = log_scale is not None
        self.obj, self.hyp_id = obj, hyp_id
        self.lr0 = np.array([cfg.lr] * 3 + [cfg.lr_yaw] + [cfg.lr_shape] * self.d
                            + ([cfg.lr_scale] * 3 if self.has_scale else []))
        self.m = torch.zeros_like(self.p)
        self.v = torch.zeros_like(self.p)
        self.steps = 0
        self.stopped = 0        # the step after which these hypotheses stopped (early stop)

    @property
    def xyz(self):
        return self.p[:, :3]

    @property
    def yaw(self):
        return self.p[:, 3]

    @property
    def code_n(self):
        return self.p[:, 4:4 + self.d]

    @property
    def log_scale(self):
        return self.p[:, 4 + self.d:] if self.has_scale else None

    def pose(self):
        return self.p[:, :4]

    def parts(self):
        """(pose (B, 4), normalized code (B, d), log scales (B, 3) or None) of ``p`` in one split (one
        backward node where three slices made three)."""
        if not self.has_scale:
            pose, code_n = self.p.split([4, self.d], 1)
            return pose, code_n, None
        return self.p.split([4, self.d, 3], 1)

    def step(self, lr_factor: float):
        """One Adam step on the gradient in ``p.grad`` with learning rates ``lr0 * lr_factor``."""
        b1, b2 = self.BETAS
        self.steps += 1
        with torch.no_grad():
            g = self.p.grad
            self.m.lerp_(g, 1 - b1)
            self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = torch.as_tensor(self.lr0 * lr_factor / (1 - b1 ** self.steps), dtype=self.p.dtype,
                                        device=self.p.device)
            denom = (self.v.sqrt() / (1 - b2 ** self.steps) ** 0.5).add_(self.EPS)
            self.p.sub_(step_size * self.m / denom)
        self.p.grad = None

    def take(self, keep):
        """The hypotheses ``keep`` (bool or index) with their Adam state."""
        new = object.__new__(_State)
        new.__dict__.update(self.__dict__)
        new.p = self.p.detach()[keep].clone().requires_grad_(True)
        new.m, new.v = self.m[keep], self.v[keep]
        new.obj, new.hyp_id = self.obj[keep], self.hyp_id[keep]
        return new

    @staticmethod
    def joined(parts: list):
        """One state holding the hypotheses of ``parts`` in their initial (object-major) order, for the
        final energy (Adam state dropped)."""
        new = object.__new__(_State)
        new.__dict__.update(parts[-1].__dict__)
        order = torch.argsort(torch.cat([s.hyp_id for s in parts]))
        new.p = torch.cat([s.p.detach() for s in parts])[order]
        new.stopped = torch.cat([torch.full((len(s.p),), s.stopped) for s in parts])[order].numpy()
        new.obj = torch.cat([s.obj for s in parts])[order]
        new.hyp_id = torch.cat([s.hyp_id for s in parts])[order]
        new.m = new.v = None
        return new

    def subset(self, keep, cfg):
        """The hypotheses ``keep``, their Adam state restarted."""
        p = self.p.detach()[keep]
        return _State(p[:, :3], p[:, 3], p[:, 4:4 + self.d], p[:, 4 + self.d:] if self.has_scale else None,
                      self.obj[keep], self.hyp_id[keep], cfg)


def _energies(sdf, batch, st: _State, cfg, zeta, on=None, renderer: Renderer = render_silhouettes,
              clock=no_clock, ground_cols=None):
    pose, code_n, log_scale = st.parts()
    terms = compute_energies(sdf, batch, st.obj, pose, code_n, log_scale, cfg, zeta, on, renderer, clock,
                             ground_cols)
    return terms, total_energy(terms, cfg)


def _best_per_object(energy: np.ndarray, obj: np.ndarray, n_obj: int, k: int,
                     yaw: np.ndarray | None = None, min_sep_deg: float = 90.0) -> np.ndarray:
    """Indices of the k lowest-energy hypotheses per object. With ``yaw``, diverse ones: after the
    best, each next one must differ by > ``min_sep_deg`` in heading from those kept (so the front/back
    flip of the best stays in the race instead of a near-copy of it), falling back to energy order."""
    keep = []
    for i in range(n_obj):
        idx = np.flatnonzero(obj == i)
        order = idx[np.argsort(energy[idx], kind='stable')]
        if yaw is None:
            keep.extend(order[:k].tolist())
            continue
        sel = [order[0]]
        for j in order[1:]:
            if len(sel) >= k:
                break
            d = np.abs((yaw[j] - yaw[sel] + np.pi) % (2 * np.pi) - np.pi)
            if np.all(d > np.radians(min_sep_deg)):
                sel.append(j)
        sel += [j for j in order if j not in sel][:k - len(sel)]
        keep.extend(sel)
    return np.array(sorted(keep), dtype=np.int64)


def twin_rows(energy: np.ndarray, obj: np.ndarray, yaw: np.ndarray, keep: np.ndarray,
              near_deg: float = 45.0) -> np.ndarray:
    """Rows (of ``keep``'s state, i.e. indices into ``keep``) of each object's best kept hypothesis whose
    front/back twin (heading + 180 deg) no other kept hypothesis of the object lies within ``near_deg``
    of. Behind a nearer car the 30 cheap steps can leave the best and a sideways pose as the two
    lowest-energy diverse ones, and then the truth (the best's flip) is gone before the heading cues
    could weigh it."""
    out = []
    ko, ky, ke = obj[keep], yaw[keep], energy[keep]
    for i in np.unique(ko):
        rows = np.flatnonzero(ko == i)
        b = rows[np.argmin(ke[rows])]
        others = rows[rows != b]
        d = np.abs((ky[others] - ky[b]) % (2 * np.pi) - np.pi)       # distance from the best's twin
        if not np.any(d < np.radians(near_deg)):
            out.append(int(b))
    return np.array(out, dtype=np.int64)


def optimize(sdf, batch: FitBatch, init_xyz: np.ndarray, init_yaw: np.ndarray, obj: np.ndarray, cfg,
             device, renderer: Renderer = render_silhouettes, clock=no_clock,
             coarse: FitBatch | None = None, prune_bias: np.ndarray | None = None,
             prune_score=None) -> list[ObjectFit]:
    """Fit B = len(obj) hypotheses (initial centres (B, 3), headings (B,), object index (B,)) and return
    the best one per object (objects 0..N-1), its surviving rivals in ``alternatives``. Runs with the
    process' torch threads (set once by the entry point, see ``fit.threads``); ``clock`` (a
    :class:`autolabel_ros.core.stage_clock.StageClock`) times the stages. ``coarse``: the batch at
    ``cfg.coarse_crop_size`` for the steps before the last ``cfg.fine_steps`` (None: the full one
    throughout). ``prune_bias`` (B,): energies added to the hypotheses' at the pruning only.
    ``prune_score``: None or a callable (obj (B',), poses (B', 4), sizes (B', 3) l, w, h) -> (B',) more
    energy added at the pruning only, read on the hypotheses where they stand then."""
    n_obj = int(batch.ray_d.shape[0])
    B = len(obj)
    f32 = dict(dtype=torch.float32, device=device)
    st = _State(torch.as_tensor(init_xyz, **f32), torch.as_tensor(init_yaw, **f32),
                torch.zeros(B, sdf.d, **f32), torch.zeros(B, 3, **f32) if cfg.log_scales else None,
                torch.as_tensor(obj, dtype=torch.long, device=device), torch.arange(B, device=device), cfg)
    n_it = int(cfg.iterations)
    hyp_energy0 = None
    coarse_cfg = dataclasses.replace(cfg, ray_samples=cfg.coarse_ray_samples or cfg.ray_samples)
    fine_from = max(n_it - cfg.fine_steps, 0)
    settle_from = max(cfg.prune_after, cfg.mask_from, fine_from if coarse is not None else 0)
    settled, hist = [], None      # hypotheses whose energy has settled, the energies of the last steps
    # fewer LiDAR points per object: the steps before the pruning (all headings, cheap terms) and the
    # coarse steps after it; kept per (batch, cap)
    prunes = cfg.keep_hypotheses < B and cfg.prune_after > 0
    thin = {}

    def lidar_view(b, it):
        cap = (cfg.prune_points if prunes and it < cfg.prune_after
               else cfg.coarse_points if it < fine_from else 0)
        if not cap:
            return b
        if (id(b), cap) not in thin:
            tb = batch.thinned(cap)
            thin[id(b), cap] = tb if b is batch else dataclasses.replace(b, pts=tb.pts, w=tb.w, fs=tb.fs)
        return thin[id(b), cap]

    use_cols = bool(cfg.ground_columns) and 'ground' in cfg.energies and batch.ground is not None
    gcols, cols_at = None, 0      # the ground term's search columns, the step they were found at
    for it in range(n_it):
        zeta = _zeta(cfg, it, n_it)
        frac = it / max(n_it - 1, 1)
        on = [t for t in cfg.energies if t != 'mask' or it >= cfg.mask_from]
        b_all, c = (coarse, coarse_cfg) if coarse is not None and it < fine_from else (batch, cfg)
        b = lidar_view(b_all, it)
        if use_cols and (gcols is None or it - cols_at >= cfg.ground_refresh):
            # the ground term's lowest column moves little between steps: search the columns near the
            # plane found by a full search every ground_refresh steps (the pruning and the final energy
            # search them all)
            with clock('fwd.ground'):
                p = st.p.detach()
                gcols = ground_columns(sdf, p[:, :4], p[:, 4:4 + st.d] * sdf.stdev,
                                       torch.exp(p[:, 4 + st.d:]) if st.has_scale else None,
                                       batch.ground_of(st.obj), cfg.ground_columns)
            cols_at = it
        terms, e = _energies(sdf, b, st, c, zeta, on, renderer, clock, gcols)
        with clock('backward' if 'mask' in on else 'backward.no_mask'):
            e.sum().backward()
        with clock('adam'):
            st.step(cfg.lr_final_frac ** frac)
        if cfg.settle_steps and it >= settle_from and it + 1 < n_it:
            # a hypothesis whose energy moved less than settle_tol over the last settle_steps steps is
            # done: it leaves the batch (its parameters kept), so the steps left cost less
            e_d = e.detach()[:, None]
            hist = e_d if hist is None else torch.cat([hist, e_d], 1)[:, -cfg.settle_steps:]
            if hist.shape[1] == cfg.settle_steps:
                done = (hist.max(1).values - hist.min(1).values) <= cfg.settle_tol
                if bool(done.any()):
                    settled.append(st.take(done))
                    settled[-1].stopped = it + 1
                    if bool(done.all()):
                        st = None
                        break
                    st, hist = st.take(~done), hist[~done]
                    gcols = None if gcols is None else gcols[~done]
        if it + 1 == cfg.prune_after and cfg.keep_hypotheses < B:
            with torch.no_grad(), clock('prune'):
                _, e = _energies(sdf, b_all, st, c, zeta, renderer=renderer)
            e_np = e.cpu().numpy()
            hyp_energy0 = e_np.copy()
            e_sel = e_np if prune_bias is None else e_np + prune_bias[st.hyp_id.cpu().numpy()]
            obj_np, yaw_np = st.obj.cpu().numpy(), st.yaw.detach().cpu().numpy()
            if prune_score is not None:
                pose, code_n, log_scale = (t.detach() if t is not None else None for t in st.parts())
                sizes = sdf.size_of(code_n * sdf.stdev)
                sizes = sizes * torch.exp(log_scale) if log_scale is not None else sizes
                e_sel = e_sel + prune_score(obj_np, pose.cpu().numpy(), sizes.cpu().numpy())
            keep = _best_per_object(e_sel, obj_np, n_obj, cfg.keep_hypotheses,
                                    yaw_np if cfg.prune_diverse else None)
            twin = np.zeros(len(keep), bool)
            if cfg.prune_twin and cfg.prune_diverse and cfg.keep_hypotheses > 1:
                rows = twin_rows(e_sel, obj_np, yaw_np, keep)
                keep = np.concatenate([keep, keep[rows]])
                twin = np.concatenate([twin, np.ones(len(rows), bool)])
                order = np.argsort(keep, kind='stable')      # object-major, each twin after its best
                keep, twin = keep[order], twin[order]
            st = st.subset(torch.as_tensor(keep, device=device), cfg)
            if twin.any():
                with torch.no_grad():      # a twin: its best's position, code and scales, turned round
                    st.p[torch.as_tensor(np.flatnonzero(twin), device=device), 3] += np.pi
            gcols = None
    if st is not None:
        st.stopped = n_it
    if settled:
        st = _State.joined(settled + ([st] if st is not None else []))
    stopped = st.stopped if isinstance(st.stopped, np.ndarray) else np.full(len(st.p), st.stopped)
    with torch.no_grad(), clock('final_energy'):
        terms, e = _energies(sdf, batch, st, cfg, _zeta(cfg, n_it - 1, n_it), renderer=renderer)
    e_np = e.cpu().numpy()
    if hyp_energy0 is None:
        hyp_energy0 = np.full(B, np.nan)
        hyp_energy0[st.hyp_id.cpu().numpy()] = e_np
    obj_np = st.obj.cpu().numpy()
    hyp_np = st.hyp_id.cpu().numpy()
    best = _best_per_object(e_np, obj_np, n_obj, 1)
    out: list[ObjectFit] = []
    xyz = st.xyz.detach().cpu().numpy()
    yaw = st.yaw.detach().cpu().numpy()
    code = (st.code_n.detach() * sdf.stdev).cpu().numpy()
    scl = (torch.exp(st.log_scale.detach()).cpu().numpy() if st.log_scale is not None
           else np.ones((len(e_np), 3)))
    final_by_hyp = {int(h): float(v) for h, v in zip(hyp_np, e_np)}
    for i, b in enumerate(best):
        assert obj_np[b] == i
        idx0 = np.flatnonzero(obj == i)
        hyps = [{'yaw0': float(init_yaw[j]), 'energy_pruning': float(hyp_energy0[j]),
                 'energy_final': final_by_hyp.get(int(j))} for j in idx0]
        alts = []
        for r in sorted(np.flatnonzero(obj_np == i), key=lambda r: e_np[r]):
            alts.append(ObjectFit(pose=np.concatenate([xyz[r], [yaw[r]]]), code=code[r], scales=scl[r],
                                  energy=float(e_np[r]), terms={k: float(v[r]) for k, v in terms.items()},
                                  hyp_energies=hyps, hyp_index=int(hyp_np[r] - idx0[0]),
                                  steps=int(stopped[r])))
        best_fit = alts[0]
        best_fit.alternatives = alts
        out.append(best_fit)
    return out
