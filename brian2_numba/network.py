"""``Network.run`` as one compiled loop: Brian's schedule without Python in between.

Brian's runtime loop calls one code object at a time from Python, about 1 µs
each per time step. With ``prefs.codegen.runtime.numba.fused`` (the default)
this module takes over ``Network.run`` for the runtime device (Brian's hook
``device_override('network_run')``) and, after Brian's own ``before_run``,
runs the time steps in a generated numba function (template
``network_run.py_``) that calls the same kernels in the same order and
advances the clocks exactly as Brian does. It returns to Python

* after a chunk of steps (about 50 ms), for reports, Brian's maximum run
  time and Ctrl-C, which therefore stop within a chunk, at the end of a time
  step, with ``after_run`` done, so a later ``run()`` continues from there;
* where a network operation is due (it runs, then the loop resumes with the
  next object of the same step), and where a kernel finds a structure (a
  monitor's buffer, a spike queue slot) full.

Everything before and after the loop is Brian's: ``before_run`` and
``after_run`` of the network, and the bookkeeping of ``Network.run`` (time,
reports, ``_last_run_time``, the check for invalid states). A network that
cannot be fused (a code object of another target, an event-driven clock, an
object with its own ``run`` method, ``profile=True``) runs Brian's own loop,
with one INFO line that says why.
"""

import gc
import sys
import time
import weakref

import numpy as np
from brian2.core.base import BrianObject, BrianObjectException
from brian2.core.clocks import Clock
from brian2.core.namespace import get_local_namespace
from brian2.core.network import Network, TextReport
from brian2.core.operations import NetworkOperation
from brian2.core.preferences import prefs
from brian2.devices.device import get_device, runtime_device
from brian2.groups.group import Group
from brian2.units import second
from brian2.units.fundamentalunits import check_units
from brian2.utils.logger import get_logger
from numba.core.dispatcher import Dispatcher
from numba.core.errors import NumbaError

from . import compat, threads, warm_up
from .cache import load_module, loop_kernel
from .codeobject import NumbaCodeObject
from .collector import full_collections_postponed
from .kernel_calls import (
    CALL_CONVENTION,
    CHUNK_DONE,
    ENTRY,
    FINISHED,
    NEEDED,
    PYTHON_ENTRY,
    RESUME,
    STATE_WORDS,
    STRUCTURE_FULL,
    WARM,
    WHY,
    KernelAddressError,
    address_of,
    entry_point,
    pack,
)
from .njit_lines import numba_decorator
from .structures.in_place import resize_count
from .templating import tidy

__all__ = ["install", "network_run", "network_before_run"]

logger = get_logger(__name__)

#: wall time the loop may run before it returns to Python
CHUNK_SECONDS = 0.05


class _Entry:
    """One item of the schedule: a kernel, or something Python runs."""

    __slots__ = ("index", "clock", "codeobj", "compiled", "obj", "args", "packed")

    def __init__(self, index, clock, obj, codeobj=None):
        self.index = index
        self.clock = clock
        self.obj = obj
        self.codeobj = codeobj
        self.compiled = codeobj.compiled_code.get("run") if codeobj is not None else None
        #: the argument tuple the loop calls the kernel with (kept alive while
        #: it runs: a packed block points into its arrays)
        self.args = self.compiled.args if self.compiled is not None else None
        #: (block, type reference) of kernel_calls.pack, or None
        self.packed = pack(self.args) if self.compiled is not None else None

    @property
    def module(self):
        return self.compiled.main.__module__ if self.codeobj is not None else None

    @property
    def template(self):
        return self.codeobj.template_name if self.codeobj is not None else "network_operation"

    @property
    def events(self):
        """The eventspace array without whose events the kernel does nothing, or None."""
        return self.compiled.events if self.compiled is not None else None

    @property
    def make_room(self):
        return self.compiled is not None and self.compiled.make_room is not None


def _unfusable_reason(objects):
    """Why these (active) objects cannot run in a compiled loop, or None."""
    for obj in objects:
        if type(obj.clock) is not Clock:
            return f"'{obj.name}' runs on a {type(obj.clock).__name__}, not a Clock"
        if isinstance(obj, NetworkOperation):
            continue
        if type(obj).run is not BrianObject.run:
            return f"'{obj.name}' ({type(obj).__name__}) has a run method of its own"
        codeobj_class = getattr(obj, "codeobj_class", None)
        if codeobj_class is not None and not issubclass(codeobj_class, NumbaCodeObject):
            return f"'{obj.name}' uses code objects of {codeobj_class.__name__}"
    return None


def _schedule(objects, clocks):
    """The entries of the compiled loop, or ``(None, reason)``."""
    entries = []
    for obj in objects:
        clock = clocks.index(obj.clock)
        if isinstance(obj, NetworkOperation):
            entries.append(_Entry(len(entries), clock, obj))
            continue
        for codeobj in compat.code_objects(obj):
            if not isinstance(codeobj, NumbaCodeObject):
                return None, f"'{codeobj.name}' of '{obj.name}' is a {type(codeobj).__name__}"
            compiled = codeobj.compiled_code.get("run")
            if compiled is None:
                continue
            if not isinstance(compiled.main, Dispatcher) or codeobj.nonconstant_values:
                return None, f"'{codeobj.name}' of '{obj.name}' is not a plain kernel"
            entries.append(_Entry(len(entries), clock, obj, codeobj))
    return entries, None


def _loop_module(entries, n_clocks):
    """The generated, cached loop for this schedule."""
    template = NumbaCodeObject.templater.env.get_template("network_run.py_")
    source = template.render(
        entries=entries,
        clocks=list(range(n_clocks)),
        decorator=numba_decorator(),
        call_convention=CALL_CONVENTION,
        line_bytes=warm_up.LINE_BYTES,
        words={"RESUME": RESUME, "WHY": WHY, "ENTRY": ENTRY, "WARM": WARM},
        codes={"FINISHED": FINISHED, "CHUNK_DONE": CHUNK_DONE},
        version=NumbaCodeObject.templater.env.globals["version"],
    )
    return load_module(tidy(source))


class _FusedLoop:
    """Runs the time steps of one ``run()`` through the compiled loop."""

    def __init__(self, net, entries, clocks):
        self.net = net
        self.entries = entries
        self.clocks = clocks
        self.module = _loop_module(entries, len(clocks))
        compat.set_loop_file(net, self.module.__file__)
        self.state = np.zeros(STATE_WORDS, dtype=np.int64)
        #: an entry waits for Python (the loop returned in the middle of a step)
        self.pending = False
        #: Python ran an entry: the step goes on at state[RESUME]
        self.mid_step = False
        #: (entry, time step) of the last make_room: a kernel still full after
        #: it would loop forever
        self.made_room = None
        clock_args = []
        for clock in clocks:
            clock_args += [clock.variables["timestep"].get_value(),
                           clock.variables["t"].get_value(),
                           float(clock.dt_), int(compat.clock_end(clock))]
        self.addresses = np.zeros(len(entries), dtype=np.uintp)  # filled by compile()
        blocks = np.zeros(len(entries), dtype=np.uintp)
        for entry in entries:
            if entry.packed is not None:
                blocks[entry.index] = entry.packed[0].ctypes.data
        self.packed_at = resize_count()
        #: the memory the first call of run() reads into the caches
        self.warm_regions = warm_up.regions(
            (entry.args for entry in entries if entry.args is not None),
            streams=_appended_arrays(entries))
        self.args = (float(Clock.epsilon_dt), self.addresses, blocks, self.warm_regions,
                     *clock_args,
                     *(entry.events for entry in entries if entry.events is not None),
                     *(entry.args if entry.packed is None else entry.packed[1]
                       for entry in entries if entry.codeobj is not None))
        self.max_steps = 16
        self.main = self.module.main  # until compile() finds the compiled entry
        self.compiling = None

    def compile(self):
        """Compile (or load) the kernels, then the loop, without running a step.

        ``self.compiling`` is the entry whose kernel is being compiled, or
        None for the loop itself: what an error was about.
        """
        for entry in self.entries:  # one by one, as in Brian's loop
            if entry.codeobj is not None:
                self.compiling = entry
                types = (entry.packed[1].instance_type.types if entry.packed is not None
                         else None)
                self.addresses[entry.index] = address_of(loop_kernel(entry.compiled.main),
                                                         entry.args, types)
        self.compiling = None
        self.module.main(self.state, 0, *self.args)
        # the chunks call the compiled loop without dispatching on the arguments
        self.main = entry_point(self.module.main, (self.state, 0, *self.args))

    def _repack(self):
        """Pack the arguments again: a structure moved an array's data (see in_place)."""
        for entry in self.entries:
            if entry.packed is not None:
                entry.packed[0][:] = pack(entry.args)[0]
        self.packed_at = resize_count()

    def _call(self, max_steps):
        if resize_count() != self.packed_at:
            self._repack()
        try:
            self.main(self.state, max_steps, *self.args)
        except NumbaError as exc:
            raise BrianObjectException(
                f"numba could not compile the simulation loop ({self.module.__file__}).",
                self.net,
            ) from exc
        except Exception as exc:
            entry = self.entries[int(self.state[ENTRY])]
            codeobj = entry.codeobj
            raise BrianObjectException(
                "An exception occurred during the execution of the 'run' block of code "
                f"object '{codeobj.name}' (generated code: {entry.compiled.path}), in "
                f"the compiled loop ({self.module.__file__}).",
                codeobj.owner,
            ) from exc
        self.mid_step = False
        # in the middle of a step: an entry waits for Python
        self.pending = self.state[WHY] in (PYTHON_ENTRY, STRUCTURE_FULL)

    def _handle(self):
        """Run the entry the loop left to Python; False if there is none.

        The state says where the step goes on before Python runs anything, so
        that it does even if Python is interrupted (Ctrl-C).
        """
        if not self.pending:
            return False
        entry = self.entries[int(self.state[ENTRY])]
        self.pending = False
        self.mid_step = True
        if entry.codeobj is None:  # a network operation; the loop goes on after it
            self.state[RESUME] = entry.index + 1
            self.net.t_ = _earliest_time(self.clocks)
            entry.obj.run()
        else:  # a structure is full: make room, and the loop runs the kernel again
            self.state[RESUME] = entry.index
            self._make_room(entry)
        return True

    def _make_room(self, entry):
        """Grow the structure that ``entry``'s kernel found full, in Python.

        The kernel is never called from Python here: the loop calls a variant
        of it that cannot be (:func:`brian2_numba.cache.loop_kernel`).
        """
        codeobj, compiled = entry.codeobj, entry.compiled
        needed = int(self.state[NEEDED])
        clock = self.clocks[entry.clock]
        step = (entry.index, int(clock.variables["timestep"].get_value()[0]))
        where = f"code object '{codeobj.name}' (generated code: {compiled.path})"
        if self.made_room == step:
            raise BrianObjectException(
                f"The kernel of {where} still found a structure full after room was "
                f"made for {needed} (in the compiled loop, {self.module.__file__}).",
                codeobj.owner)
        try:
            compiled.make_room(needed, *compiled.make_room_args)
        except Exception as exc:
            raise BrianObjectException(
                f"An exception occurred while making room for the kernel of {where}.",
                codeobj.owner) from exc
        self.made_room = step

    def finish_step(self):
        """Complete the time step in progress (after stop() or Ctrl-C)."""
        while self.pending or self.mid_step:
            if not self._handle():
                self._call(1)

    def run(self, report_due, stopped):
        """Run to the end, or until ``stopped()``; ``report_due()`` between chunks."""
        # the regions are this run's addresses: read them unless an array moved
        # (nothing runs between __init__ and here, so none did)
        self.state[WARM] = int(resize_count() == self.packed_at)
        while True:
            start = time.perf_counter()
            self._call(self.max_steps)
            while self._handle():
                if stopped():
                    self.finish_step()
                    return
                self._call(self.max_steps)
            if self.state[WHY] == FINISHED:
                return
            elapsed = time.perf_counter() - start
            if elapsed < CHUNK_SECONDS / 2 and self.max_steps < 1 << 30:
                self.max_steps *= 2
            elif elapsed > 2 * CHUNK_SECONDS and self.max_steps > 1:
                self.max_steps //= 2
            report_due()
            if stopped():
                return


def _appended_arrays(entries):
    """The monitors' pending buffers among the entries' arguments (not warmed)."""
    for entry in entries:
        pending = entry.codeobj.namespace.get("_pending") if entry.codeobj else None
        if pending is not None:
            yield from pending.arrays


def _clock_time(clock):
    return clock.variables["t"].get_value().item()


def _earliest_time(clocks):
    """The time of the clock Brian's ``Network._nextclocks`` would pick first."""
    return min(_clock_time(clock) for clock in clocks)


#: Brian's tracked objects (weak references) at the end of the last fused
#: run(), or None
_tracked_after_run = None


def _collect_garbage():
    """Brian's ``gc.collect()`` at the start of ``run()``, where it can show.

    A collection (milliseconds) does two things a user sees: objects never
    included in a network warn as they go, and garbage objects free their
    names, so that objects created later get the names (and the cached
    kernels, whose arguments carry them) they would get on Brian's loop. It
    is skipped only when neither can happen: no object would warn, and no
    named object was created since the end of the last fused run (the
    objects and code objects of repeated runs of one network).
    """
    if not compat.warns_for_unused_objects():
        return  # Brian's own loop does not collect either
    if (_tracked_after_run is None or compat.tracked_objects() - _tracked_after_run
            or compat.an_object_would_warn_when_collected()):
        gc.collect()


def _note_tracked_objects():
    global _tracked_after_run
    _tracked_after_run = compat.tracked_objects()


def _report_callback(report):
    if report == "text" or report == "stdout":
        return TextReport(sys.stdout)
    if report == "stderr":
        return TextReport(sys.stderr)
    if isinstance(report, str):
        raise ValueError(f'Do not know how to handle report argument "{report}".')
    if callable(report):
        return report
    raise TypeError(
        "Do not know how to handle report argument, it has to be one of 'text', "
        "'stdout', 'stderr', or a callable function/object, but it is of type "
        f"{type(report)}"
    )


_last_network = None
#: (network, duration) of the run on 'numba' whose cost the advisor
#: estimates once its code objects exist (see network_before_run)
_advice_request = None


def last_network():
    """The network that ran last through :func:`network_run`, or None (a weak reference)."""
    return _last_network() if _last_network is not None else None


@check_units(duration=second, report_period=second)
def network_run(net, duration, report=None, report_period=10 * second, namespace=None,
                profile=None, level=0):
    """``Network.run`` for the runtime device (see the module docstring)."""
    global _last_network, _advice_request
    _last_network = weakref.ref(net)
    device = get_device()
    if profile is None:
        profile = device.build_options.get("profile", False)
    target = prefs.codegen.target
    on_numba = target == "numba" or (isinstance(target, type)
                                      and issubclass(target, NumbaCodeObject))
    _advice_request = None
    if on_numba:
        with threads.run_lock():
            threads.apply_thread_count()
            return _network_run(net, duration, report, report_period, namespace,
                                profile, level + 1)
    return Network.run.original_function(
        net, duration, report=report, report_period=report_period,
        namespace=namespace, profile=profile, level=level + 2)


def _network_run(net, duration, report, report_period, namespace, profile, level):
    """The fused loop if it can run this network, else Brian's loop."""
    global _advice_request
    reason = None
    if not prefs["codegen.runtime.numba.fused"]:
        pass
    elif profile:
        reason = "profile=True measures each code object in Brian's loop"
    else:
        reason = _unfusable_reason([obj for obj in net.sorted_objects if obj.active])
        if reason is None:
            _advice_request = (weakref.ref(net), duration, True)
            return _run_fused(net, duration, report, report_period, namespace, level + 1)
    if reason:
        logger.info(f"Network '{net.name}' runs Brian's loop: {reason}.",
                    name_suffix="not_fused")
    _advice_request = (weakref.ref(net), duration, False)
    return Network.run.original_function(
        net, duration, report=report, report_period=report_period,
        namespace=namespace, profile=profile, level=level + 2)


def _run_fused(net, duration, report, report_period, namespace, level):
    """Brian's ``Network.run``, with the loop compiled."""
    _collect_garbage()
    device = get_device()
    all_objects = net.sorted_objects
    clocks = sorted({obj.clock for obj in all_objects}, key=lambda clock: clock.name)
    compat.set_network_clocks(net, clocks)
    t_start = net.t
    t_end = net.t + duration
    for clock in clocks:
        clock.set_interval(net.t, t_end)
    if namespace is None:
        namespace = get_local_namespace(level=level + 3)
    net.before_run(namespace)
    if len(all_objects) == 0:
        return

    active = [obj for obj in all_objects if obj.active]
    entries, reason = _schedule(active, clocks)
    if entries is None:  # only known after the code objects exist
        logger.info(f"Network '{net.name}' runs its objects one by one: {reason}.",
                    name_suffix="not_fused")
        entries = [_Entry(n, clocks.index(obj.clock), obj) for n, obj in enumerate(active)]
    loop = _FusedLoop(net, entries, clocks)
    try:
        with full_collections_postponed():
            loop.compile()
    except (NumbaError, KernelAddressError) as exc:  # never worse than Brian's loop
        what = ("its loop" if loop.compiling is None
                else f"the kernel of '{loop.compiling.codeobj.name}'")
        logger.info(f"Network '{net.name}' runs its objects one by one: numba could not "
                    f"compile {what} ({type(exc).__name__}: {str(exc)[:300]}).",
                    name_suffix="not_fused")
        entries = [_Entry(n, clocks.index(obj.clock), obj) for n, obj in enumerate(active)]
        loop = _FusedLoop(net, entries, clocks)

    start_time = time.time()
    if report is not None:
        report_period = float(report_period)
        next_report = [start_time + report_period]
        callback = _report_callback(report)
        callback(0 * second, 0.0, t_start, duration)

    def report_due():
        if report is not None:
            current = time.time()
            if current > next_report[0]:
                net.t_ = _earliest_time(clocks)
                callback((current - start_time) * second,
                         (net.t_ - float(t_start)) / float(t_end - t_start),
                         t_start, duration)
                next_report[0] = current + report_period

    maximum = compat.maximum_run_time(device)

    def stopped():
        if maximum is not None and time.time() - start_time > float(maximum):
            compat.stop_network(net)
        return compat.network_stopped(net)

    interrupted = None
    compat.set_globally_running(True)
    try:
        loop.run(report_due, stopped)
    except KeyboardInterrupt as exc:  # stop at the end of a step, then re-raise
        interrupted = exc
        compat.stop_network(net)
        loop.finish_step()
    finally:
        compat.set_globally_running(False)
    end_time = time.time()

    if compat.network_stopped(net):
        net.t_ = _earliest_time(clocks)
    else:
        net.t_ = float(t_end)
    completed = (net.t - t_start) / duration if duration > 0 else 1.0
    compat.set_last_run(device, end_time - start_time, completed)
    for obj in all_objects:
        if isinstance(obj, Group):
            compat.check_for_invalid_states(obj)
    if report is not None:
        callback((end_time - start_time) * second, completed, t_start, duration)
    net.after_run()
    compat.clear_profiling_info(net)
    _note_tracked_objects()
    if interrupted is not None:
        raise interrupted


def network_before_run(net, run_namespace):
    """``Network.before_run``, then the cost advisor's estimate for a run on 'numba'.

    After Brian's ``before_run`` the code objects exist (their kernels not yet
    compiled or loaded), so the advisor sees the kernels' cache state.
    """
    global _advice_request
    with full_collections_postponed():  # (Brian generates every code object here)
        Network.before_run.original_function(net, run_namespace)
    request, _advice_request = _advice_request, None
    if request is not None and request[0]() is net:
        from .advisor import advise_run  # (imported on the first run)

        advise_run(net, request[1], fused=request[2])


def install():
    """Make the runtime device run networks through :func:`network_run`."""
    runtime_device.network_run = network_run
    runtime_device.network_before_run = network_before_run
