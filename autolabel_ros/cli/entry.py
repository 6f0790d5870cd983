"""The ``autolabel-*`` console scripts. Each imports its command inside
:func:`core.interrupts.run_quietly`, so a Ctrl-C while torch & co. are still loading ends the
command like one during its work: exit code 130 (the shell's 128 + SIGINT), no traceback.
This module imports nothing heavy: it is what the console script imports first."""
from __future__ import annotations

import importlib

from autolabel_ros.core.interrupts import run_quietly

EXIT_INTERRUPTED = 130


def _run(command: str, function: str = 'main', skip_teardown: bool = False):
    run_quietly(lambda: getattr(importlib.import_module(f'autolabel_ros.cli.{command}'), function),
                EXIT_INTERRUPTED, skip_teardown)


def eval_main():
    _run('eval')


def sim_main():
    _run('sim')


def kitti_main():
    _run('kitti')


def build_prior_main():
    _run('build_prior')


def train_css_main():
    _run('train_css')


def curriculum_main():
    _run('curriculum')


def bag_main():
    # its outputs are written and closed (pools shut down, Ray stopped) when its main returns
    _run('bag', skip_teardown=True)
