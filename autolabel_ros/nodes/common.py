"""rclpy glue shared by the nodes: message factory, parameter declaration, QoS, the lifecycle base,
startup errors and the process main."""
from __future__ import annotations

import importlib
from typing import Sequence

from autolabel_ros.config import ConfigError
from autolabel_ros.io.messages import MessageFactory, class_factory
from autolabel_ros.nodes.params import ParamSpec, refused_value_text


class StartupError(RuntimeError):
    """A node cannot start (bad parameter, missing model, unavailable device); the text says why."""


def rclpy_factory() -> MessageFactory:
    """Builders' factory over the installed ROS message packages: 'sensor_msgs/msg/Image' ->
    ``sensor_msgs.msg.Image``."""

    def resolve(typename: str):
        pkg, kind, name = typename.split('/')
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)

    return class_factory(resolve)


def declare_parameters(node, specs: Sequence[ParamSpec]) -> dict:
    """Declare every parameter (read-only: models and settings are loaded once at startup) with a
    descriptor, and return name -> value. A wrong type or range in the params file becomes a
    ConfigError naming the parameter."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    values = {}
    for s in specs:
        text = s.description
        if s.choices:
            text += f' (one of: {", ".join(s.choices)})'
        desc = ParameterDescriptor(description=text, read_only=True)
        if (s.min is not None or s.max is not None) and not isinstance(s.default, bool):
            lo = s.min if s.min is not None else -1e12
            hi = s.max if s.max is not None else 1e12
            if isinstance(s.default, int):
                desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            elif isinstance(s.default, float):
                desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                                step=0.0)]
        try:
            param = node.declare_parameter(s.name, s.default, desc)
        except Exception as e:   # rclpy's InvalidParameterType/ValueException, in rclpy's words
            given = getattr(node, '_parameter_overrides', {}).get(s.name)       # the value it refused
            why = refused_value_text(s, given.value) if given is not None else None
            raise ConfigError(f'{node.get_name()}: parameter {s.name!r}: ' +
                              (why or f'(default {s.default!r}): {type(e).__name__}: {e}')) from None
        values[s.name] = param.value
    return values


def sensor_qos(reliability: str, depth: int):
    """Sensor subscriptions: best effort (= qos_profile_sensor_data, accepts any publisher) or reliable."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def publishers_reliability(node, topic: str):
    """'reliable' when every publisher of ``topic`` offers reliable delivery, 'best_effort' when one
    does not, None while there is no publisher (the 'auto' reliability waits for one)."""
    from rclpy.qos import ReliabilityPolicy

    infos = node.get_publishers_info_by_topic(topic)
    if not infos:
        return None
    reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    return 'reliable' if reliable else 'best_effort'


def output_qos(depth: int = 5):
    """Outputs are reliable + volatile: RViz and `ros2 topic echo` subscribe with either reliability."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def steady_timer(node, period_s: float, callback):
    """A timer on the steady clock: watchdogs and statistics keep running when ``use_sim_time`` is
    true but no /clock arrives (the case they have to report)."""
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


def ros_type_name(msg_type) -> str:
    """A message class -> its ROS type name as graph queries give it: 'sensor_msgs/msg/Image'."""
    return f'{msg_type.__module__.split(".")[0]}/msg/{msg_type.__name__}'


def image_msg_type(compressed: bool):
    from sensor_msgs.msg import CompressedImage, Image

    return CompressedImage if compressed else Image


def worker_loop(stop_event, slot, handle, logger, what: str) -> None:
    """Body of a node's worker thread: handle the items of its frame queue (oldest first) until stopped
    (the stop event, or the queue closed). One bad item is logged (throttled) and skipped: it must
    never stop the node."""
    while not stop_event.is_set():
        item = slot.get(timeout=0.5)
        if item is None:
            if slot.closed:     # stopped: a closed queue answers at once, this loop would spin
                return
            continue
        try:
            handle(item)
        except Exception as e:
            logger.error(f'{what} skipped: {type(e).__name__}: {e}', throttle_duration_sec=5.0)


class StatsLine:
    """Timer callback of both nodes: the latency statistics line, only when something happened
    since the last one."""

    def __init__(self, node):
        self.node = node
        self.last = (0, 0)

    def __call__(self):
        n = self.node
        now = (n.stats.frames, n.slot.dropped)
        if now != self.last:
            self.last = now
            monitor = getattr(n, 'monitor', None)
            extra = f'; {monitor.received()}' if monitor is not None else ''
            fleet = getattr(n, 'fleet', None)       # the fitter's running fleet length (fit/fleet.py)
            if fleet is not None and fleet.side_on:
                extra += f'; {fleet.summary()}'
            n.get_logger().info(n.stats.summary(n.slot.dropped) + extra)


def stop_worker(stop_event, slot, worker, timeout: float = 5.0) -> None:
    """Shared shutdown of a node's worker thread: signal it, close its frame queue, wait a bounded
    time (a fit in progress may outlast it; the thread is a daemon)."""
    stop_event.set()
    slot.close()
    if worker.is_alive():
        worker.join(timeout=timeout)


def rcl_error_text(e: Exception) -> str:
    """An rcl error without the C source locations it lists (", at /path/arguments.c:415")."""
    import re

    return re.sub(r',? at \S+\.c:\d+', '', str(e)).strip()


def run_node(make_node, args=None) -> int:
    """rclpy.init, build the node, bring it to active when its ``autostart`` parameter says so, spin
    until Ctrl-C / shutdown; startup errors (also the ROS arguments rcl refuses: a params file that
    does not parse, an unknown log level) -> one ``[FATAL]`` line, exit 2. A multi-threaded executor
    keeps TF, clicks and the sensor callbacks served while the worker thread fits."""
    import signal
    import sys

    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.impl.implementation_singleton import rclpy_implementation
    from rclpy.logging import get_logger

    try:
        rclpy.init(args=args)
    except rclpy_implementation.RCLError as e:
        print(f'[FATAL] cannot start ROS: {rcl_error_text(e)}', file=sys.stderr)
        return 2
    node = executor = None
    code = 0
    worker_ended, final = True, ''
    try:
        # built with SIGINT held back: a Ctrl-C inside its constructor left a half-built executor whose
        # __del__ printed "Exception ignored ... no attribute '_sigint_gc'" with a traceback
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            executor = MultiThreadedExecutor(num_threads=2)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        node = make_node()
        if node.settings.autostart:
            node.autostart()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, StartupError) as e:
        print(f'[FATAL] {e}', file=sys.stderr)
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # a second Ctrl-C must not break the cleanup
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)     # its threads release the node's handle
        if node is not None:
            name = node.get_name()
            worker_ended, final = node.close()
            node.destroy_node()
            if final:
                get_logger(name).info(final)     # console only: the node and its /rosout are gone
        rclpy.try_shutdown()
        # rclpy's shutdown restores the SIGINT handler it found at init (the default one): a second
        # Ctrl-C (the terminal's and the one `ros2 launch` forwards) would kill the process now
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not worker_ended:
        # A fit is still running on the daemon worker (torch in C++): interpreter finalization under it
        # can crash, so leave now; nothing is left to publish or save.
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
