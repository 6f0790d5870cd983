"""The output phase of the offline tool made fast stays the same: PLY bytes as trimesh writes them,
figures drawn in a child process (started with the job or earlier) as in this one, one PNG per
figure whatever the number of frames."""
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


def test_figures_drawn_in_a_child_process_are_the_same_files(tmp_path):
    from autolabel_ros.io.report import figure_count
    from autolabel_ros.offline.job import FigureJob

    class Bar:    # the part of tqdm FigureJob uses
        n = 0

        def update(self, k):
            self.n += k

        def refresh(self):
            pass

    from autolabel_ros.offline.job import start_figure_pool

    records = [_record(i, 3) for i in range(3)]
    bevs = _bevs(records)
    got = {}
    for how in ('here', 'spawned', 'started before'):
        bar = Bar()
        pool = start_figure_pool() if how == 'started before' else None
        job = FigureJob(tmp_path / how, records, bevs, spawn=how == 'spawned', pool=pool)
        assert (job.pool is not None) == (how != 'here')
        figures = job.result(bar)
        assert job.pool is None                  # the child is gone once its result is in
        assert figures == ['bev_sheet.png', 'confidence.png', 'timing.png']
        assert len(figures) == figure_count(len(records)) == bar.n == 3
        got[how] = {f: (tmp_path / how / f).read_bytes() for f in figures}
        assert not (tmp_path / how / 'bev').exists()     # no figure per frame
    # timing.png too: the records carry fixed timings here
    assert got['spawned'] == got['here'] == got['started before']


def _tree(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_a_folder_of_yours_is_refused_naming_what_it_holds(tmp_path):
    from autolabel_ros.io.outdir import OutputDirError, prepare_output_dir

    (tmp_path / 'one').mkdir()
    (tmp_path / 'one' / '.frames').mkdir()
    with pytest.raises(OutputDirError,
                       match=r'folder is not empty \(1 entry: \.frames\) and was not written by autolabel'):
        prepare_output_dir(tmp_path / 'one', 'autolabel-bag')
    for name in 'abcdef':
        (tmp_path / 'many' / name).mkdir(parents=True)
    with pytest.raises(OutputDirError, match=r'not empty \(6 entries: a, b, c, d, e, \.\.\.\)'):
        prepare_output_dir(tmp_path / 'many', 'autolabel-kitti')


def test_install_tree_never_replaces_a_file_the_marker_does_not_list(tmp_path):
    """The output phase's move into place: a user's file at one of the paths (not in the marker) stops
    it before anything moves; the staged outputs stay where they are; the tool's own files are replaced."""
    from autolabel_ros.io.outdir import OutputDirError, install_tree, prepare_output_dir, read_marker

    out = prepare_output_dir(tmp_path / 'out', 'autolabel-bag')
    (out / 'meshes').mkdir()
    (out / 'meshes' / '000000_7.ply').write_text('my mesh\n')         # the user's, same name
    stage = tmp_path / 'out' / '.assemble'
    for rel in ('openlabel.json', 'meshes/000000_7.ply', 'meshes/000001_7.ply'):
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text(f'tool {rel}\n')
    staged, before = _tree(stage), _tree(out)
    with pytest.raises(OutputDirError) as e:
        install_tree(stage, out, 'autolabel-bag')
    assert str(e.value).startswith(f'{out / "meshes" / "000000_7.ply"}: exists and was not written by '
                                   'autolabel-bag') and str(stage) in str(e.value)
    assert _tree(stage) == staged and _tree(out) == before      # nothing moved, nothing replaced
    assert read_marker(out)['files'] == []
    # moved away by the user: installed; a second install replaces the tool's own files
    (out / 'meshes' / '000000_7.ply').rename(tmp_path / 'mine.ply')
    assert install_tree(stage, out, 'autolabel-bag') == sorted(staged)
    (stage / 'openlabel.json').parent.mkdir(parents=True)
    (stage / 'openlabel.json').write_text('tool, second run\n')
    assert install_tree(stage, out, 'autolabel-bag') == ['openlabel.json']
    assert (out / 'openlabel.json').read_text() == 'tool, second run\n'
    assert not (out / 'meshes').exists()            # the first run's meshes, the tool's own, are gone
    assert (tmp_path / 'mine.ply').read_text() == 'my mesh\n'
