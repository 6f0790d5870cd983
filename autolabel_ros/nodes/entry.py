"""The nodes' executables (``ros2 run autolabel_ros fitter_node``, the launch file). Each imports
its node inside :func:`core.interrupts.run_quietly`: a Ctrl-C (or the SIGINT ``ros2 launch`` sends)
while rclpy, torch and the models are still loading ends the process like one while it spins:
exit code 0, the ROS convention for a node told to stop (launch: "process has finished cleanly"),
no traceback. A node's main has shut down all it started (node, worker, rclpy), so the process then
ends without the interpreter's teardown: that teardown resets SIGINT to the default action, and the
second SIGINT of a Ctrl-C (the terminal's to the whole group, then the one ``ros2 launch`` forwards)
killed the node by the signal (exit -2, "process has died") in that window. This module imports
nothing heavy: it is what the executable imports first."""
from __future__ import annotations

import importlib

from autolabel_ros.core.interrupts import run_quietly

EXIT_STOPPED = 0


def _run(module: str):
    run_quietly(lambda: importlib.import_module(f'autolabel_ros.nodes.{module}').main, EXIT_STOPPED,
                skip_teardown=True)


def fitter_node():
    _run('fitter_node')


def detector_node():
    _run('detector_node')
