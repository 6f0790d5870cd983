"""Shared fixtures: the read-only real data beside the repo (skipped when absent)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """../shared/data (KITTI object/raw frames, ApolloCar3D models); tests using it skip without it."""
    if not (SHARED_DATA / 'kitti_object' / 'training').is_dir():
        pytest.skip(f'real data not present at {SHARED_DATA}')
    return SHARED_DATA


@pytest.fixture(scope='session')
def kitti_training(shared_data) -> Path:
    return shared_data / 'kitti_object' / 'training'
