# Cython typing for reseau_patch/io/poller.py, compiled as reseau_patch.io._poller_c
# (setup.py). The loop types its poller as Poller, so poll/register/modify/unregister are
# C calls through the vtable. Compiled, EpollPoller.poll waits with epoll_wait(2) itself
# (_epoll_wait below; the .py names its pure twin through locals(), gevent's trick).
cimport cython
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno
from libc cimport errno as c_errno  # not `errno`: the .py imports the errno module
from libc.math cimport ceil
from libc.stdint cimport uint32_t, uint64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP


cdef class Poller:
    cdef public Py_ssize_t ctl_calls

    cpdef register(self, int fd, int events)
    cpdef modify(self, int fd, int events)
    cpdef unregister(self, int fd)
    cpdef list poll(self, double timeout)
    cpdef close(self)


@cython.final
cdef class EpollPoller(Poller):
    cdef readonly object _ep
    cdef readonly int _epfd
    cdef tuple _masks
    cdef readonly dict _bits


@cython.final
cdef class PollPoller(Poller):
    cdef object _p


@cython.locals(table=dict, bits=object)
cpdef list _epoll_wait_py(EpollPoller poller, double timeout)
cpdef int _epoll_ctl_py(EpollPoller poller, int op, int fd, int mask) except -1


# epoll_ctl as select.epoll calls it (data.fd = fd): 0 or the errno; the caller decides.
cdef inline int _epoll_ctl(EpollPoller poller, int op, int fd, int mask) except -1:
    cdef epoll_event ev
    if poller._epfd < 0:
        raise ValueError("I/O operation on closed epoll object")
    ev.events = <uint32_t>mask
    ev.data.u64 = 0
    ev.data.fd = fd
    if epoll_ctl(poller._epfd, op, fd, &ev) < 0:
        return c_errno.errno
    return 0


# time.monotonic() in C, to the bit: CPython 3.11 reads the same clock into int64 ns and
# divides as a double (_PyTime_AsSecondsDouble), so loop times compare with Python's.
cdef inline double _clock() noexcept nogil:
    cdef timespec ts
    cdef long long ns
    clock_gettime(CLOCK_MONOTONIC, &ts)
    ns = <long long>ts.tv_sec * 1000000000 + ts.tv_nsec
    if ns % 1000000000 == 0:
        return <double>(ns // 1000000000)
    return <double>ns / 1e9


# READ=1, WRITE=2, ERROR=4 as in poller.py (_epoll_bits there is the same mapping).
cdef inline int _c_bits(uint32_t ev) noexcept nogil:
    cdef int bits = 0
    if ev & (EPOLLIN | EPOLLRDHUP):
        bits |= 1
    if ev & EPOLLOUT:
        bits |= 2
    if ev & (EPOLLERR | EPOLLHUP):
        bits |= 1 | 2 | 4
    return bits


cdef inline list _epoll_wait(EpollPoller poller, double timeout):
    # 256 = poller.MAX_EVENTS; 2e6 s = poller.MAX_TIMEOUT (a test checks both agree).
    cdef epoll_event evs[256]
    cdef int n, i, ms, err
    cdef double deadline = 0.0
    cdef list out
    if timeout < 0:
        ms = -1
    else:
        if timeout > 2000000.0:
            timeout = 2000000.0
        ms = <int>ceil(timeout * 1000.0)
        if ms > 0:  # only a wait that can block is resumed after EINTR
            deadline = _clock() + timeout
    while True:
        with nogil:
            n = epoll_wait(poller._epfd, evs, 256, ms)
        if n >= 0:
            break
        err = c_errno.errno
        if err != c_errno.EINTR:
            PyErr_SetFromErrno(OSError)
        # PEP 475, as select.epoll.poll: run signal handlers (one that raises ends the
        # wait with its exception), then wait for the time left.
        PyErr_CheckSignals()
        if ms > 0:
            ms = <int>ceil((deadline - _clock()) * 1000.0)
            if ms < 0:
                ms = 0
    out = []
    for i in range(n):
        out.append((evs[i].data.fd, _c_bits(evs[i].events)))
    return out
