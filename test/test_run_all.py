"""benchmarks/run_all.py's command line (the benchmark itself runs for an hour: `make benchmark`)."""
import pytest

from benchmarks.run_all import SECTIONS, main


def test_an_unknown_section_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(['--only', 'timings', '--out', str(tmp_path)])     # 'timing' misspelt
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'unknown section(s) timings' in err and 'timing' in err
    assert not any(tmp_path.iterdir())                           # no results.json, no RESULTS.md
    assert {'offline', 'heading', 'timing', 'no_gt'} <= set(SECTIONS)
