"""benchmarks/run_all.py's held-out scenes: simulator scenes no calibration or choice of constants read.
The scene seed is the frame id, so a held-out frame id that a calibration set also holds would be the
very same scene."""
from benchmarks.fit_dump import SETS
from benchmarks.run_all import HELDOUT, heldout_specs, scene_kind


def test_held_out_scenes_are_none_of_the_calibration_scenes():
    calibrated = {'sim64': set(range(SETS['sim'][2])), 'apollo64': set(range(SETS['apollo'][2]))}
    for ds, frames in HELDOUT.items():
        base = ds.split('_')[0]
        assert len(frames) >= 40
        assert not calibrated[base] & set(frames), ds
    specs = heldout_specs(True)
    assert {s['dataset'] for s in specs} == set(HELDOUT)
    for s in specs:
        assert [int(f) for f in s['frames']] == list(HELDOUT[s['dataset']])
        # their own folder: the scripts that read every frame of a calibration set never see them
        assert s['data'] != str(SETS['sim'][1]) and s['data'] != str(SETS['apollo'][1])
    # without the ApolloCar3D models only the procedural scenes run
    assert {s['dataset'] for s in heldout_specs(False)} == {'sim64_heldout'}


def test_scene_kind_reads_beams_and_cars_from_the_set_name():
    assert scene_kind('sim64') == (64, None)
    assert scene_kind('sim16') == (16, None)
    assert scene_kind('apollo64') == (64, 'apollo')
    assert scene_kind('apollo64_heldout') == (64, 'apollo')
    assert scene_kind('sim64_heldout') == (64, None)
