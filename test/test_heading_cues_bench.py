"""benchmarks/heading_cues.py's analysis of the front/back choice: the flip pair of a car, how often
each cue calls the right end per occluded share, and the frame-wise 2-fold split."""
import numpy as np

from benchmarks.heading_cues import cue_accuracy, flip_pair, frame_fold


def alt(yaw, energy, occluded=0.0, **cues):
    return {'pose': [10.0, 0.0, 0.8, yaw], 'energy': energy,
            'terms': {'occluded': occluded, **{f'cue_{c}': v for c, v in cues.items()}}}


def rec(frame, alts, yaw=0.0):
    return {'frame': frame, 'gt': {'yaw': yaw}, 'alts': alts}


def test_flip_pair_takes_the_lowest_energy_of_each_direction():
    r = rec('000001', [alt(0.1, 0.30), alt(-0.2, 0.25), alt(np.pi, 0.20), alt(np.pi - 0.3, 0.40)])
    right, wrong = flip_pair(r)
    assert right['energy'] == 0.25 and wrong['energy'] == 0.20
    # the truth heads the other way: the pair swaps
    right, wrong = flip_pair(rec('000001', r['alts'], yaw=np.pi))
    assert right['energy'] == 0.20 and wrong['energy'] == 0.25
    assert flip_pair(rec('000001', [alt(0.0, 0.1), alt(0.3, 0.2)])) is None


def test_cue_accuracy_counts_right_calls_per_occluded_bin():
    recs = [
        # visible car: energy wrong (the flip is lower), lamps right, profile silent (equal values)
        rec('a', [alt(0.0, 0.30, 0.1, lamps=-0.5, profile=0.2),
                  alt(np.pi, 0.20, 0.1, lamps=0.5, profile=0.2)]),
        # visible car: energy right, lamps wrong
        rec('a', [alt(0.0, 0.10, 0.2, lamps=0.3), alt(np.pi, 0.20, 0.2, lamps=-0.3)]),
        # mostly hidden car: energy right
        rec('b', [alt(0.0, 0.10, 0.95), alt(np.pi, 0.20, 0.95)]),
        # one direction only: no pair
        rec('b', [alt(0.0, 0.10, 0.5)]),
    ]
    rows = cue_accuracy(recs, bins=((0.0, 0.3), (0.3, 0.9), (0.9, 1.01)), cues=('energy', 'lamps', 'profile'))
    assert [r['pairs'] for r in rows] == [2, 0, 1]
    assert rows[0]['energy'] == (1, 2) and rows[0]['lamps'] == (1, 2) and rows[0]['profile'] == (0, 0)
    assert rows[2]['energy'] == (1, 1) and rows[2]['lamps'] == (0, 0)


def test_frame_fold_splits_by_whole_frames():
    recs = [rec(f, [alt(0.0, 0.1)]) for f in ('000003', '000001', '000001', '000002', '000004')]
    a, b = frame_fold(recs, 0), frame_fold(recs, 1)
    assert sorted({r['frame'] for r in a}) == ['000001', '000003']
    assert sorted({r['frame'] for r in b}) == ['000002', '000004']
    assert len(a) + len(b) == len(recs)
