"""The MobileSAM-embedding CSS head (benchmarks/embed_head.py) against the RGB U-Net (css/model.py).

    python benchmarks/css_embed_head.py --out DIR [--frames 150] [--heldout 30] [--steps 1500]
        [--camera-scale 0.5] [--sets kitti,sim64,apollo64] [--max-frames 0]

1. data: simulator frames (procedural cars, seeds of their own), each image jittered photometrically
   as a whole (gain, colour cast, gamma, blur, noise: the embedding cannot be augmented afterwards),
   embedded once by MobileSAM; per visible car the RoI features of its patch window, the mask grid,
   the 8 x 8 NOCS target, proportions and facing; also the 64 px patches, so the U-Net is scored on
   the very same held-out cars. Cached in DIR/chunks (resumable).
2. train the head (Adam, L1 on the NOCS cells of the mask + L1 on the proportions);
3. front/back accuracy and NOCS error on the held-out simulator cars for both networks; then
   benchmarks/css_cue.py's per-set cue flips and Procrustes for both (SAM masks of the benchmark
   cache) on the KITTI development frames and the simulated sets (the head's time per object there
   includes the frame's embedding, which the pipeline has already computed for SAM).
Writes DIR/head.pt and DIR/report.json (nothing into the repo).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED_BASE = 5_700_000           # simulator seeds of this experiment (disjoint from the CSS data's)


def jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    x = x * rng.uniform(0.6, 1.4) * rng.uniform(0.88, 1.12, 3)
    x = np.clip(x, 0, 1) ** rng.uniform(0.7, 1.5)
    if rng.uniform() < 0.5:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.3))
    x = x + rng.normal(0, rng.uniform(0, 0.03), x.shape)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def target_grid(nocs: np.ndarray, mask: np.ndarray, grid: int = 8):
    """64 x 64 NOCS patch + mask -> mask-weighted cell means on the grid, cell validity."""
    f = nocs.shape[0] // grid
    m = mask.astype(np.float32).reshape(grid, f, grid, f).mean(axis=(1, 3))
    n = (nocs.astype(np.float32) * mask[..., None]).reshape(grid, f, grid, f, 3).sum(axis=(1, 3))
    n = n / np.maximum(mask.astype(np.float32).reshape(grid, f, grid, f).sum(axis=(1, 3)), 1e-6)[..., None]
    return n, m


def make_chunks(seeds, out: Path, scale: float, seg, log=print, chunk: int = 10) -> list[Path]:
    import torch

    from autolabel_ros.core.npz_chunks import write_npz_chunks
    from autolabel_ros.sim.nocs import frame_image_samples
    from autolabel_ros.sim.sensors import Camera
    from benchmarks.embed_head import roi_features

    def build(part: list) -> dict:
        rec = {k: [] for k in ('feat', 'mgrid', 'tnocs', 'tvalid', 'dims', 'facing', 'rgb', 'mask', 'nocs')}
        for seed in part:
            rng = np.random.default_rng([seed, 7])
            image, samples = frame_image_samples(seed, 64, int(round(150 * scale ** 2)), Camera.kitti(scale))
            if not samples:
                continue
            image = jitter(image, rng)
            with torch.no_grad():
                seg._set_image(image)
                feats = roi_features(seg._features, image.shape[:2], np.stack([s.window for s in samples]))
            for s, f in zip(samples, feats.numpy()):
                n, m = target_grid(s.nocs, s.mask)
                rec['feat'].append(f.astype(np.float16))
                rec['mgrid'].append(m)
                rec['tnocs'].append(n)
                rec['tvalid'].append(m > 0.49)
                rec['dims'].append(s.dims)
                rec['facing'].append(s.facing)
                rec['rgb'].append(jitter_patch(image, s.window))
                rec['mask'].append(s.mask)
                rec['nocs'].append(s.nocs.astype(np.float16))
        return {k: np.stack(v) for k, v in rec.items()} if rec['feat'] else {}

    def name(part: list) -> str:
        return f'emb_{part[0]}_{len(part)}_s{scale:g}.npz'

    return write_npz_chunks(seeds, out, chunk, name, build, compress=False, unit='cars', log=log)


def jitter_patch(image, window):
    """The U-Net's patch of the same jittered image (so both networks see the same pixels)."""
    from autolabel_ros.core.nocs import cut_patch
    return cut_patch(image, window, 64)


def load(paths) -> dict:
    parts = [dict(np.load(p)) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def train_head(data: dict, steps: int, lr: float = 2e-3, batch: int = 64, seed: int = 0, log=print):
    import torch

    from benchmarks.embed_head import EmbedHead
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.from_numpy(data['feat']).float(),
                   torch.from_numpy(data['mgrid']).float()[:, None]], 1)
    tn = torch.from_numpy(data['tnocs']).float().permute(0, 3, 1, 2)
    tv = torch.from_numpy(data['tvalid']).float()[:, None]
    td = torch.from_numpy(data['dims']).float()
    net = EmbedHead()
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=gen)
        xb = torch.nn.functional.dropout(x[idx], 0.1)       # the embedding cannot be jittered: drop cells
        pn, pd = net(xb)
        ln = ((pn - tn[idx]).abs() * tv[idx]).sum() / (3 * tv[idx].sum().clamp(min=1))
        loss = ln + (pd - td[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            log(f'step {step:5d} loss {float(loss.detach()):.4f} nocs_l1 {float(ln.detach()):.4f} '
                f'{time.perf_counter() - t0:.0f} s')
    return net.eval()


def score_heldout(head, data: dict) -> dict:
    """Both networks on the same held-out simulator cars."""
    import torch

    from autolabel_ros.css.cue import facing_from_nocs
    from autolabel_ros.css.evaluate import evaluate_samples
    from autolabel_ros.css.predict import CssPredictor
    from autolabel_ros.css.train import to_tensors
    true = data['facing']
    ends = np.abs(true) > 0.3
    with torch.no_grad():
        x = torch.cat([torch.from_numpy(data['feat']).float(),
                       torch.from_numpy(data['mgrid']).float()[:, None]], 1)
        t0 = time.process_time()
        pn, _ = head(x)
        head_ms = 1000 * (time.process_time() - t0) / len(x)
    pn = pn.permute(0, 2, 3, 1).numpy()
    valid = data['tvalid']
    fh = np.array([facing_from_nocs(pn[i], valid[i]) for i in range(len(pn))])
    err = np.abs(pn - data['tnocs'])[valid]
    unet = evaluate_samples(CssPredictor().net, to_tensors({k: data[k] for k in
                                                            ('rgb', 'mask', 'nocs', 'dims', 'facing')}))
    return {'cars': int(len(true)), 'ends': int(ends.sum()),
            'head': {'frontback_acc': float(np.mean(np.sign(fh[ends]) == np.sign(true[ends]))),
                     'nocs_l1_8x8': float(err.mean()), 'forward_ms_per_object_cpu': head_ms},
            'unet': {'frontback_acc': unet['frontback_acc'], 'nocs_l1_32x32': unet['nocs_l1']}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--frames', type=int, default=150)
    ap.add_argument('--heldout', type=int, default=30)
    ap.add_argument('--steps', type=int, default=1500)
    ap.add_argument('--camera-scale', type=float, default=0.5)
    ap.add_argument('--sets', default='kitti,sim64,apollo64')
    ap.add_argument('--max-frames', type=int, default=0, help='frames per benchmark set (0 = all)')
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from benchmarks.embed_head import EmbedCssPredictor, save_head
    from autolabel_ros.segment.sam import SamSegmenter
    out = Path(a.out)
    seg = SamSegmenter('mobile_sam', device='cpu')
    train_p = make_chunks([SEED_BASE + k for k in range(a.frames)], out / 'chunks', a.camera_scale, seg)
    held_p = make_chunks([SEED_BASE + 100_000 + k for k in range(a.heldout)], out / 'chunks',
                         a.camera_scale, seg)
    head = train_head(load(train_p), a.steps)
    save_head(head, out / 'head.pt', {'frames': a.frames, 'steps': a.steps, 'camera_scale': a.camera_scale})
    report = {'settings': vars(a), 'heldout_sim': score_heldout(head, load(held_p))}
    print('held-out sim', json.dumps(report['heldout_sim']))
    from benchmarks.css_cue import SETS, evaluate_set
    from autolabel_ros.css.predict import CssPredictor
    preds = {'head': EmbedCssPredictor(out / 'head.pt', seg), 'unet': CssPredictor()}
    for name in a.sets.split(','):
        if (SETS[name] / 'label_2').is_dir():
            for which, pred in preds.items():
                r = evaluate_set(name, SETS[name], pred, a.max_frames)
                report[f'{name}/{which}'] = {k: v for k, v in r.items() if k != 'cars'}
                print(name, which, json.dumps(report[f'{name}/{which}']))
    (out / 'report.json').write_text(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
