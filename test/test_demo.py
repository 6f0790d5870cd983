"""`make demo` end to end on a one-frame drive (box masks and a short fit keep it quick)."""
from __future__ import annotations

import json

import pytest

from test_bag_fixtures import fast_config

from autolabel_ros.cli.demo import main


def test_demo_simulates_labels_and_scores(tmp_path, capsys):
    cfg = fast_config(tmp_path / 'fast.yaml')
    assert main(['--dir', str(tmp_path / 'demo'), '--frames', '1', '--config', str(cfg)]) == 0
    out = capsys.readouterr().out
    assert 'Car AP R40' in out and 'report: ' in out
    summary = json.loads((tmp_path / 'demo' / 'labels' / 'report' / 'summary.json').read_text())
    assert summary['frames']['labelled'] == 1
    assert summary['input']['prompts_topic'] == '/ground_truth/detections_2d'
    # every ground-truth car got a prompt from the simulator's 2D box topic, hence a label
    gt = tmp_path / 'demo' / 'sim' / 'kitti' / 'training' / 'label_2' / '000000.txt'
    n_gt = len(gt.read_text().splitlines())
    assert summary['objects']['prompts'] == n_gt > 0
    # a second run reuses the drive and the finished frame
    assert main(['--dir', str(tmp_path / 'demo'), '--frames', '1', '--config', str(cfg)]) == 0
    assert 'reusing the simulated drive' in capsys.readouterr().out
    # a bad --frames is refused before the drive is replaced
    images = tmp_path / 'demo' / 'sim' / 'kitti' / 'training' / 'image_2'
    drive = sorted(p.name for p in images.iterdir())
    with pytest.raises(SystemExit) as e:
        main(['--dir', str(tmp_path / 'demo'), '--frames', '0'])
    assert e.value.code == 2 and '--frames 0' in capsys.readouterr().err
    assert sorted(p.name for p in images.iterdir()) == drive
    summary = json.loads((tmp_path / 'demo' / 'labels' / 'report' / 'summary.json').read_text())
    assert summary['run']['resumed_frames'] == 1


def test_demo_refuses_a_sim_folder_it_did_not_write_and_deletes_nothing(tmp_path, capsys):
    user = tmp_path / 'work' / 'sim'
    user.mkdir(parents=True)
    (user / 'notes.txt').write_text('my own data\n')
    assert main(['--dir', str(tmp_path / 'work'), '--frames', '1']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('autolabel-demo: error: ')
    assert 'not written by autolabel-sim' in err[0]
    assert (user / 'notes.txt').read_text() == 'my own data\n'
    assert sorted(p.name for p in user.iterdir()) == ['notes.txt']


def test_demo_keeps_a_users_file_in_the_simulators_folder(tmp_path, capsys):
    """A drive of another length is simulated again; a file the user put into the simulator's folder
    stops that (it was deleted with the folder), with nothing deleted."""
    from autolabel_ros.cli.sim import main as sim_main

    sim = tmp_path / 'work' / 'sim'
    assert sim_main(['--out', str(sim), '--frames', '1', '--scale', '0.3', '--beams', '16', '--quiet']) == 0
    (sim / 'kitti' / 'notes.txt').write_text('my own data\n')
    before = sorted(p.relative_to(sim).as_posix() for p in sim.rglob('*'))
    assert main(['--dir', str(tmp_path / 'work'), '--frames', '2']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    notes = sim / 'kitti' / 'notes.txt'
    assert err[0].startswith(f'autolabel-demo: error: --dir {tmp_path / "work"}: {notes} was not written by '
                             'autolabel-sim'), err
    assert (sim / 'kitti' / 'notes.txt').read_text() == 'my own data\n'
    assert sorted(p.relative_to(sim).as_posix() for p in sim.rglob('*')) == before
