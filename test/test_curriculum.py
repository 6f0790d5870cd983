"""The curriculum's parts (curriculum/): the difficulty rules, NOCS targets rendered from a label's mesh,
the mixing of real and simulator samples, the command's one-line errors, and one whole run."""
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from autolabel_ros.core.geometry import rot_z
from autolabel_ros.core.types import Label3D, Mesh
from autolabel_ros.curriculum.levels import level_rule, passes
from autolabel_ros.curriculum.loop import mixed, table
from autolabel_ros.curriculum.targets import label_sample, mask_agreement, mesh_silhouette


def test_levels_follow_the_pixel_size_overlap_and_border_rules():
    W, H = 1242, 375
    car = (400, 150, 520, 200)                       # 50 px high
    assert passes(car, [], W, H, 'easy') and passes(car, [], W, H, 'moderate')
    small = (400, 150, 470, 180)                     # 30 px: moderate only
    assert not passes(small, [], W, H, 'easy') and passes(small, [], W, H, 'moderate')
    assert not passes((400, 150, 430, 170), [], W, H, 'moderate')          # 20 px: neither
    touching = [(520, 160, 600, 210)]                # shares an edge, IoU 0
    assert passes(car, touching, W, H, 'easy') and passes(car, touching, W, H, 'moderate')
    corner = [(500, 180, 600, 250)]                  # covers 20 x 20 of 120 x 50 (6.7 %)
    assert passes(car, corner, W, H, 'easy')
    side = [(490, 140, 600, 210)]                    # covers 30 x 50 (25 %), IoU 0.12
    assert not passes(car, side, W, H, 'easy') and passes(car, side, W, H, 'moderate')
    behind = [(300, 100, 700, 300)]                  # the car's box lies inside a big one: IoU 0.075
    assert not passes(car, behind, W, H, 'easy') and passes(car, behind, W, H, 'moderate')
    overlapping = [(450, 150, 560, 200)]             # IoU 0.47
    assert not passes(car, overlapping, W, H, 'moderate') and passes(car, overlapping, W, H, 'hard')
    assert not passes(car, [(430, 150, 540, 200)], W, H, 'hard')           # IoU 0.69
    assert not passes((0, 150, 120, 200), [], W, H, 'easy')                # at the border
    with pytest.raises(ValueError, match='expert'):
        passes(car, [], W, H, 'expert')


def test_max_cover_keeps_a_mostly_hidden_car_out_of_every_level():
    W, H = 1242, 375
    car = (400, 150, 520, 200)
    behind = [(300, 100, 700, 300)]                  # inside a big nearer box: IoU 0.075, 100 % covered
    side = [(490, 140, 600, 210)]                    # 25 % covered
    roof = [(380, 165, 540, 260)]                    # hides the lower 70 % (IoU 0.35 < 0.5: hard passes)
    assert passes(car, behind, W, H, 'moderate') and not passes(car, behind, W, H, 'moderate', max_cover=0.5)
    assert passes(car, side, W, H, 'moderate', max_cover=0.5)
    assert passes(car, roof, W, H, 'hard') and not passes(car, roof, W, H, 'hard', max_cover=0.5)
    assert level_rule('easy', 0.5)['max_cover'] == 0.1 and level_rule('moderate', 0.5)['max_cover'] == 0.5
    assert level_rule('moderate') == {'min_height': 25.0, 'max_iou': 0.3, 'max_cover': 1.0}
    from autolabel_ros.curriculum.loop import CurriculumSettings
    assert CurriculumSettings().max_cover == 0.5 and CurriculumSettings().min_mask_agree == 0.0
    assert CurriculumSettings().lr == 1e-4


@pytest.fixture(scope='module')
def sim_frame():
    from autolabel_ros.sim.drive import simulate_frame
    return simulate_frame(100006)


def test_targets_from_a_label_mesh_show_the_visible_end(sim_frame):
    sf = sim_frame
    dense = [g for g in sf.gt if g.metrics['lidar_points'] >= 200 and g.occlusion == 0]
    assert dense
    rng = np.random.default_rng(0)
    for g in dense:
        box = trimesh.creation.box(extents=g.size)
        verts = box.vertices @ rot_z(g.yaw).T + g.center
        lab = Label3D(center=g.center, size=g.size, yaw=g.yaw, cls='Car', mesh=Mesh(verts, box.faces))
        s = label_sample(sf.frame, lab, sf.masks == g.id, rng)
        assert s is not None and s.rgb.shape == (64, 64, 3) and s.mask.sum() > 50
        v = s.nocs[s.mask]
        assert np.all((v >= 0) & (v <= 1))
        # the visible end: NOCS x above 0.5 for a car facing the camera, below for one facing away
        if abs(s.facing) > 0.5:
            assert np.sign(v[:, 0].mean() - 0.5) == np.sign(s.facing)
        # the box's NOCS lie on its faces: one coordinate at its extreme per pixel
        half = g.size / np.linalg.norm(g.size) / 2
        on_face = np.isclose(np.abs(v - 0.5), half, atol=0.03).any(1)
        assert on_face.mean() > 0.9
    assert label_sample(sf.frame, Label3D(center=dense[0].center, size=dense[0].size, yaw=0.0, cls='Car'),
                        sf.masks == dense[0].id, rng) is None         # no mesh, no target


def test_a_mask_agrees_with_the_mesh_of_its_own_car_and_not_with_a_shifted_fit(sim_frame):
    sf = sim_frame
    g = max((g for g in sf.gt if g.occlusion == 0), key=lambda g: (sf.masks == g.id).sum())
    box = trimesh.creation.box(extents=g.size)

    def label(shift):
        c = g.center + np.array([0.0, shift, 0.0])
        mesh = Mesh(box.vertices @ rot_z(g.yaw).T + c, box.faces)
        return Label3D(center=c, size=g.size, yaw=g.yaw, cls='Car', mesh=mesh)
    mask = sf.masks == g.id
    right, shifted = mesh_silhouette(sf.frame, label(0.0)), mesh_silhouette(sf.frame, label(2.0))
    assert right.shape == mask.shape and right.sum() > 0.8 * mask.sum()
    assert mask_agreement(mask, right) > 0.75                  # a box mesh around the car's own shape
    assert mask_agreement(mask, shifted) < 0.6                 # the fit 2 m to the side
    # pixels a nearer object hides count for neither: hiding everything but the overlap leaves IoU 1
    assert mask_agreement(mask, shifted, hidden=~(mask & shifted)) == 1.0
    assert mask_agreement(np.zeros_like(mask), np.zeros_like(mask)) == 0.0


def test_real_samples_make_about_half_of_the_mix():
    real = {'rgb': np.zeros((10, 2)), 'dims': np.zeros((10, 3))}
    sim = {'rgb': np.ones((95, 2)), 'dims': np.ones((95, 3))}
    m = mixed(real, sim)
    n_real = int((m['rgb'][:, 0] == 0).sum())
    assert len(m['rgb']) == n_real + 95 and 0.4 < n_real / len(m['rgb']) < 0.6
    assert mixed(real, None) is real
    t = table([{'loop': 0, 'level': '-', '3D@0.5_mod': 80.0, '3D@0.7_mod': 40.0, 'BEV@0.7_mod': 60.0,
                '3D@0.5_easy': 90.0, 'flip_rate': 0.25, 'css_frontback': 0.75, 's_per_instance': 1.5}])
    assert '| 0 | - | - | 90.0 | 80.0 | 40.0 | 60.0 | 25.0 % | 75.0 % | 1.50 |' in t


def test_the_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    from autolabel_ros.cli.curriculum import main
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('keep me')
    assert main(['--logs', str(tmp_path), '--out', str(foreign)]) == 2
    err = capsys.readouterr().err.strip()
    assert '\n' not in err and 'mine' in err and (foreign / 'notes.txt').read_text() == 'keep me'
    assert main(['--logs', str(tmp_path / 'nope'), '--out', str(tmp_path / 'run')]) == 2
    assert 'nope' in capsys.readouterr().err
    assert main(['--logs', str(tmp_path), '--out', str(tmp_path / 'run'), '--eval', str(tmp_path)]) == 2
    assert 'label_2' in capsys.readouterr().err
    for flag in ('--max-cover', '--min-mask-agree'):
        assert main(['--logs', str(tmp_path), '--out', str(tmp_path / 'run'), flag, '1.5']) == 2
        err = capsys.readouterr().err.strip()
        assert '\n' not in err and flag in err
    for flag, bad in (('--min-track', '1'), ('--batch', '0'), ('--lr', '0'), ('--sim-frames', '-1')):
        assert main(['--logs', str(tmp_path), '--out', str(tmp_path / 'run'), flag, bad]) == 2
        err = capsys.readouterr().err.strip()
        assert '\n' not in err and flag in err
    # checked before any labelling: an --eval frame that is not there, --init that is not CSS weights
    from autolabel_ros.cli.sim import main as sim_main
    assert sim_main(['--out', str(tmp_path / 'd'), '--frames', '1', '--scale', '0.3', '--beams', '16',
                     '--no-bag', '--quiet']) == 0
    ev = str(tmp_path / 'd' / 'kitti' / 'training')
    (tmp_path / 'w.pt').write_bytes(b'not a checkpoint' * 8)
    for extra, fragment in ((['--eval', ev, '--eval-frames', '000007'], 'frames not found: 000007'),
                            (['--eval-frames', '000000'], '--eval-frames 000000: needs --eval'),
                            (['--init', str(tmp_path / 'w.pt')], 'w.pt: not CSS network weights')):
        assert main(['--logs', ev, '--out', str(tmp_path / 'run'), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert '\n' not in err and err.startswith('autolabel-curriculum: error: ') and fragment in err, err


def test_mask_cache_persists_and_rejects_a_different_prompt_count(tmp_path):
    from autolabel_ros.curriculum.loop import MaskCache
    m = np.zeros((4, 5), bool)
    m[1:3, 2:4] = True
    MaskCache(tmp_path).put('log0_000001', [m, None], (4, 5))
    again = MaskCache(tmp_path)
    got = again.get('log0_000001', 2)
    assert np.array_equal(got[0], m) and got[1] is None
    assert MaskCache(tmp_path).get('log0_000001', 3) is None       # other prompts: recomputed
    assert again.get('log0_000002', 1) is None


def test_result_cache_keys_on_weights_and_config_and_reuses_training(tmp_path):
    """A rerun of a run folder reuses autolabel passes, evaluations and training only for the same
    starting weights, pipeline config and settings."""
    import dataclasses

    from autolabel_ros.config import load_config
    from autolabel_ros.css.model import CssNet
    from autolabel_ros.css.train import save_weights
    from autolabel_ros.curriculum.loop import ResultCache, run_key, trained_losses
    from autolabel_ros.sim.nocs import NocsSample
    w1, w2 = tmp_path / 'a.pt', tmp_path / 'b.pt'
    w1.write_bytes(b'weights one')
    w2.write_bytes(b'weights two')
    cfg = load_config(None)
    k = run_key(w1, cfg, level='easy')
    assert k == run_key(w1, cfg, level='easy')
    assert len({k, run_key(w2, cfg, level='easy'), run_key(w1, cfg, level='moderate'),
                run_key(w1, dataclasses.replace(cfg, method='sdflabel'), level='easy')}) == 4
    rc = ResultCache(tmp_path / 'results')
    assert rc.get_pool(k) is None and rc.get_eval(k) is None
    s = NocsSample(rgb=np.full((64, 64, 3), 7, np.uint8), mask=np.ones((64, 64), bool),
                   nocs=np.full((64, 64, 3), 0.25, np.float32), dims=np.array([0.9, 0.4, 0.3], np.float32),
                   facing=-0.8)
    rc.put_pool(k, [s, s], {'kept': 2})
    rc.put_eval(k, {'3D@0.5_mod': 81.5})
    samples, counts = ResultCache(tmp_path / 'results').get_pool(k)
    assert counts == {'kept': 2} and len(samples) == 2 and samples[1].facing == pytest.approx(-0.8)
    assert samples[0].rgb[0, 0, 0] == 7 and samples[0].nocs[5, 5, 1] == pytest.approx(0.25)
    assert rc.get_eval(k) == {'3D@0.5_mod': 81.5}
    wpath = tmp_path / 'loop1' / 'css.pt'
    assert trained_losses(wpath, 'key') is None
    save_weights(CssNet(width=4), wpath, {'train_key': 'key', 'losses': '[0.5, 0.25]'})
    assert trained_losses(wpath, 'key') == [0.5, 0.25] and trained_losses(wpath, 'other') is None


def test_only_likely_right_labels_with_a_decided_heading_teach_the_network():
    """A pseudo-label's NOCS targets teach its heading: the curriculum keeps the accepted labels whose
    calibrated P(right) and heading confidence are both high (inf: no hypothesis the other way)."""
    from autolabel_ros.curriculum.loop import CurriculumSettings, verified
    st = CurriculumSettings(min_right=0.8, min_heading_logit=1.0)

    def lab(conf, logit):
        return Label3D(center=np.zeros(3), size=np.ones(3), yaw=0.0, cls='Car',
                       metrics={'confidence': conf, 'heading_logit': logit})
    assert verified(lab(0.9, 2.5), st) and verified(lab(0.9, float('inf')), st)
    assert not verified(lab(0.7, 2.5), st)            # likely wrong
    assert not verified(lab(0.95, 0.3), st)           # front/back undecided
    assert not verified(lab(0.95, float('nan')), st)
    assert not verified(Label3D(center=np.zeros(3), size=np.ones(3), yaw=0.0, cls='Car'), st)
    assert CurriculumSettings().label_method == 'slf'


def test_network_ends_score_every_car_whose_end_faces_the_camera(kitti_training):
    """The curriculum's direct measure of the network: per ground-truth car with an end towards the
    camera, whether the NOCS read that end right (a perfect read gives all True, its mirror all False)."""
    from autolabel_ros.css.cue import hypothesis_facing
    from autolabel_ros.curriculum.loop import network_ends
    from autolabel_ros.io.kitti import KittiObjectDataset, kitti_to_label3d
    ds = KittiObjectDataset(kitti_training)
    for fid in ds.frame_ids:            # the first frame with two cars seen end-on
        frame, calib, objs = ds.load_frame(fid), ds.calib(fid), ds.labels(fid)
        prompts = ds.prompts(fid, mode='gt-boxes')
        facing = [hypothesis_facing(np.r_[g.center, g.yaw], frame.T_cam_lidar)
                  for g in (kitti_to_label3d(objs[p.id], calib) for p in prompts)]
        if sum(abs(f) > 0.3 for f in facing) >= 2:
            break

    class Oracle:     # a known-answer reader: each car's end from its ground truth (or its mirror)
        def __init__(self, sign):
            self.sign = sign

        def predict(self, image, masks):
            return [type('P', (), {'facing': lambda s, f=f: self.sign * f})() for f in facing]
    masks = [None] * len(prompts)
    n_ends = sum(abs(f) > 0.3 for f in facing)
    assert n_ends >= 2
    assert network_ends(Oracle(1.0), frame, prompts, masks, objs, calib) == [True] * n_ends
    assert network_ends(Oracle(-1.0), frame, prompts, masks, objs, calib) == [False] * n_ends
    # per car: the fitted box against the truth (the truth itself: IoU 1; turned round: a flip)
    from autolabel_ros.curriculum.loop import car_records, network_end_reads
    truth = [kitti_to_label3d(objs[p.id], calib) for p in prompts]
    ends = network_end_reads(Oracle(1.0), frame, prompts, masks, objs, calib)
    recs = car_records(fid, prompts, truth, objs, calib, ends)
    assert [r['iou3d'] for r in recs] == pytest.approx([1.0] * len(prompts), abs=1e-6)
    assert sum(r['end_right'] is True for r in recs) == n_ends and recs[0]['car'] == f'{fid}/{prompts[0].id}'
    truth[0].yaw += np.pi
    assert car_records(fid, prompts, truth, objs, calib, ends)[0]['yaw_err_deg'] == pytest.approx(180.0)


def _chain(rng, gain):
    """Loop rows of one seed over the same 30 cars: loop 1 shifts every car's IoU by ``gain``."""
    cars = [f'f/{i}' for i in range(30)]
    base = rng.uniform(0.3, 0.8, len(cars))
    rows = []
    for k, g in enumerate((0.0, gain)):
        recs = [{'car': c, 'iou3d': float(b + g + rng.normal(0, 0.02)), 'yaw_err_deg': 5.0, 'accepted': True,
                 'end_right': bool(i % 3)} for i, (c, b) in enumerate(zip(cars, base))]
        from autolabel_ros.curriculum.stats import car_summary
        rows.append({'loop': k, 'level': '-' if k == 0 else 'easy', '3D@0.5_mod': 80.0 + 100 * g + k,
                     **car_summary(recs), 'cars': recs})
    return rows


def test_seed_statistics_find_a_real_gain_and_not_a_null_one():
    """Several seeds' chains: mean +- std per loop, a sign test over the seeds and a car bootstrap that
    excludes 0 for a consistent gain and includes it when there is none."""
    from autolabel_ros.curriculum.stats import car_summary, paired, per_loop, seeds_table, sign_test
    rng = np.random.default_rng(3)
    up = {s: _chain(rng, 0.05) for s in range(6)}
    pr = paired(up, 0, 1)
    assert pr['3D@0.5_mod']['wins'] == 6 and pr['3D@0.5_mod']['p_sign'] == pytest.approx(2 / 64)
    m, lo, hi, n = pr['car_iou3d']
    assert n == 30 and m == pytest.approx(0.05, abs=0.01) and 0.0 < lo < m < hi
    flat = {s: _chain(rng, 0.0) for s in range(6)}
    m, lo, hi, _ = paired(flat, 0, 1)['car_iou3d']
    assert lo < 0.0 < hi
    summ = per_loop(up)
    assert summ[1]['seeds'] == 6 and summ[1]['3D@0.5_mod'][0] == pytest.approx(86.0)
    assert sign_test([1, -1, 0]) == 1.0 and sign_test([]) == 1.0
    s = car_summary([{'iou3d': 0.8, 'yaw_err_deg': 170.0, 'end_right': None},
                     {'iou3d': 0.4, 'yaw_err_deg': 3.0, 'end_right': True}])
    assert s['mean_iou3d_all'] == pytest.approx(0.6) and s['iou_ge_0.5'] == 0.5 and s['iou_ge_0.7'] == 0.5
    assert s['flips_all'] == 0.5 and s['css_frontback'] == 1.0 and s['css_ends'] == 1
    t = seeds_table(up)
    assert '| loop 1 - loop 0 |' in t and '+6.0 (6/0, p 0.03)' in t and '(30 cars)' in t


def test_real_share_sets_the_mix_and_seed_lists_parse():
    from autolabel_ros.cli.curriculum import parse_seeds
    real = {'rgb': np.zeros((10, 2))}
    sim = {'rgb': np.ones((90, 2))}
    for share in (0.25, 0.5):
        m = mixed(real, sim, share)
        assert abs((m['rgb'][:, 0] == 0).mean() - share) < 0.06
    assert parse_seeds('0-3,7,2') == [0, 1, 2, 3, 7] and parse_seeds('') == []
    with pytest.raises(ValueError):
        parse_seeds('a,b')


def test_fewer_flips_count_as_the_better_seed():
    from autolabel_ros.curriculum.stats import paired
    chains = {s: [{'loop': 0, 'flips_all': 0.3}, {'loop': 1, 'flips_all': 0.2}] for s in range(3)}
    q = paired(chains, 0, 1)['flips_all']
    assert q['wins'] == 3 and q['losses'] == 0 and q['mean'] == pytest.approx(-0.1)


@pytest.mark.parametrize('tune, moved', [('all', {'enc', 'dec', 'head', 'bn_stats'}),
                                         ('frozen-bn', {'enc', 'dec', 'head'}),
                                         ('decoder', {'dec', 'head', 'dec_bn_stats'}),
                                         ('head', {'head'})])
def test_fine_tuning_changes_only_what_its_tune_mode_names(tune, moved):
    """The curriculum's fine-tuning modes (css/train.TUNE_MODES): what they freeze, weights and batch-norm
    running statistics both, stays bit for bit the bootstrap's."""
    import torch

    from autolabel_ros.css.model import CssNet
    from autolabel_ros.css.train import train
    torch.manual_seed(0)
    net = CssNet(width=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g = np.random.default_rng(0)
    data = {'rgb': torch.rand(6, 3, 64, 64), 'mask': torch.ones(6, 1, 64, 64),
            'nocs': torch.from_numpy(g.random((6, 3, 64, 64), np.float32)),
            'dims': torch.full((6, 3), 0.5), 'facing': torch.zeros(6)}
    net, losses = train(data, 3, 1e9, 4, 1e-2, 0, net, log=None, tune=tune)
    after = net.state_dict()

    def changed(pred) -> bool:
        return any(not torch.equal(before[k], after[k]) for k in before if pred(k))

    stats = ('running_mean', 'running_var')
    got = {'enc': changed(lambda k: k.startswith('enc') and not k.endswith(stats + ('num_batches_tracked',))),
           'dec': changed(lambda k: k.startswith('dec') and not k.endswith(stats + ('num_batches_tracked',))),
           'head': changed(lambda k: k.startswith(('head', 'dims'))),
           'bn_stats': changed(lambda k: k.startswith('enc') and k.endswith(stats)),
           'dec_bn_stats': changed(lambda k: k.startswith('dec') and k.endswith(stats))}
    want = {k: k in moved or (k == 'dec_bn_stats' and 'bn_stats' in moved) for k in got}
    assert got == want and len(losses) == 3 and not net.training
    assert all(p.requires_grad for p in net.parameters())        # a later training starts from all
    with pytest.raises(ValueError, match='tune'):
        train(data, 1, 1e9, 4, 1e-2, 0, net, log=None, tune='encoder')


@pytest.fixture(scope='module')
def sim_drive_frames():
    """Eight frames of a simulated drive (32 beams, tiny camera) with their ground-truth labels."""
    from autolabel_ros.sim.drive import Simulator
    from autolabel_ros.sim.sensors import Camera, Lidar
    sim = Simulator(700000, n_frames=8, camera=Camera.kitti(0.1), lidar=Lidar(beams=32))
    return [sim.frame(i) for i in range(8)]


def test_a_label_pointing_against_its_track_is_found_and_turned(sim_drive_frames):
    from dataclasses import replace

    from autolabel_ros.curriculum.tracks import disagrees, log_track_headings
    frames = [sf.frame for sf in sim_drive_frames]
    # the car seen in most frames gets its label flipped in two of them
    counts = {}
    for sf in sim_drive_frames:
        for lab in sf.gt:
            counts[lab.id] = counts.get(lab.id, 0) + 1
    car = max(counts, key=counts.get)
    assert counts[car] >= 6
    flipped, results = set(), []
    for f, sf in enumerate(sim_drive_frames):
        labs = []
        for k, lab in enumerate(sf.gt):
            if lab.id == car and f in (2, 5):
                lab = replace(lab, yaw=lab.yaw + np.pi)
                flipped.add((f, k))
            labs.append(lab)
        results.append(labs)
    heads = log_track_headings(frames, results, min_track=3)
    mine = {fk for fk in heads if results[fk[0]][fk[1]].id == car}
    assert flipped <= mine and len(mine) == counts[car]
    for (f, k), th in heads.items():
        assert disagrees(results[f][k].yaw, th.yaw) == ((f, k) in flipped), (f, k)
    # a track too short has no say
    assert log_track_headings(frames, results, min_track=9) == {}


def test_a_turned_label_teaches_the_other_end(sim_frame):
    from autolabel_ros.curriculum.tracks import turned
    sf = sim_frame
    g = max((g for g in sf.gt if g.occlusion == 0), key=lambda g: g.metrics['lidar_points'])
    box = trimesh.creation.box(extents=g.size)
    v = np.asarray(box.vertices, float).copy()
    v[v[:, 0] > 0, 2] *= 0.5                  # a lower front: the mesh is not symmetric front / back
    lab = Label3D(center=g.center, size=g.size, yaw=g.yaw, cls='Car', mesh=Mesh(v @ rot_z(g.yaw).T + g.center,
                                                                                  box.faces))
    t = turned(lab)
    assert abs(np.cos(t.yaw - lab.yaw) + 1) < 1e-9
    head = np.array([np.cos(lab.yaw), np.sin(lab.yaw)])
    along = (np.asarray(lab.mesh.vertices)[:, :2] - lab.center[:2]) @ head
    along_t = (np.asarray(t.mesh.vertices)[:, :2] - lab.center[:2]) @ head
    assert np.allclose(along_t, -along)                      # the front is now where the back was
    assert np.allclose(np.asarray(t.mesh.vertices)[:, 2], np.asarray(lab.mesh.vertices)[:, 2])
    assert np.allclose(turned(t).mesh.vertices, lab.mesh.vertices)
    a = label_sample(sf.frame, lab, sf.masks == g.id, np.random.default_rng(0))
    b = label_sample(sf.frame, t, sf.masks == g.id, np.random.default_rng(0))
    assert a is not None and b is not None and abs(a.facing) > 0.3
    # the other end faces the camera: the facing's sign and the visible end's NOCS x swap sides of 0.5
    assert b.facing == pytest.approx(-a.facing)
    m = a.mask & b.mask
    assert np.sign(a.nocs[m][:, 0].mean() - 0.5) == -np.sign(b.nocs[m][:, 0].mean() - 0.5)


def test_balance_gives_each_car_a_share_by_the_root_of_its_samples():
    n_sim = 240
    real = {'rgb': np.arange(30)}
    sim = {'rgb': np.full(n_sim, -1)}
    groups = ['a'] * 20 + ['b'] * 9 + ['c']
    m = mixed(real, sim, 0.5, groups)['rgb']
    share = {g: np.isin(m, [i for i, x in enumerate(groups) if x == g]).sum() for g in 'abc'}
    total = sum(share.values())
    assert abs(total - n_sim) <= 0.05 * n_sim and (m == -1).sum() == n_sim      # per-sample rounding
    root = {'a': np.sqrt(20), 'b': 3.0, 'c': 1.0}
    for g in 'abc':
        assert share[g] / total == pytest.approx(root[g] / sum(root.values()), abs=0.02)
    # every sample of a car is repeated alike; without groups every sample alike
    assert len({int((m == i).sum()) for i in range(20)}) == 1
    plain = mixed(real, sim, 0.5)['rgb']
    assert {int((plain == i).sum()) for i in range(30)} == {8}


def test_each_loop_fine_tunes_from_the_previous_loop_or_from_the_start(tmp_path):
    """The whole command on a short simulated drive (its ground-truth boxes as prompts, a few steps):
    ``--start previous`` fine-tunes loop 2 from loop 1's weights, ``--start init`` from the starting
    weights again on loop 2's pool; both write per-loop weights and the report, and a rerun of the
    same folder reuses the pools instead of labelling again."""
    import json

    from autolabel_ros.cli.curriculum import main
    from autolabel_ros.cli.sim import main as sim_main
    from autolabel_ros.css.predict import DEFAULT_WEIGHTS
    drive = ['--out', str(tmp_path / 'drive'), '--frames', '2', '--seed', '3', '--no-bag', '--quiet']
    assert sim_main(drive) == 0
    logs = str(tmp_path / 'drive' / 'kitti' / 'training')
    common = ['--logs', logs, '--loops', '2', '--levels', 'easy,easy', '--steps', '3', '--sim-frames', '1',
              '--prompts', 'gt', '--batch', '4']
    metas = {}
    for start in ('previous', 'init'):
        out = tmp_path / 'run'           # one folder: the second run reuses the first one's pools
        assert main(common + ['--out', str(out), '--start', start]) == 0
        report = json.loads((out / 'curriculum.json').read_text())
        loops = report['loops']
        assert [r['loop'] for r in loops] == [0, 1, 2] and loops[1]['kept'] > 0
        assert loops[1]['label_cached'] == (start == 'init') and loops[2]['label_cached']
        metas[start] = [torch.load(out / f'loop{k}' / 'css.pt', weights_only=True)['meta'] for k in (1, 2)]
    (l1p, l2p), (l1i, l2i) = metas['previous'], metas['init']
    assert Path(l1p['init']) == DEFAULT_WEIGHTS and Path(l2p['init']) == tmp_path / 'run' / 'loop1' / 'css.pt'
    assert Path(l1i['init']) == DEFAULT_WEIGHTS and Path(l2i['init']) == DEFAULT_WEIGHTS
    assert l1i['train_key'] == l1p['train_key'] and l2i['train_key'] != l2p['train_key']


def test_a_simulator_bag_is_a_log_like_its_kitti_folder(tmp_path):
    """``--logs`` takes rosbag2 recordings: a bag's frame loads as the same frame of the simulator's KITTI
    folder, and with ``--prompts gt`` its ground-truth 2D box topic gives one prompt per labelled car."""
    from autolabel_ros.cli.sim import main as sim_main
    from autolabel_ros.curriculum.loop import CurriculumSettings, pool_sources
    assert sim_main(['--out', str(tmp_path / 'd'), '--frames', '2', '--seed', '3', '--scale', '0.3',
                     '--beams', '16', '--no-clutter', '--cars', '3', '--quiet']) == 0
    st = CurriculumSettings(prompts='gt')
    logs = [tmp_path / 'd' / 'bag', tmp_path / 'd' / 'kitti' / 'training']
    (bag, bag_refs), (kit, kit_refs) = pool_sources(logs, st, None)[0]
    assert len(bag_refs) == len(kit_refs) == 2
    for br, kr in zip(bag_refs, kit_refs):
        fb, fk = bag.load(br), kit.load(kr)
        assert np.array_equal(fb.image, fk.image)
        assert np.allclose(fb.K, fk.K, atol=1e-6) and np.allclose(fb.T_cam_lidar, fk.T_cam_lidar, atol=1e-6)
        assert len(fb.points) == len(fk.points) > 100
        boxes = [sorted(tuple(p.bounding_box()) for p in src.gt_prompts(r))
                 for src, r in ((bag, br), (kit, kr))]
        assert len(boxes[0]) == len(boxes[1]) > 0
        assert np.allclose(boxes[0], boxes[1], atol=0.01)
