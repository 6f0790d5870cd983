"""The hidden_shape front/back cue (fit/heading.py hidden_gate): the fit's shape term counted again for
cars that nearer objects mostly hide, ramped in by the occluded share of the 2D box."""
import numpy as np
import pytest

from autolabel_ros.fit import heading

# a simulator frame with a car (id 9, 40 m, 30 scan points) ~84 % behind a nearer one (id 5)
SEED, HIDDEN_ID, NEAR_ID = 100011, 9, 5


def test_hidden_gate_ramps_in_with_the_occluded_share():
    lo, hi = heading.HIDDEN_FROM, heading.HIDDEN_FULL
    assert heading.hidden_gate(0.0) == 0.0 and heading.hidden_gate(lo) == 0.0
    assert heading.hidden_gate((lo + hi) / 2) == pytest.approx(0.5)
    assert heading.hidden_gate(hi) == 1.0 and heading.hidden_gate(1.0) == 1.0


def test_hidden_car_leans_on_the_prior_a_seen_one_does_not():
    """A flip pair whose flip has the lower energy but the far-out (mirrored) shape code: seen, the
    energy decides; mostly hidden, the shape term takes the choice back."""
    from autolabel_ros.fit.optimize import ObjectFit
    w = {'hidden_shape': 0.2}
    for occluded, true_wins in ((0.1, False), (0.9, True)):
        true = ObjectFit(pose=np.array([20.0, 0, -1, 0.0]), code=np.zeros(5), scales=np.ones(3),
                         energy=0.120, terms={'mask_iou_hi': 0.8, 'shape': 0.2})
        flip = ObjectFit(pose=np.array([20.0, 0, -1, np.pi]), code=np.zeros(5), scales=np.ones(3),
                         energy=0.100, terms={'mask_iou_hi': 0.8, 'shape': 0.4})
        for a in (true, flip):
            a.terms['cue_hidden_shape'] = heading.hidden_gate(occluded) * a.terms['shape']
        flip.alternatives = [flip, true]
        out = heading.choose([flip], ['hidden_shape'], w, 0.0)[0]
        assert (out is true) == true_wins


def test_fitter_sets_the_cue_from_the_occluded_share():
    """Through the pipeline on a simulator frame: a car behind a nearer one gets gate x shape term in
    every hypothesis, the nearer (unhidden) car 0."""
    from autolabel_ros.config import from_dict
    from autolabel_ros.core.device import torch_threads
    from autolabel_ros.core.types import Prompt
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.sim.drive import simulate_frame
    sf = simulate_frame(SEED)
    hidden = next(g for g in sf.gt if g.id == HIDDEN_ID)
    near = next(g for g in sf.gt if g.id == NEAR_ID)
    prompts = [Prompt(id=g.id, box=g.box2d, sources=('gt',)) for g in (near, hidden)]
    al = Autolabeler(from_dict({'device': 'cpu'}))
    with torch_threads(1):
        res = al.label(sf.frame, prompts, [sf.masks == g.id for g in (near, hidden)])
    by_id = {lab.id: lab for lab in res.labels}
    occ = {k: by_id[k].metrics['occluded_share'] for k in by_id}
    assert occ[NEAR_ID] < heading.HIDDEN_FROM < heading.HIDDEN_FULL < occ[HIDDEN_ID]
    for k, lab in by_id.items():
        for a in lab.metrics['alternatives']:
            assert a['cue_hidden_shape'] == pytest.approx(heading.hidden_gate(occ[k]) * a['cue_shape_code'])
    assert all(a['cue_hidden_shape'] == 0.0 for a in by_id[NEAR_ID].metrics['alternatives'])
    hidden_alts = by_id[HIDDEN_ID].metrics['alternatives']
    assert len(hidden_alts) >= 2 and any(a['cue_hidden_shape'] > 0.0 for a in hidden_alts)
