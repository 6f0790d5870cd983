"""Procedural, parametric car meshes (sedan, hatchback, wagon, coupe, SUV, van, pickup).

Construction (no boolean engine needed):
- the **body** is a loft: a side profile (roof line ``z_top(x)`` with hood, windshield, roof, rear
  window / hatch / bed, and floor line ``z_bot(x)`` with bumpers and semicircular wheel-arch
  notches) sampled at stations along x; each station's cross-section is a closed ring with a
  fixed vertex count (flat floor, rounded sills, vertical doors up to the beltline, a greenhouse
  that narrows towards the roof (tumblehome), a slightly crowned roof). Consecutive rings are
  joined by quads and the two end rings are closed by concentric rings and a fan, so the body is
  one closed, consistently oriented 2-manifold. Plan-view corners are rounded by narrowing the
  first/last stations.
- the four **wheels** are closed solids of revolution (tyre + recessed rim) placed inside the
  arch notches; they do not touch the body.
- two dark **wheel-well** prisms span between each wheel pair inside the arches (so an arch shows
  a dark well, not a see-through hole).
The result is a union of disjoint watertight components (body + 4 wheels + 2 wells): inside/outside is
well defined everywhere (winding number 1 inside exactly one component), which is all the SDF
prior and the ray caster need.

Canonical frame: x forward (front bumper at +x), y left, z up, metres, origin at the centre of
the axis-aligned bounding box, whose extents are (length, width, height) = the car's 3D box
(wheels touch the box bottom, the roof its top, the body sides its +-y faces).

Per-face part labels (``mesh.metadata['face_part']``, names in :data:`PART_NAMES`) let a renderer
paint body, glass, tyres, rims, lights and black trim differently.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import trimesh

BODY_TYPES = ('sedan', 'hatchback', 'wagon', 'coupe', 'suv', 'van', 'pickup')
PART_NAMES = ('paint', 'glass', 'tyre', 'rim', 'headlight', 'taillight', 'trim')
PART_IDS = {n: i for i, n in enumerate(PART_NAMES)}

# How often each body type is drawn when none is asked for: a European passenger-car fleet, where
# compact hatchbacks lead and pickups are rare (mean length ~4.4 m before DEFAULT_SIZE_SCALE). This
# mix sets the default shape prior's mean car, so a US-style mix (many pickups and SUVs) biases every
# under-observed fit long.
_TYPE_WEIGHTS = {'sedan': 0.22, 'hatchback': 0.35, 'wagon': 0.15, 'coupe': 0.05, 'suv': 0.15,
                 'van': 0.05, 'pickup': 0.03}

# The ranges below are manufacturer dimensions (fleet mean ~4.41 x 1.78 x 1.54 m). Labelled boxes are
# smaller: the mean KITTI Car box is 3.88 x 1.63 x 1.53 m (l x w x h; the per-class mean size used by
# Frustum PointNets and the anchor sizes of KITTI detectors), partly older and smaller cars, partly
# boxes drawn tight to the LiDAR returns of the body (no mirrors, rounded bumper ends). The prior's
# mean car sets the length of every car whose length the data cannot see (end-on cars), so by
# default sizes and overhangs are scaled to that box convention; ``size_scale=(1, 1, 1)`` gives
# manufacturer sizes (e.g. ``autolabel-build-prior --procedural 150 --size-scale 1,1,1``).
DEFAULT_SIZE_SCALE = (0.89, 0.93, 0.99)

# Per type: ranges (lo, hi) of the overall size, ground clearance, wheel radius and the top-profile
# segment fractions of the length: hood, windshield, roof, rear glass (or cab back), deck/bed.
_RANGES = {
    'sedan': dict(L=(4.2, 5.1), W=(1.70, 1.90), H=(1.38, 1.52), clear=(0.12, 0.17), rw=(0.29, 0.335),
                  seg=((.22, .27), (.15, .19), (.24, .30), (.12, .16), (.15, .20)), belt=(.62, .68),
                  roof=(.72, .80)),
    'hatchback': dict(L=(3.4, 4.4), W=(1.55, 1.80), H=(1.40, 1.58), clear=(0.12, 0.17),
                      rw=(0.27, 0.32), seg=((.19, .25), (.16, .20), (.38, .46), (.09, .13), (.02, .05)),
                      belt=(.58, .64), roof=(.74, .82)),
    'wagon': dict(L=(4.4, 5.0), W=(1.72, 1.90), H=(1.42, 1.56), clear=(0.12, 0.17), rw=(0.30, 0.335),
                  seg=((.21, .25), (.14, .17), (.48, .54), (.06, .09), (.02, .04)), belt=(.60, .66),
                  roof=(.76, .83)),
    'coupe': dict(L=(4.0, 4.8), W=(1.75, 1.95), H=(1.25, 1.40), clear=(0.10, 0.14), rw=(0.30, 0.34),
                  seg=((.27, .33), (.16, .20), (.14, .20), (.22, .28), (.08, .13)), belt=(.62, .68),
                  roof=(.68, .76)),
    'suv': dict(L=(4.2, 5.1), W=(1.80, 2.00), H=(1.60, 1.85), clear=(0.18, 0.24), rw=(0.34, 0.39),
                seg=((.20, .25), (.12, .15), (.48, .56), (.06, .09), (.02, .04)), belt=(.58, .64),
                roof=(.80, .88)),
    'van': dict(L=(4.5, 5.6), W=(1.85, 2.05), H=(1.85, 2.10), clear=(0.14, 0.19), rw=(0.31, 0.35),
                seg=((.08, .13), (.12, .16), (.66, .74), (.03, .05), (.01, .03)), belt=(.48, .54),
                roof=(.86, .92)),
    'pickup': dict(L=(5.0, 5.6), W=(1.80, 2.05), H=(1.75, 1.95), clear=(0.20, 0.26), rw=(0.36, 0.40),
                   seg=((.21, .25), (.10, .13), (.17, .21), (.015, .03), (.40, .46)), belt=(.56, .62),
                   roof=(.84, .90)),
}


@dataclass
class CarParams:
    """All numbers that define one car (metres unless stated). See :func:`random_car_params`."""

    body_type: str
    length: float
    width: float
    height: float
    clearance: float            # floor height above ground between the axles
    wheel_radius: float
    wheel_width: float
    front_overhang: float       # front bumper to front axle
    rear_overhang: float        # rear axle to rear bumper
    arch_gap: float             # arch radius minus wheel radius
    segments: tuple             # hood, windshield, roof, rear glass, deck: fractions of the length
    belt: float                 # beltline height (fraction of height)
    hood_drop: float            # hood front lower than beltline by this much
    deck_rise: float            # trunk / bed rail above the beltline by this much (may be < 0)
    roof_ratio: float           # roof half-width / body half-width (tumblehome)
    crown: float                # roof crown height
    nose_round: float           # length over which the nose rounds off
    corner_front: float         # plan-view corner radius, front
    corner_rear: float          # plan-view corner radius, rear
    bumper_lift_front: float    # front bumper bottom above the floor
    bumper_lift_rear: float
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def random_car_params(seed: int, body_type: str | None = None,
                      size_scale: tuple = DEFAULT_SIZE_SCALE) -> CarParams:
    """Random, realistic car parameters, deterministic by ``seed`` (and ``body_type`` if given);
    ``size_scale`` (l, w, h) multiplies the manufacturer-size ranges (see DEFAULT_SIZE_SCALE)."""
    rng = np.random.default_rng([int(seed), 0xCA7])
    if body_type is None:
        names = list(_TYPE_WEIGHTS)
        p = np.array([_TYPE_WEIGHTS[n] for n in names])
        body_type = names[int(rng.choice(len(names), p=p / p.sum()))]
    if body_type not in _RANGES:
        raise ValueError(f'unknown body_type {body_type!r}; expected one of {BODY_TYPES}')
    r = _RANGES[body_type]

    def u(lo_hi):
        return float(rng.uniform(*lo_hi))

    sl, sw, sh = (float(v) for v in size_scale)
    L, W, H = u(r['L']) * sl, u(r['W']) * sw, u(r['H']) * sh
    rw = u(r['rw'])
    seg = np.array([u(s) for s in r['seg']])
    seg = tuple((seg / seg.sum()).tolist())
    fo = rw + u((0.45, 0.65)) * (1.0 if body_type != 'van' else 0.8) * sl
    ro = rw + u((0.45, 0.75)) * sl
    if body_type in ('hatchback',):
        ro = rw + u((0.30, 0.45)) * sl
    if body_type == 'pickup':
        ro = rw + u((0.75, 1.0)) * sl
    big = body_type in ('suv', 'van', 'pickup')
    gap = u((0.03, 0.07))
    belt = u(r['belt'])
    hood_drop = u((0.02, 0.10)) if not big else u((0.0, 0.06))
    # the hood must clear the wheel arches (arch top = 2 r + gap) by a realistic margin
    belt = max(belt, (2 * rw + gap + u((0.16, 0.24)) + hood_drop) / H)
    return CarParams(
        body_type=body_type, length=L, width=W, height=H, clearance=u(r['clear']), wheel_radius=rw,
        wheel_width=u((0.19, 0.26)), front_overhang=fo, rear_overhang=ro, arch_gap=gap,
        segments=seg, belt=belt, hood_drop=hood_drop,
        deck_rise=u((0.0, 0.08)) if body_type in ('sedan', 'coupe') else u((-0.04, 0.03)),
        roof_ratio=u(r['roof']), crown=u((0.01, 0.04)), nose_round=u((0.12, 0.30)),
        corner_front=u((0.25, 0.45)) if body_type != 'van' else u((0.15, 0.3)),
        corner_rear=u((0.12, 0.30)), bumper_lift_front=u((0.12, 0.25)), bumper_lift_rear=u((0.12, 0.22)),
        seed=int(seed))


# ---------------------------------------------------------------------------- profiles
def _chaikin(pts: np.ndarray, iters: int = 2) -> np.ndarray:
    """Corner-cutting smoothing of an open polyline, endpoints kept (rounds the side profile)."""
    for _ in range(iters):
        q = 0.75 * pts[:-1] + 0.25 * pts[1:]
        r = 0.25 * pts[:-1] + 0.75 * pts[1:]
        inner = np.empty((2 * len(q), 2))
        inner[0::2], inner[1::2] = q, r
        pts = np.vstack([pts[:1], inner[1:-1], pts[-1:]])
    return pts


def _profiles(p: CarParams):
    """Top and bottom profile polylines as functions of d = distance back from the front bumper,
    ground at z = 0. Returns (top(d), bottom(d), belt height, roof start/end d, glass spans)."""
    L, H = p.length, p.height
    roof_h = H - p.crown
    belt = p.belt * H
    hood_rear = belt + 0.01
    hood_front = belt - p.hood_drop
    deck = belt + p.deck_rise
    seg = np.cumsum((0.0,) + tuple(p.segments)) * L
    d_ws, d_rf, d_rr, d_rw = seg[1], seg[2], seg[3], seg[4]
    nose = min(p.nose_round, 0.5 * d_ws)
    top = [(0.0, hood_front - 0.16), (nose * 0.5, hood_front - 0.04), (nose, hood_front),
           (d_ws, hood_rear), (d_rf, roof_h), (d_rr, roof_h)]
    t = p.body_type
    if t in ('sedan', 'coupe'):
        top += [(d_rw, deck), (L - 0.08, deck - 0.01), (L, deck - 0.12)]
    elif t == 'pickup':
        top += [(d_rw, deck), (d_rw + 0.02, deck), (L - 0.03, deck), (L, deck - 0.05)]
    else:   # hatch / wagon / suv / van: steep hatch, glass down to about the beltline
        tail = belt + 0.02
        top += [(d_rw, tail), (L - 0.02, tail - 0.10), (L, tail - 0.25)]
    top = _chaikin(np.array(top), 2 if t != 'pickup' else 1)
    bot = np.array([(0.0, p.clearance + p.bumper_lift_front), (0.35, p.clearance + 0.03),
                    (0.6, p.clearance), (L - 0.6, p.clearance), (L - 0.3, p.clearance + 0.03),
                    (L, p.clearance + p.bumper_lift_rear)])
    bot = _chaikin(bot, 2)

    axles = (p.front_overhang, L - p.rear_overhang)
    r_arch = p.wheel_radius + p.arch_gap

    def top_f(d):
        return np.interp(d, top[:, 0], top[:, 1])

    def bot_f(d):
        z = np.interp(d, bot[:, 0], bot[:, 1])
        for a in axles:
            inside = np.abs(d - a) < r_arch
            arc = p.wheel_radius + np.sqrt(np.clip(r_arch ** 2 - (d - a) ** 2, 0, None))
            z = np.where(inside, np.maximum(z, arc), z)
        return np.minimum(z, top_f(d) - 0.15)   # never thinner than 15 cm

    glass = dict(ws=(d_ws + 0.04, d_rf), side=(d_ws + 0.12, d_rr + (0.0 if t in ('pickup',) else 0.1)),
                 rear=(d_rr, d_rw), belt=belt, roof=(d_rf, d_rr))
    return top_f, bot_f, belt, axles, glass


# ---------------------------------------------------------------------------- body loft
_N_SIDE = 12    # ring vertices per side between floor centre and roof centre (exclusive)


def _ring(z_bot, z_top, hw, hw_top, belt, crown_w):
    """(y, z) of one closed cross-section ring (counter-clockwise seen from +x): floor centre,
    right side bottom->top, roof centre, left side top->bottom."""
    fb = min(0.06, 0.25 * (z_top - z_bot))      # sill fillet
    ft = min(0.07, 0.25 * (z_top - z_bot))      # roof edge fillet
    z0, z3 = z_bot + fb, z_top - ft
    zm = min(belt, z0 + 0.75 * (z3 - z0))       # top of the vertical door panel
    hw_b = hw * (0.985 if zm >= belt - 1e-6 else 1.0)
    right = [(hw - fb * 0.8, z_bot), (hw - 0.2 * fb, z_bot + 0.4 * fb), (hw, z0)]
    for s, k in ((1 / 3, 1.0), (2 / 3, 0.997), (1.0, 0.99)):   # door panel, leaning in slightly
        right.append((k * hw, z0 + s * (zm - z0)))
    for s in (0.2, 0.45, 0.7, 1.0):             # greenhouse, tumblehome to the roof
        y = hw_b + (hw_top - hw_b) * s + 0.02 * np.sin(np.pi * s) * (hw_b - hw_top)
        right.append((y, zm + s * (z3 - zm)))
    right += [(hw_top - 0.5 * ft, z_top - 0.15 * ft)]
    right += [(hw_top - ft, z_top)]
    right = np.array(right)                      # _N_SIDE points
    right[:, 0] *= -1                            # right side is -y
    crown_c = (0.0, z_top + crown_w)
    left = right[::-1].copy()
    left[:, 0] *= -1
    return np.vstack([[(0.0, z_bot)], right, [crown_c], left])


def _plan_halfwidth(d, L, W, cf, cr):
    hw = np.full_like(d, W / 2)
    f = d < cf
    hw[f] -= cf - np.sqrt(np.clip(cf ** 2 - (cf - d[f]) ** 2, 0, None))
    r = d > L - cr
    hw[r] -= cr - np.sqrt(np.clip(cr ** 2 - (d[r] - (L - cr)) ** 2, 0, None))
    return np.maximum(hw, 0.62 * W / 2)


def _cap(verts_ring: np.ndarray, ring_start: int, start: int, reverse: bool):
    """Close an end ring (already stored at ``ring_start``) with two concentric rings and a fan;
    the new vertices go at ``start``. Returns (new verts, faces)."""
    n = len(verts_ring)
    c = verts_ring.mean(axis=0)
    rings = [c + 0.66 * (verts_ring - c), c + 0.33 * (verts_ring - c)]
    new_v = np.vstack(rings + [c[None]])
    idx = [np.arange(n) + ring_start] + [start + k * n + np.arange(n) for k in range(2)]
    center = start + 2 * n
    faces = []
    for a, b in zip(idx[:-1], idx[1:]):
        for i in range(n):
            j = (i + 1) % n
            faces += [(a[i], a[j], b[j]), (a[i], b[j], b[i])]
    last = idx[-1]
    for i in range(n):
        faces.append((last[i], last[(i + 1) % n], center))
    faces = np.array(faces)
    if reverse:
        faces = faces[:, ::-1]
    return new_v, faces


def _body(p: CarParams):
    top_f, bot_f, belt, axles, glass = _profiles(p)
    L, W, H = p.length, p.width, p.height
    n_st = max(60, int(L / 0.04))
    d = np.linspace(0.0, L, n_st)
    # extra stations hug the arch edges so the notches are crisp
    r_arch = p.wheel_radius + p.arch_gap
    extra = np.concatenate([a + r_arch * np.cos(np.linspace(0, np.pi, 15)) for a in axles])
    # ... and the window edges, so glass boundaries follow station lines
    lo, hi = glass['side']
    pillar = lo + 0.48 * (hi - lo)
    edges = [glass['ws'][0], glass['ws'][1], lo, hi, pillar - 0.05, pillar + 0.05, glass['rear'][0] + 0.03,
             glass['rear'][1] - 0.02]
    d = np.unique(np.round(np.clip(np.concatenate([d, extra, edges]), 0.0, L), 6))
    zt, zb = top_f(d), bot_f(d)
    hw = _plan_halfwidth(d, L, W, p.corner_front, p.corner_rear)
    roof_h = H - p.crown
    tt = np.clip((zt - belt) / max(roof_h - belt, 1e-3), 0.0, 1.0)
    hw_top = hw * (0.95 * (1 - tt) + p.roof_ratio * tt)
    rings = []
    for i in range(len(d)):
        ring = _ring(zb[i], zt[i], hw[i], hw_top[i], belt, p.crown * tt[i] ** 2)
        x = np.full(len(ring), L / 2 - d[i])
        rings.append(np.column_stack([x, ring[:, 0], ring[:, 1]]))
    n = len(rings[0])
    verts = np.vstack(rings)
    # loft quads (station k, ring slot i) -> two triangles; remember each face's band i and station
    k, i = np.meshgrid(np.arange(len(d) - 1), np.arange(n), indexing='ij')
    k, i = k.ravel(), i.ravel()
    a, b, j = k * n, (k + 1) * n, (i + 1) % n
    faces = np.stack([np.stack([a + i, b + i, b + j], 1), np.stack([a + i, b + j, a + j], 1)], 1)
    faces = faces.reshape(-1, 3)
    band = np.repeat(i, 2)
    d_mid = np.repeat((d[k] + d[k + 1]) / 2, 2)
    top_mid = np.repeat((zt[k] + zt[k + 1]) / 2, 2)
    fv, ff = _cap(rings[0], 0, len(verts), reverse=False)
    verts = np.vstack([verts, fv])
    faces = np.vstack([faces, ff])
    rv, rf = _cap(rings[-1], (len(d) - 1) * n, len(verts), reverse=True)
    verts = np.vstack([verts, rv])
    faces = np.vstack([faces, rf])
    if trimesh.Trimesh(verts, faces, process=False).volume < 0:   # outward normals
        faces = faces[:, ::-1].copy()
    n_cap = len(faces) - len(band)
    loft = dict(band=np.concatenate([band, np.full(n_cap, -1)]),
                d=np.concatenate([d_mid, np.full(n_cap, np.nan)]),
                top=np.concatenate([top_mid, np.full(n_cap, np.nan)]))
    return verts, faces, belt, axles, glass, loft


def _wheel(p: CarParams):
    """Tyre + recessed rim as one closed solid of revolution about the y axis, centred at 0."""
    r, tw = p.wheel_radius, p.wheel_width
    rim = 0.62 * r
    prof = np.array([(0.0, -0.42 * tw), (rim, -0.42 * tw), (rim * 1.04, -0.5 * tw),
                     (r * 0.93, -0.5 * tw), (r, -0.4 * tw), (r, 0.4 * tw), (r * 0.93, 0.5 * tw),
                     (rim * 1.04, 0.5 * tw), (rim, 0.42 * tw), (0.0, 0.42 * tw)])
    m = trimesh.creation.revolve(prof, sections=28)
    m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))  # z axis -> y
    radial = np.linalg.norm(m.triangles_center[:, [0, 2]], axis=1)
    part = np.where(radial < rim * 1.02, PART_IDS['rim'], PART_IDS['tyre'])
    return m.vertices, m.faces, part


def _well(p: CarParams, y_half: float):
    """Dark wheel-well block between a pair of wheels (a prism across y): fills the arch notch
    above the axle (radius just inside the arch) and the space between the tyres below it, so
    the arch shows a dark well instead of a see-through hole. Centred on the axle."""
    r_up, r_lo = p.wheel_radius + p.arch_gap - 0.015, 0.9 * p.wheel_radius
    th = np.linspace(0.0, np.pi, 17)
    upper = np.column_stack([r_up * np.cos(th), r_up * np.sin(th)])
    lower = np.column_stack([r_lo * np.cos(th + np.pi), r_lo * np.sin(th + np.pi)])
    poly = np.vstack([upper, lower])                       # star-shaped about the axle
    n = len(poly)
    ring0 = np.column_stack([poly[:, 0], np.full(n, -y_half), poly[:, 1]])
    ring1 = ring0 * [1, -1, 1]
    v = np.vstack([ring0, ring1, [[0, -y_half, 0]], [[0, y_half, 0]]])
    f = []
    for i in range(n):
        j = (i + 1) % n
        f += [(i, j, n + j), (i, n + j, n + i), (2 * n, j, i), (2 * n + 1, n + i, n + j)]
    f = np.array(f)
    if trimesh.Trimesh(v, f, process=False).volume < 0:
        f = f[:, ::-1].copy()
    return v, f


# Loft bands (quads between consecutive ring slots, see _ring): the greenhouse sides and the roof.
_GREENHOUSE_BANDS = (6, 7, 8, 9, 16, 17, 18, 19)
_ROOF_GLASS_BANDS = (11, 12, 13, 14)     # bands 10 and 15 (roof-edge fillets) stay paint: the pillars


def _body_parts(p: CarParams, verts, faces, belt, glass, loft):
    """Face labels. Glass comes from the loft structure (band across the section, station along
    the car), so window edges follow mesh lines; lights and trim from position and normal."""
    tri = verts[faces]
    c = tri.mean(axis=1)
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    d = p.length / 2 - c[:, 0]
    z = c[:, 2]
    part = np.full(len(faces), PART_IDS['paint'])
    band, ds = loft['band'], loft['d']
    with np.errstate(invalid='ignore'):
        tall = loft['top'] > belt + 0.15               # stations with a real greenhouse
        lo, hi = glass['side']
        pillar = lo + 0.48 * (hi - lo)
        side = np.isin(band, _GREENHOUSE_BANDS) & tall & (ds > lo) & (ds < hi) & (np.abs(ds - pillar) > 0.05)
        top = np.isin(band, _ROOF_GLASS_BANDS) & tall
        ws = top & (ds > glass['ws'][0]) & (ds < glass['ws'][1])
        rear = top & (ds > glass['rear'][0] + 0.03) & (ds < glass['rear'][1] - 0.02)
    part[side | ws | rear] = PART_IDS['glass']
    hood_front = belt - p.hood_drop
    face_fwd, face_back = nrm[:, 0] > 0.5, nrm[:, 0] < -0.5
    light_band = (z > hood_front - 0.22) & (z < hood_front - 0.04)
    outer = np.abs(c[:, 1]) > 0.28 * p.width
    part[face_fwd & light_band & outer & (d < 0.4)] = PART_IDS['headlight']
    tail_top = belt + (p.deck_rise if p.body_type in ('sedan', 'coupe', 'pickup') else 0.0)
    tl_band = (z > tail_top - 0.25) & (z < tail_top - 0.03)
    part[face_back & tl_band & outer & (d > p.length - 0.4)] = PART_IDS['taillight']
    bumper = (z < p.clearance + max(p.bumper_lift_front, p.bumper_lift_rear) + 0.08) & \
        ((d < 0.45) | (d > p.length - 0.45)) & (np.abs(nrm[:, 2]) < 0.7)
    part[bumper & (part == PART_IDS['paint'])] = PART_IDS['trim']
    floor = nrm[:, 2] < -0.7
    part[floor] = PART_IDS['trim']
    return part


def make_car_mesh(params: CarParams | dict) -> trimesh.Trimesh:
    """Watertight car mesh (body + 4 wheels, disjoint closed components) in the canonical frame,
    with ``metadata['face_part']`` (index into :data:`PART_NAMES`) and ``metadata['params']``."""
    p = CarParams(**params) if isinstance(params, dict) else params
    bv, bf, belt, axles, glass, loft = _body(p)
    parts = [_body_parts(p, bv, bf, belt, glass, loft)]
    verts, faces = [bv], [bf]
    nv = len(bv)
    wv, wf, wp = _wheel(p)
    y_w = p.width / 2 - 0.035 - p.wheel_width / 2
    for a in axles:
        for side in (1, -1):
            verts.append(wv + np.array([p.length / 2 - a, side * y_w, p.wheel_radius]))
            faces.append(wf + nv)
            parts.append(wp)
            nv += len(wv)
        kv, kf = _well(p, y_w - p.wheel_width / 2 - 0.01)
        verts.append(kv + np.array([p.length / 2 - a, 0.0, p.wheel_radius]))
        faces.append(kf + nv)
        parts.append(np.full(len(kf), PART_IDS['trim']))
        nv += len(kv)
    v = np.vstack(verts)
    f = np.vstack(faces)
    mesh = trimesh.Trimesh(v, f, process=False)
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.metadata['face_part'] = np.concatenate(parts).astype(np.int8)
    mesh.metadata['params'] = p.to_dict()
    return mesh


def car_collection(seeds, size_scale: tuple = DEFAULT_SIZE_SCALE) -> list[trimesh.Trimesh]:
    """One random car per seed (seeds 0..9999 are for priors, the simulator uses >= 100000)."""
    return [make_car_mesh(random_car_params(int(s), size_scale=size_scale)) for s in seeds]


def face_parts(mesh: trimesh.Trimesh) -> np.ndarray:
    """Per-face part ids of a car from :func:`make_car_mesh` (all 'paint' when unknown)."""
    fp = mesh.metadata.get('face_part') if mesh.metadata else None
    if fp is None or len(fp) != len(mesh.faces):
        return np.zeros(len(mesh.faces), dtype=np.int8)
    return np.asarray(fp)
