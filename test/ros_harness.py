"""Running the package under a real ROS 2 from plain pytest (no launch_testing plugin).

Where no ROS 2 is sourced (no ``ros2`` on PATH or no importable ``rclpy``), :data:`SKIP_REASON` says
so and the ROS test modules skip with it. Otherwise :func:`ros_workspace` builds this checkout with
colcon into a temporary workspace once per session and returns the environment in which ``ros2``
finds the package; nodes, ``ros2 launch`` and ``ros2 bag`` run as subprocesses (:class:`RosProcess`),
the test talks to them through an in-process rclpy node (:class:`Peer`). Every session uses its own
ROS_DOMAIN_ID, so tests of parallel sessions on one machine never see each other's topics.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]


def _skip_reason() -> Optional[str]:
    if shutil.which('ros2') is None:
        return 'no ROS 2 sourced (ros2 not on PATH; e.g. source /opt/ros/jazzy/setup.bash)'
    if importlib.util.find_spec('rclpy') is None:
        return 'ros2 is on PATH but rclpy does not import in this Python'
    if shutil.which('colcon') is None:
        return 'colcon is not installed (needed to build the package into a test workspace)'
    return None


SKIP_REASON = _skip_reason()

# A shell starts a background job (`pytest ... &`) with SIGINT ignored, and children inherit an ignored
# signal across exec: the nodes and `ros2 launch` would then ignore the Ctrl-C that stops them. A
# Python handler in this process is reset to the default in each child instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
DOMAIN_ID = 1 + os.getpid() % 100
_WS: dict = {}


def _sourced_env(setup: Path, base: dict) -> dict:
    """The environment after ``source setup`` in bash, on top of ``base``."""
    out = subprocess.run(['bash', '-c', f'source "{setup}" >/dev/null && env -0'], env=base, check=True,
                         capture_output=True).stdout
    return dict(item.split('=', 1) for item in out.decode().split('\0') if '=' in item)


def ros_workspace(tmp_root: Path) -> dict:
    """colcon build of this checkout into ``tmp_root`` (once per session); returns
    {'install': Path, 'env': environment for the subprocesses, 'build_log': str}."""
    if _WS:
        return _WS
    build, install, log = tmp_root / 'build', tmp_root / 'install', tmp_root / 'log'
    env = dict(os.environ)
    cmd = ['colcon', '--log-base', str(log), 'build', '--base-paths', str(ROOT), '--build-base', str(build),
           '--install-base', str(install), '--merge-install', '--event-handlers', 'console_direct-']
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=tmp_root, env=env, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f'colcon build failed ({res.returncode}):\n{res.stdout[-4000:]}\n'
                           f'{res.stderr[-4000:]}')
    env = _sourced_env(install / 'local_setup.bash', env)
    # The node scripts run with the Python colcon ran; the project's dependencies (torch, ...) live in
    # this test run's environment: add its site-packages after the workspace's.
    site = sysconfig.get_paths()['purelib']
    env['PYTHONPATH'] = os.pathsep.join(p for p in (env.get('PYTHONPATH', ''), site) if p)
    env['ROS_DOMAIN_ID'] = str(DOMAIN_ID)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_COLORIZED_OUTPUT'] = '0'
    os.environ['ROS_DOMAIN_ID'] = str(DOMAIN_ID)              # the in-process rclpy of the tests
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    _WS.update(install=install, env=env, build_seconds=time.monotonic() - t0, build_log=res.stdout)
    return _WS


class RosProcess:
    """A subprocess (``ros2 run``, ``ros2 launch``, ``ros2 bag``) in its own process group, its output
    (stdout and stderr together) in a file that :meth:`wait_for` scans."""

    def __init__(self, args: list, env: dict, log_path: Path, cwd: Optional[Path] = None):
        self.args = [str(a) for a in args]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(self.args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors='replace')

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        """The first match of ``pattern`` (regex) in the output after character ``start``; fails with
        the output's tail when it does not come within ``timeout`` s or the process ends first."""
        end = time.monotonic() + timeout
        while True:
            text = self.output
            m = re.compile(pattern, re.M).search(text, start)
            if m:
                return m
            if self.proc.poll() is not None or time.monotonic() > end:
                state = f'exited {self.proc.returncode}' if self.proc.poll() is not None else 'timed out'
                raise AssertionError(f'{pattern!r} not seen ({state}) in {" ".join(self.args[:4])} ...:\n'
                                     f'{text[-6000:]}')
            time.sleep(0.2)

    def signal(self, sig=signal.SIGINT):
        """To the process group (``ros2 run`` relies on its child getting the terminal's signal too);
        ``ros2 launch`` alone, since it forwards the signal to its processes itself."""
        if self.proc.poll() is None:
            if self.args[:2] == ['ros2', 'launch']:
                os.kill(self.proc.pid, sig)
            else:
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT, then wait; SIGKILL (the whole group) only when it does not end in time."""
        self.signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def ros2(*args, env: dict, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(['ros2', *[str(a) for a in args]], env=env, capture_output=True, text=True,
                          timeout=timeout)


def run_node_cmd(executable: str, params_files=(), params: Optional[dict] = None,
                 remaps: Optional[dict] = None, name: Optional[str] = None) -> list:
    """``ros2 run autolabel_ros <executable> --ros-args ...``."""
    cmd = ['ros2', 'run', 'autolabel_ros', executable, '--ros-args']
    if name:
        cmd += ['-r', f'__node:={name}']
    for f in params_files:
        cmd += ['--params-file', str(f)]
    for k, v in (params or {}).items():
        cmd += ['-p', f'{k}:={_param_text(v)}']
    for k, v in (remaps or {}).items():
        cmd += ['-r', f'{k}:={v}']
    return cmd


def _param_text(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, str):
        return v if v else "''"
    return repr(v)


class Peer:
    """The test's own rclpy node, spun on a background thread: publishers, subscriptions that keep
    every message, service calls."""

    def __init__(self, name: str = 'autolabel_test_peer'):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:   # context shut down at close
            pass

    def subscribe(self, msg_type, topic: str, qos=10):
        self.received.setdefault(topic, [])

        def keep(msg, topic=topic):
            with self._lock:
                self.received[topic].append(msg)

        return self.node.create_subscription(msg_type, topic, keep, qos)

    def messages(self, topic: str) -> list:
        with self._lock:
            return list(self.received.get(topic, []))

    def wait_for(self, predicate, timeout: float, what: str = 'condition', poll: float = 0.1):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise AssertionError(f'timed out after {timeout} s waiting for {what}')

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f'service {name} not available')
            future = client.call_async(request)
            end = time.monotonic() + timeout
            while not future.done() and time.monotonic() < end:
                time.sleep(0.05)
            if not future.done():
                raise AssertionError(f'service {name}: no answer in {timeout} s')
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def python_of_script(path: Path) -> str:
    """The interpreter in a script's shebang line."""
    first = Path(path).read_text(errors='replace').splitlines()[0]
    return first[2:].strip() if first.startswith('#!') else sys.executable
