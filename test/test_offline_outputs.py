"""The output phase of the offline tool made fast stays the same: PLY bytes as trimesh writes them,
per-frame bird's-eye views on one reused figure as on a fresh one, figures drawn in a child process
as in this one."""
from __future__ import annotations

import numpy as np
import pytest

from autolabel_ros.core.types import Mesh


@pytest.mark.parametrize('n_vertices, n_faces', [(200, 390), (4, 0)])
def test_ply_bytes_are_those_trimesh_writes(n_vertices, n_faces):
    trimesh = pytest.importorskip('trimesh')
    from autolabel_ros.io.writers import mesh_to_ply_bytes

    rng = np.random.default_rng(3)
    v = rng.normal(size=(n_vertices, 3)) * 2.0
    f = rng.integers(0, n_vertices, size=(n_faces, 3))
    ref = trimesh.Trimesh(vertices=v, faces=f, process=False).export(file_type='ply', encoding='binary')
    got = mesh_to_ply_bytes(Mesh(v, f))
    assert got == ref
    back = trimesh.load(trimesh.util.wrap_as_stream(got), file_type='ply', process=False)
    np.testing.assert_allclose(back.vertices, v.astype(np.float32))
    assert len(getattr(back, 'faces', ())) == n_faces     # no faces: trimesh reads a point cloud


def _record(index: int, n_cars: int) -> dict:
    labels = [{'center': [8.0 + 6 * k + index, -3.0 + 2.5 * k, -0.8], 'size': [4.2, 1.8, 1.5],
               'yaw': 0.3 * k + 0.1 * index, 'accepted': k % 2 == 0, 'score': 0.9 - 0.1 * k, 'id': k,
               'reasons': [] if k % 2 == 0 else ['low_iou']} for k in range(n_cars)]
    return {'index': index, 'name': f'{index:06d}', 'prompts': [{}] * n_cars,
            'timings': {'frame_s': 1.0 + index, 'fit_s': 0.5}, 'labels': labels}


def _bevs(records) -> dict:
    rng = np.random.default_rng(0)
    return {r['index']: (rng.uniform(-30, 60, size=(3000, 2))).astype(np.float16) for r in records}


def test_a_reused_figure_draws_each_frame_as_a_fresh_one(tmp_path):
    """Frame 1 drawn after frame 0 on the same figure has the bytes of frame 1 drawn alone: nothing of
    the previous frame (points, boxes, title) is left on the reused axes."""
    from autolabel_ros.io.report import _per_frame_bevs, _plt

    records = [_record(0, 4), _record(1, 2)]
    bevs = _bevs(records)
    plt = _plt()
    both = _per_frame_bevs(plt, tmp_path / 'both', records, bevs, (-5.0, 60.0), (-25.0, 25.0), None)
    alone = _per_frame_bevs(plt, tmp_path / 'alone', records[1:], bevs, (-5.0, 60.0), (-25.0, 25.0), None)
    assert both == ['bev/000000.png', 'bev/000001.png'] and alone == ['bev/000001.png']
    first = (tmp_path / 'both' / 'bev' / '000000.png').read_bytes()
    second = (tmp_path / 'both' / 'bev' / '000001.png').read_bytes()
    assert second == (tmp_path / 'alone' / 'bev' / '000001.png').read_bytes()
    assert first != second and len(second) > 5000


def test_figures_drawn_in_a_child_process_are_the_same_files(tmp_path):
    from autolabel_ros.io.report import figure_count
    from autolabel_ros.offline.job import FigureJob

    class Bar:    # the part of tqdm FigureJob uses
        n = 0

        def update(self, k):
            self.n += k

        def refresh(self):
            pass

    records = [_record(i, 3) for i in range(3)]
    bevs = _bevs(records)
    got = {}
    for spawn in (False, True):
        bar = Bar()
        job = FigureJob(tmp_path / str(spawn), records, bevs, spawn=spawn)
        assert (job.pool is not None) == spawn
        figures = job.result(bar)
        assert job.pool is None                  # the child is gone once its result is in
        assert len(figures) == figure_count(len(records)) == bar.n == 6
        got[spawn] = {f: (tmp_path / str(spawn) / f).read_bytes() for f in figures}
    # timing.png too: the records carry fixed timings here
    assert got[True] == got[False]
