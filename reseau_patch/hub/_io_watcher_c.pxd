# Cython typing for reseau_patch/hub/io_watcher.py, compiled as reseau_patch.hub._io_watcher_c
# (setup.py). Calls into the io watcher are C calls: this extension needs the compiled
# reseau_patch.io._event_loop_c, which is why io/accel.py swaps all hot modules or none.
cimport cython
from reseau_patch.io._event_loop_c cimport IOWatcher as CIOWatcher


@cython.final
cdef class IoWatcher:
    cdef object __weakref__
    cdef public object loop
    cdef public bint _ref
    cdef public object _priority
    cdef public bint _active
    cdef public object _callback
    cdef public object _args
    cdef public CIOWatcher _w
    cdef public bint _fresh

    cpdef stop(self)
    cpdef _on_ready(self, int revents)
