"""method hybrid's CSS vote on hidden cars (css.hidden_vote): the network's front/back cue, which only
breaks ties for hybrid, still votes on cars that nearer objects hide (its value times
fit/heading.py hidden_gate), where Segment-Lift-Fit's own cues are weak."""
import numpy as np
import pytest

from autolabel_ros.fit import heading
from autolabel_ros.fit.optimize import ObjectFit

# a simulator frame with a car (id 9, 40 m, 30 scan points) ~84 % behind a nearer one (id 5)
SEED, HIDDEN_ID, NEAR_ID = 100011, 9, 5


def _decided_pair(occluded: float) -> ObjectFit:
    """A flip pair the energy decides for +x by 0.025 (past the tie margin); the network reads -x."""
    plus = ObjectFit(pose=np.array([30.0, 0, -1, 0.0]), code=np.zeros(5), scales=np.ones(3), energy=0.100,
                     terms={'mask_iou_hi': 0.8})
    minus = ObjectFit(pose=np.array([30.0, 0, -1, np.pi]), code=np.zeros(5), scales=np.ones(3), energy=0.125,
                      terms={'mask_iou_hi': 0.8})
    for a in (plus, minus):
        a.terms['cue_css'] = 1.0 if np.cos(a.pose[3]) > 0 else -1.0
        a.terms['cue_css_hidden'] = heading.hidden_gate(occluded) * a.terms['cue_css']
    plus.alternatives = [plus, minus]
    return plus


def test_the_css_vote_turns_a_hidden_car_and_only_a_hidden_one():
    w = {'css': 0.5, 'css_hidden': 0.02}
    assert 0.025 > heading.TIEBREAK_UNDECIDED          # the tie-break alone cannot act on this pair
    seen = heading.choose([_decided_pair(0.1)], ['css', 'css_hidden'], w, 0.0, tiebreak=('css',))[0]
    assert np.cos(seen.pose[3]) > 0 and seen.terms['flip_margin'] == pytest.approx(0.025)
    hidden = heading.choose([_decided_pair(0.9)], ['css', 'css_hidden'], w, 0.0, tiebreak=('css',))[0]
    assert np.cos(hidden.pose[3]) < 0 and hidden.terms['flip_margin'] == pytest.approx(0.04 - 0.025)
    # a quarter up the ramp: a quarter of the vote (0.01 over the pair) is not enough against the
    # energy's 0.025, and leaves the pair decided (the tie-break does not act either)
    part = heading.HIDDEN_FROM + 0.25 * (heading.HIDDEN_FULL - heading.HIDDEN_FROM)
    mid = heading.choose([_decided_pair(part)], ['css', 'css_hidden'], w, 0.0, tiebreak=('css',))[0]
    assert np.cos(mid.pose[3]) > 0 and mid.terms['flip_margin'] == pytest.approx(0.025 - 0.01)


def test_hybrid_sets_the_vote_from_the_occluded_share_and_the_other_methods_do_not():
    """Through the pipeline on a simulator frame: with method hybrid every hypothesis of the car behind
    a nearer one gets gate x css cue, the unhidden car 0; hidden_vote 0 and the voting methods (css at
    full weight anyway) leave the cue out."""
    from autolabel_ros.config import from_dict
    from autolabel_ros.core.device import torch_threads
    from autolabel_ros.core.types import Prompt
    from autolabel_ros.pipeline import Autolabeler
    from autolabel_ros.sim.drive import simulate_frame
    sf = simulate_frame(SEED)
    cars = [next(g for g in sf.gt if g.id == k) for k in (NEAR_ID, HIDDEN_ID)]
    prompts = [Prompt(id=g.id, box=g.box2d, sources=('gt',)) for g in cars]
    masks = [sf.masks == g.id for g in cars]

    def alternatives(cfg):
        al = Autolabeler(from_dict(dict(cfg, device='cpu')))
        with torch_threads(1):
            res = al.label(sf.frame, prompts, masks)
        return al, {lab.id: lab for lab in res.labels}
    al, by_id = alternatives({'method': 'hybrid'})
    assert al.fitter.css_hidden_vote == al.cfg.css.hidden_vote > 0
    occ = {k: by_id[k].metrics['occluded_share'] for k in by_id}
    assert occ[NEAR_ID] < heading.HIDDEN_FROM < heading.HIDDEN_FULL < occ[HIDDEN_ID]
    for k, lab in by_id.items():
        alts = lab.metrics['alternatives']
        assert len(alts) >= 2
        for a in alts:
            assert a['cue_css_hidden'] == pytest.approx(heading.hidden_gate(occ[k]) * a['cue_css'])
    assert all(a['cue_css_hidden'] == 0.0 for a in by_id[NEAR_ID].metrics['alternatives'])
    assert any(a['cue_css_hidden'] != 0.0 for a in by_id[HIDDEN_ID].metrics['alternatives'])
    for cfg in ({'method': 'hybrid', 'css': {'hidden_vote': 0.0}}, {'method': 'sdflabel'}):
        al, by_id = alternatives(cfg)
        assert al.fitter.css_hidden_vote == 0.0
        assert all('cue_css_hidden' not in a for lab in by_id.values() for a in lab.metrics['alternatives'])
