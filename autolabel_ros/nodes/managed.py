"""The lifecycle (managed) base of both nodes, the way perception packages do it.

- constructor: parameters declared and validated (a bad value ends the process: one FATAL line, exit 2);
- configure: models loaded, output publishers (LifecyclePublisher) created, worker thread started and
  the warm-up run on it (`warm_up`);
- activate: input subscriptions and timers created, publishers enabled;
- deactivate: input subscriptions and timers destroyed, publishers disabled;
- cleanup: worker stopped, publishers and models released;
- shutdown: whatever is still held is released.

With the ``autostart`` parameter (default true) the node takes itself to active at startup, so a
plain ``ros2 run`` behaves like a plain node; with false it waits for ``ros2 lifecycle set`` or a
lifecycle manager. Worker-thread publishing goes through :meth:`publish`, which never touches a
publisher once the node is closing (Ctrl-C while a fit runs).
"""
from __future__ import annotations

import threading
import time
import traceback
import weakref
from typing import Callable, Optional

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from autolabel_ros.core.memory import release_free_memory, settle_malloc_thresholds
from autolabel_ros.nodes import log_bridge
from autolabel_ros.nodes.common import (StartupError, declare_parameters, rclpy_factory, stop_worker,
                                        worker_loop)
from autolabel_ros.nodes.params import unknown_parameters, validate_parameters
from autolabel_ros.nodes.runtime import FrameQueue, LatencyStats, topic_type_problem

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class WarmUpJob:
    """The configure-time warm-up as an item of the frame queue: the worker thread runs it, so the
    allocator arena that thread will use for real frames grows to their size before the node is
    ready (run on the main thread, the worker's first real frames still added ~60 MiB)."""

    def __init__(self, run: Callable[[], None]):
        self._run = run
        self.done = threading.Event()
        self.seconds = 0.0

    def __call__(self):
        t0 = time.perf_counter()
        try:
            self._run()
        finally:
            self.seconds = time.perf_counter() - t0
            self.done.set()


class ManagedNode(LifecycleNode):
    """Subclasses implement load_models / create_outputs / create_inputs / destroy_inputs / process_item
    (rclpy.Node owns the names handle, timers, publishers, subscriptions, ...: not used here)."""

    worker_what = 'item'     # what one work item is, in the worker's error lines

    def __init__(self, name: str, specs, **kwargs):
        super().__init__(name, **kwargs)
        logger = self.get_logger()
        # the pipeline's Python warnings (dropped prompts, ...) as this node's log lines
        self._detach_log = log_bridge.attach(lambda sev, text: getattr(logger, sev)(text),
                                             int(logger.get_effective_level()))
        values = declare_parameters(self, specs)
        self.cfg, self.settings = validate_parameters(values, specs, self.get_name())
        unknown = unknown_parameters(getattr(self, '_parameter_overrides', {}))    # rclpy's overrides
        if unknown:
            logger.warning(f'ignored: parameter(s) that no autolabel_ros node declares: {", ".join(unknown)}')
        if self.settings.release_memory:
            settle_malloc_thresholds()   # before the models load and the warm-up runs: see core/memory.py
        self.factory = rclpy_factory()
        self.slot: Optional[FrameQueue] = None
        self.stats = LatencyStats()
        self.worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        # workers a cleanup stopped: one still finishing a long fit must not publish that old frame on
        # the publishers of the next configure
        self._retired: weakref.WeakSet = weakref.WeakSet()
        self._publish_lock = threading.Lock()
        self._closing = False
        self._configure_error: Optional[str] = None
        self._autostarting = False
        self._active = False
        self._qos_wait = None
        self.input_timers: list = []    # create_inputs lists its timers here; _drop_inputs destroys them

    # ------------------------------------------------------------------ subclass hooks
    def load_models(self):
        """Build the models (may take seconds); raise StartupError with a how-to-fix text."""

    def create_outputs(self):
        """Create the lifecycle publishers."""

    def destroy_outputs(self):
        """Destroy the lifecycle publishers."""

    def release_models(self):
        """Drop the models."""

    def create_inputs(self):
        """Create subscriptions, and timers (listed in ``self.input_timers``)."""

    def destroy_inputs(self):
        """Destroy the subscriptions (the base class destroys ``self.input_timers`` after it)."""

    def process_item(self, item):
        """Process one item of the frame queue (worker thread)."""

    def warm_up(self):
        """One synthetic item through the models and the output messages (worker thread, at configure;
        a failure is only logged by the subclass)."""

    def report_ready(self, warm_up_s: Optional[float]):
        """The 'ready' log line, after the warm-up (None: warm_up is off)."""

    def _handle_item(self, item):
        if isinstance(item, WarmUpJob):
            item()     # not trimmed: what the warm-up frame used stays, as the working size of a busy frame
            return
        try:
            self.process_item(item)
        finally:
            if self.settings.release_memory:
                release_free_memory()

    # ------------------------------------------------------------------ state
    @property
    def state_label(self) -> str:
        return self._state_machine.current_state[1]

    def autostart(self):
        """configure + activate now; a failure is a StartupError (one FATAL line, exit 2)."""
        self._autostarting = True        # the failure is the FATAL line: on_configure does not log it too
        try:
            self.trigger_configure()
        finally:
            self._autostarting = False
        if self.state_label != 'inactive':
            raise StartupError(self._configure_error or f'{self.get_name()}: configure failed')
        self.trigger_activate()
        if self.state_label != 'active':
            raise StartupError(f'{self.get_name()}: activate failed')

    def subscribe_when_published(self, topics: list[str], subscribe: Callable[[dict], None],
                                 types: Optional[dict] = None):
        """Call ``subscribe({topic: 'reliable' | 'best_effort'})`` with the ``reliability`` parameter,
        or, when it is 'auto', once every topic has a publisher: reliable where all its publishers are
        reliable (a reliable link retransmits lost fragments of multi-MB clouds; rosbag2 and sensor
        drivers differ), best effort otherwise (the only choice that matches a best-effort publisher).
        ``types`` (topic -> 'pkg/msg/Type'): a topic published with another type is one warning."""
        from autolabel_ros.nodes.common import publishers_reliability, steady_timer

        def check_types():
            for topic, expected in (types or {}).items():
                published = [i.topic_type for i in self.get_publishers_info_by_topic(topic)]
                problem = topic_type_problem(topic, published, expected)
                if problem:
                    self.get_logger().warning(problem)

        if self.settings.reliability != 'auto':
            subscribe({t: self.settings.reliability for t in topics})
            check_types()         # the publishers that exist now (a later one: the watchdog's counts)
            return

        def attempt() -> bool:
            choice = {t: publishers_reliability(self, t) for t in topics}
            if any(v is None for v in choice.values()):
                return False
            self._cancel_qos_wait()
            subscribe(choice)
            check_types()
            return True

        if not attempt():
            self.get_logger().info(f'reliability auto: waiting for a publisher on each of '
                                   f'{", ".join(topics)} to match its QoS')
            self._qos_wait = steady_timer(self, 0.5, attempt)

    def _cancel_qos_wait(self):
        if self._qos_wait is not None:
            self.destroy_timer(self._qos_wait)
            self._qos_wait = None

    def has_subscribers(self, publisher) -> bool:
        """Whether anyone listens (false once the node is closing: the context may be gone)."""
        with self._publish_lock:
            return not self._closing and publisher is not None and publisher.get_subscription_count() > 0

    def publish(self, publisher, msg) -> bool:
        """Publish from the worker thread unless the node is closing (publishers may be destroyed)."""
        with self._publish_lock:
            if self._closing or publisher is None or self._stale_worker():
                return False
            publisher.publish(msg)
            return True

    def _stale_worker(self) -> bool:
        """Whether the calling thread is a worker an earlier cleanup stopped."""
        return threading.current_thread() in self._retired

    # ------------------------------------------------------------------ transitions
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.load_models()
            self.create_outputs()
        except Exception as e:   # StartupError, DeviceError, missing weights: stay unconfigured
            self._configure_error = str(e) if isinstance(e, StartupError) else \
                f'{self.get_name()}: cannot load the models: {type(e).__name__}: {e}'
            if not self._autostarting:
                self.get_logger().error(self._configure_error)
            self._release()
            return FAILURE
        self.slot = FrameQueue(self.settings.pending_frames)
        # a new event per worker: a worker that cleanup left finishing a long fit must still see its
        # own stop (a shared event cleared here kept it looping on its closed queue at 100 % CPU)
        self._stop = threading.Event()
        self.worker = threading.Thread(target=worker_loop, name=f'{self.get_name()}_worker', daemon=True,
                                       args=(self._stop, self.slot, self._handle_item, self.get_logger(),
                                             self.worker_what))
        self.worker.start()
        warm_up_s = None
        if self.settings.warm_up:
            job = WarmUpJob(self.warm_up)
            self.slot.put(job)
            job.done.wait()
            warm_up_s = job.seconds
        self.report_ready(warm_up_s)
        return SUCCESS

    def _logged(self, transition: str, body) -> TransitionCallbackReturn:
        """rclpy turns an exception in a transition into ERROR without a word: say what failed."""
        try:
            return body()
        except Exception:
            self.get_logger().error(f'{transition} failed:\n{traceback.format_exc()}')
            return TransitionCallbackReturn.ERROR

    def on_activate(self, state) -> TransitionCallbackReturn:
        def body():
            self.create_inputs()
            self._active = True
            return LifecycleNode.on_activate(self, state)      # enables the lifecycle publishers
        return self._logged('activate', body)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        def body():
            self._active = False
            self._drop_inputs()
            return LifecycleNode.on_deactivate(self, state)
        return self._logged('deactivate', body)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        def body():
            self._release()
            return LifecycleNode.on_cleanup(self, state)
        return self._logged('cleanup', body)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        def body():
            if self._active:
                self._active = False
                self._drop_inputs()
            self._release()
            return SUCCESS
        return self._logged('shutdown', body)

    def _drop_inputs(self):
        """Undo create_inputs: a pending QoS wait, the subclass's subscriptions, then its timers."""
        self._cancel_qos_wait()
        self.destroy_inputs()
        for t in self.input_timers:
            self.destroy_timer(t)
        self.input_timers = []

    def _release(self):
        if self.worker is not None:
            self._retired.add(self.worker)
            stop_worker(self._stop, self.slot, self.worker, timeout=2.0)
            self.worker = None
        with self._publish_lock:
            self.destroy_outputs()
        self.release_models()

    def destroy_node(self):
        super().destroy_node()
        # rclpy's LifecycleNode (Jazzy) leaves its state machine, whose handle keeps the rcl node and
        # with it the /rosout publisher alive: a line logged after the node (shut-down context) then
        # printed "Failed to publish log message to rosout"
        self._state_machine.destroy_when_not_in_use()

    def close(self) -> tuple[bool, str]:
        """Process end (Ctrl-C, shutdown): no publish from now on, the worker is told to stop (a fit in
        progress finishes on its daemon thread and finds the node closing). Returns whether the worker
        has ended (within 3 s: ros2 launch escalates to SIGTERM after 5) and the last statistics line,
        which run_node logs once the node is destroyed: after a Ctrl-C rclpy has shut the context
        down, and a line logged while the node exists fails to reach /rosout with an rcl error line."""
        with self._publish_lock:
            self._closing = True
        self._detach_log()
        ended = True
        if self.worker is not None:
            stop_worker(self._stop, self.slot, self.worker, timeout=3.0)
            ended = not self.worker.is_alive()
        final = ''
        if self.slot is not None:
            monitor = getattr(self, 'monitor', None)
            final = (f'final: {self.stats.frames} frames processed, {self.slot.dropped} dropped by the frame '
                     f'queue' + (f'; {monitor.received()}' if monitor else ''))
        return ended, final
