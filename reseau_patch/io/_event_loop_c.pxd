# Cython typing for reseau_patch/io/event_loop.py, compiled as reseau_patch.io._event_loop_c
# (setup.py). The .py stays the source of truth and runs unchanged as pure Python.
# Final classes: nothing subclasses them, so cpdef methods are plain C calls inside the
# module. EventLoop keeps a __dict__ (channel.py hangs its message pool on the loop; tests
# shadow methods per instance) and a __weakref__ (hub/exit_parking.py tracks loops).
cimport cython
from reseau_patch.io._poller_c cimport Poller, _clock


# time.monotonic() without a call into Python (event_loop.py binds its pure twin through
# locals(), which Cython does not see).
cdef inline double _monotonic() noexcept nogil:
    return _clock()


@cython.final
cdef class LoopStats:
    cdef public Py_ssize_t ticks
    cdef public Py_ssize_t callbacks_run
    cdef public Py_ssize_t timers_fired
    cdef public Py_ssize_t io_events
    cdef public Py_ssize_t wakeups
    cdef public double tick_latency_last
    cdef public double tick_latency_max
    cdef public double tick_latency_total
    cdef public dict extra


@cython.final
cdef class Handle:
    cdef public object fn
    cdef public tuple args
    cdef public bint cancelled


@cython.final
cdef class TimerHandle:
    cdef public double when
    cdef public object fn
    cdef public tuple args
    cdef public bint cancelled
    cdef public bint ref
    cdef public EventLoop _loop
    cdef public Py_ssize_t _seq
    cdef public bint _armed


@cython.final
cdef class IOWatcher:
    cdef public EventLoop loop
    cdef public int fd
    cdef public int events
    cdef public object callback
    cdef public int priority
    cdef public bint ref
    cdef public bint active

    @cython.locals(loop=EventLoop, entry=_FdEntry)
    cpdef start(self, callback, bint rearm=*)
    @cython.locals(loop=EventLoop, entry=_FdEntry)
    cpdef stop(self)


@cython.final
cdef class Hook:
    cdef public EventLoop loop
    cdef public str kind
    cdef public object callback
    cdef public bint ref
    cdef public bint active
    cdef public int priority

    cpdef start(self, callback)
    cpdef stop(self)


@cython.final
cdef class _FdEntry:
    cdef public list watchers
    cdef public int mask
    cdef public object parked_by


@cython.final
cdef class EventLoop:
    cdef dict __dict__
    cdef object __weakref__
    cdef public bint _lazy
    cdef public set _parked
    cdef public set _stale
    cdef public Poller _poller
    cdef public object _owner
    cdef public bint _running
    cdef public bint _stopping
    cdef public bint _closed
    cdef public double _now
    cdef public list _queues
    cdef public Py_ssize_t _queued
    cdef public list _timers
    cdef public Py_ssize_t _timer_seq
    cdef public Py_ssize_t _timers_dead
    cdef public dict _fds
    cdef public bint _io_priorities
    cdef public list _prepare_hooks
    cdef public list _check_hooks
    cdef public list _idle_hooks
    cdef public Py_ssize_t _refs
    cdef public LoopStats stats
    cdef public object error_handler
    cdef public object _posted
    cdef public int _wake_r

    @cython.locals(entry=_FdEntry, mask=int)
    cpdef _io_start(self, IOWatcher w, bint rearm=*)
    @cython.locals(entry=_FdEntry, mask=int)
    cpdef _io_stop(self, IOWatcher w)
    @cython.locals(stats=LoopStats, start=double, lat=double, did=bint, fired=Py_ssize_t,
                   fd=int, bits=int)
    cpdef _tick(self, bint block)
    @cython.locals(entry=_FdEntry, w=IOWatcher)
    cpdef _dispatch_one(self, int fd, int bits)
    cpdef _dispatch_io(self, list events)
    cpdef _run_snapshot(self)
    cpdef double _poll_timeout(self, bint block) except? -2.0
    cpdef _run_ticks(self, bint once, bint nowait, bint forever)
    cpdef _call(self, fn, tuple args)
