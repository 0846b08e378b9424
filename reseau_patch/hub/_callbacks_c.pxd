# Cython typing for reseau_patch/hub/callbacks.py, compiled as reseau_patch.hub._callbacks_c
# (setup.py). C calls into the compiled io loop types: see io/accel.py (all twins or none).
cimport cython
from reseau_patch.io._event_loop_c cimport EventLoop, Handle as CHandle, Hook as CHook


@cython.final
cdef class callback:
    cdef public object callback
    cdef public object args


@cython.final
cdef class CallbackQueue:
    cdef object __weakref__
    cdef object _loop
    cdef EventLoop _ev
    cdef object _queue
    cdef object _append
    cdef bint _scheduled
    cdef object _drain_cb
    cdef CHandle _handle
    cdef CHook _prepare

    cpdef _schedule(self)
    @cython.locals(cb=callback, countdown=int, deadline=double, now=double)
    cpdef _drain(self)
