"""The channel pipeline: a chain of handler slots between a socket and an application.

Left is the socket, right is the application. Reads travel left → right
(``process_read``), writes right → left (``process_write``).

Contract (the rules every :class:`ChannelHandler` may rely on and must keep):

* **Thread.** Every handler method runs on the channel's loop thread. Only
  :meth:`Channel.shutdown`, :meth:`Channel.schedule_task` and :meth:`Channel.post` may be
  called from other threads; they hop to the loop.
* **Ownership.** ``process_read``/``process_write`` receive ownership of the message:
  forward it with ``slot.send_message`` or ``release()`` it. A handler that raises from
  either keeps nothing: the sender releases the message and the channel shuts down with
  that error.
* **Sizes.** A read message holds at most ``LARGE_FRAGMENT`` (256 KiB) bytes (the
  socket handler reads bulk data in messages that big); a write message may hold any
  number of bytes (``IoMessage.owning``). ``acquire_message`` hands out 16 KiB at most.
* **Windows** (back-pressure on). A slot's ``window`` is what its left neighbour may still
  send it. ``send_message(READ)`` debits it and raises if the message does not fit: that is
  a bug in the sender, which must ask ``downstream_read_window()`` first — except while the
  read direction shuts down: the application will never grant again, so a handler may then
  hand on everything it still holds (the peer's TCP acknowledged it). A handler grants
  more with ``slot.increment_read_window(n)``; grants are batched and delivered to the left
  handler's ``increment_read_window`` one task later. The batch is flushed when *any*
  slot's window is at or below 4 × 16 KiB — gating on the caller's own window alone stalls
  a middle slot (aws-c-io's bug fixed in 28e4eb35, design brief §3.6) — and the rule is
  re-checked after every debit.
* **EOF.** The peer's FIN is a read-direction event, not a shutdown: ``process_read_eof``
  travels right and the channel stays open, so the application may keep writing.
  ``slot.send_write_eof()`` travels left and half-closes the socket after queued writes.
* **Shutdown.** ``Channel.shutdown(error)`` is first-call-wins. It runs the READ direction
  left → right, then the WRITE direction right → left: each handler's ``shutdown`` must
  eventually call ``slot.on_shutdown_complete(direction, error, abort)``, at once or later.
  The channel's ``on_shutdown(channel, error)`` is always delivered on a later tick, with
  the first error reported (``None`` for a graceful shutdown). Channel tasks still pending
  then run with ``CANCELED``; tasks scheduled after that run synchronously ``CANCELED``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from .event_loop import EventLoop, TimerHandle, os_lock
from .message import MAX_FRAGMENT, IoMessage, MessagePool

__all__ = [
    "Channel",
    "ChannelHandler",
    "ChannelSlot",
    "ChannelState",
    "ChannelTask",
    "Direction",
    "TaskStatus",
    "WindowExceededError",
    "message_pool_for",
]

UNBOUNDED = 1 << 62
#: Guards every channel's task set (schedule_task may come from any thread). Held for a set
#: operation, never across a callback; one for all channels (a lock each cost ~90 bytes).
_TASKS_LOCK = os_lock()
WINDOW_UPDATE_THRESHOLD = 4 * MAX_FRAGMENT


class Direction(enum.Enum):
    READ = "read"
    WRITE = "write"


class TaskStatus(enum.Enum):
    RUN_READY = "run_ready"
    CANCELED = "canceled"


class ChannelState(enum.Enum):
    SETTING_UP = "setting_up"
    ACTIVE = "active"
    SHUTTING_DOWN_READ = "shutting_down_read"
    SHUTTING_DOWN_WRITE = "shutting_down_write"
    SHUT_DOWN = "shut_down"


class WindowExceededError(RuntimeError):
    """A handler sent more than its right neighbour's read window (a sender bug)."""


def message_pool_for(loop: EventLoop) -> MessagePool:
    """The message pool of ``loop`` (one per loop, created on first use)."""
    pool = getattr(loop, "_message_pool", None)
    if pool is None:
        pool = loop._message_pool = MessagePool()  # type: ignore[attr-defined]
    return pool


class ChannelHandler:
    """Base class for handlers; each default passes things straight through.

    Subclasses override what they need. ``slot`` is set when the handler is installed.
    """

    # No instance dict from the base: a subclass with __slots__ (and "slot" among them)
    # stays without one (a managed dict cost each connection's handlers ~70 bytes); a
    # subclass without __slots__ gets its own dict, where ``slot`` lands (None until then).
    __slots__ = ()
    slot: ChannelSlot | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> ChannelHandler:
        # A bare ChannelHandler() (a pass-through) needs somewhere to keep its slot.
        return object.__new__(_PassThroughHandler if cls is ChannelHandler else cls)

    def process_read(self, slot: ChannelSlot, msg: IoMessage) -> None:
        slot.send_message(msg, Direction.READ)

    def process_read_eof(self, slot: ChannelSlot) -> None:
        slot.send_read_eof()

    def process_write(self, slot: ChannelSlot, msg: IoMessage) -> None:
        slot.send_message(msg, Direction.WRITE)

    def process_write_eof(self, slot: ChannelSlot) -> None:
        slot.send_write_eof()

    def increment_read_window(self, slot: ChannelSlot, size: int) -> None:
        slot.increment_read_window(size)

    def shutdown(self, slot: ChannelSlot, direction: Direction, error: BaseException | None,
                 abort: bool) -> None:
        slot.on_shutdown_complete(direction, error, abort)

    def initial_window_size(self) -> int:
        return UNBOUNDED

    def message_overhead(self) -> int:
        return 0

    def trigger_read(self) -> None:
        """Only the leftmost handler is asked: look for input now."""

    def destroy(self) -> None:
        """Release resources; the slot is gone."""


class _PassThroughHandler(ChannelHandler):
    """What ``ChannelHandler()`` makes: every default, with a dict for ``slot``."""


class ChannelSlot:
    """One position in the chain: a handler and the read window granted to it."""

    __slots__ = ("channel", "left", "right", "handler", "window", "pending_increment",
                 "upstream_overhead")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.left: ChannelSlot | None = None
        self.right: ChannelSlot | None = None
        self.handler: ChannelHandler | None = None
        self.window = 0
        self.pending_increment = 0
        self.upstream_overhead = 0

    # -------------------------------------------------------------- topology
    def insert_right(self, new: ChannelSlot) -> None:
        ch = self.channel
        ch._check("insert_right")
        new.left, new.right = self, self.right
        if self.right is not None:
            self.right.left = new
        else:
            ch.last = new
        self.right = new
        ch._recompute_overheads()

    def insert_left(self, new: ChannelSlot) -> None:
        ch = self.channel
        ch._check("insert_left")
        new.right, new.left = self, self.left
        if self.left is not None:
            self.left.right = new
        else:
            ch.first = new
        self.left = new
        ch._recompute_overheads()

    def remove(self) -> None:
        """Unlink this slot and destroy its handler."""
        ch = self.channel
        ch._check("remove")
        if self.left is not None:
            self.left.right = self.right
        else:
            ch.first = self.right
        if self.right is not None:
            self.right.left = self.left
        else:
            ch.last = self.left
        self.left = self.right = None
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.destroy()
        ch._recompute_overheads()

    def replace(self, new: ChannelSlot) -> None:
        """Put ``new`` where this slot is and destroy this slot's handler."""
        ch = self.channel
        ch._check("replace")
        new.left, new.right = self.left, self.right
        if self.left is not None:
            self.left.right = new
        else:
            ch.first = new
        if self.right is not None:
            self.right.left = new
        else:
            ch.last = new
        self.left = self.right = None
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.destroy()
        ch._recompute_overheads()

    def set_handler(self, handler: ChannelHandler) -> None:
        """Install ``handler`` and grant its initial window to the left neighbour."""
        ch = self.channel
        ch._check("set_handler")
        self.handler = handler
        handler.slot = self
        ch._recompute_overheads()
        self.increment_read_window(handler.initial_window_size())

    # -------------------------------------------------------------- data
    def downstream_read_window(self) -> int:
        """How many bytes this slot may send right now (0 if nobody is to the right)."""
        right = self.right
        if right is None or right.handler is None:
            return 0
        if not self.channel.back_pressure:
            return UNBOUNDED
        return right.window

    def acquire_message(self, size_hint: int) -> IoMessage:
        """A pooled message for writing from here, leaving room for handlers to the left."""
        cap = MAX_FRAGMENT - self.upstream_overhead
        return self.channel.pool.acquire(max(1, min(size_hint, cap)))

    def send_message(self, msg: IoMessage, direction: Direction) -> None:
        """Hand ``msg`` (ownership included) to the next handler in ``direction``."""
        ch = self.channel
        if direction is Direction.READ:
            right = self.right
            if right is None or right.handler is None:
                raise RuntimeError("send_message(READ): no handler to the right")
            if ch.back_pressure and ch.state is not ChannelState.SHUTTING_DOWN_READ:
                if right.window < msg.len:
                    raise WindowExceededError(
                        f"read of {msg.len} bytes exceeds the downstream window {right.window}")
                right.window -= msg.len
                if right.window <= WINDOW_UPDATE_THRESHOLD:
                    ch._maybe_schedule_window_update()
            ch.read_messages += 1
            right.handler.process_read(right, msg)
        else:
            left = self.left
            if left is None or left.handler is None:
                raise RuntimeError("send_message(WRITE): no handler to the left")
            ch.write_messages += 1
            left.handler.process_write(left, msg)

    def send_read_eof(self) -> None:
        """Tell the handlers to the right that the peer will send nothing more."""
        right = self.right
        if right is not None and right.handler is not None:
            right.handler.process_read_eof(right)

    def send_write_eof(self) -> None:
        """Ask the handlers to the left to half-close after what was written so far."""
        left = self.left
        if left is not None and left.handler is not None:
            left.handler.process_write_eof(left)

    def increment_read_window(self, size: int) -> None:
        """Grant the left neighbour ``size`` more bytes (batched, delivered a task later)."""
        ch = self.channel
        if ch.state is ChannelState.SHUT_DOWN or size <= 0:
            return
        if not ch.back_pressure and self.window:
            return  # without back-pressure only the first grant matters: it says "ready"
        self.pending_increment = min(UNBOUNDED, self.pending_increment + size)
        ch._maybe_schedule_window_update()

    # -------------------------------------------------------------- shutdown
    def on_shutdown_complete(self, direction: Direction, error: BaseException | None,
                             abort: bool) -> None:
        """A handler finished shutting down ``direction``: continue the sequence."""
        self.channel._on_handler_shutdown_complete(self, direction, error, abort)


class ChannelTask:
    """A task bound to a channel: ``fn(status)`` runs once, ``CANCELED`` at shutdown."""

    __slots__ = ("fn", "done", "_timer")

    def __init__(self, fn: Callable[[TaskStatus], Any]) -> None:
        self.fn = fn
        self.done = False
        self._timer: TimerHandle | None = None


class Channel:
    """A handler pipeline on one loop. Create it on the loop thread or from any thread;
    setup completes on the loop, then ``on_setup(channel, None)`` runs."""

    # One per connection: slots, not a dict.
    __slots__ = ("loop", "back_pressure", "on_setup", "on_shutdown", "first", "last", "state",
                 "pool", "read_messages", "write_messages", "shutdown_error",
                 "_shutdown_requested", "_shutdown_abort", "_window_update_scheduled",
                 "_tasks", "_destroy_pending", "__weakref__")

    def __init__(self, loop: EventLoop, *, back_pressure: bool = False,
                 on_setup: Callable[[Channel, BaseException | None], Any] | None = None,
                 on_shutdown: Callable[[Channel, BaseException | None], Any] | None = None,
                 ) -> None:
        self.loop = loop
        self.back_pressure = back_pressure
        self.on_setup = on_setup
        self.on_shutdown = on_shutdown
        self.first: ChannelSlot | None = None
        self.last: ChannelSlot | None = None
        self.state = ChannelState.SETTING_UP
        self.pool = message_pool_for(loop)
        self.read_messages = 0
        self.write_messages = 0
        self.shutdown_error: BaseException | None = None
        self._shutdown_requested = False
        self._shutdown_abort = False
        self._window_update_scheduled = False
        self._tasks: set[ChannelTask] | None = None  # made on first use (a set is ~200 B)
        self._destroy_pending = False
        self.post(self._setup)

    # -------------------------------------------------------------- helpers
    def _check(self, what: str) -> None:
        if not self.loop.is_loop_thread():
            self.loop.check_thread(f"Channel.{what}")

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread soon, from any thread."""
        if self.loop.is_loop_thread():
            self.loop.call_soon(fn, *args)
        else:
            self.loop.post(fn, *args)

    def _setup(self) -> None:
        if self.state is ChannelState.SETTING_UP:
            self.state = ChannelState.ACTIVE
        cb = self.on_setup
        if cb is not None:
            cb(self, None)
        if self._destroy_pending:
            self.destroy()

    def activate(self) -> None:
        """Mark the channel active now (synchronous setup, loop-only)."""
        self._check("activate")
        if self.state is ChannelState.SETTING_UP:
            self.state = ChannelState.ACTIVE

    def new_slot(self) -> ChannelSlot:
        """A fresh slot; the first one becomes both ``first`` and ``last``."""
        self._check("new_slot")
        slot = ChannelSlot(self)
        if self.first is None:
            self.first = self.last = slot
        return slot

    def add_handler(self, handler: ChannelHandler) -> ChannelSlot:
        """Append ``handler`` at the right end (convenience for building pipelines)."""
        slot = ChannelSlot(self)
        self._check("add_handler")
        if self.last is None:
            self.first = self.last = slot
        else:
            self.last.insert_right(slot)
        slot.set_handler(handler)
        return slot

    def slots(self) -> list[ChannelSlot]:
        out, s = [], self.first
        while s is not None:
            out.append(s)
            s = s.right
        return out

    def _recompute_overheads(self) -> None:
        total = 0
        s = self.first
        while s is not None:
            s.upstream_overhead = total
            if s.handler is not None:
                total += s.handler.message_overhead()
            s = s.right

    def trigger_read(self) -> None:
        """Ask the leftmost handler to look for input (loop-only)."""
        self._check("trigger_read")
        if self.first is None or self.first.handler is None:
            raise RuntimeError("trigger_read: the channel has no handler")
        self.first.handler.trigger_read()

    # -------------------------------------------------------------- windows
    def _maybe_schedule_window_update(self) -> None:
        if self._window_update_scheduled or self.state is ChannelState.SHUT_DOWN:
            return
        pending = False
        smallest = UNBOUNDED
        s = self.first.right if self.first is not None else None
        while s is not None:
            if s.pending_increment:
                pending = True
            if s.window < smallest:
                smallest = s.window
            s = s.right
        if pending and smallest <= WINDOW_UPDATE_THRESHOLD:
            self._window_update_scheduled = True
            self.schedule_task(self._window_update)

    def _window_update(self, status: TaskStatus) -> None:
        self._window_update_scheduled = False
        if status is TaskStatus.CANCELED or self.state is ChannelState.SHUT_DOWN:
            return
        s = self.last
        while s is not None:
            left = s.left
            if left is not None and left.handler is not None and s.pending_increment:
                amount = s.pending_increment
                s.pending_increment = 0
                s.window = min(UNBOUNDED, s.window + amount)
                try:
                    left.handler.increment_read_window(left, amount)
                except Exception as exc:  # noqa: BLE001 - a handler bug ends the channel
                    self.shutdown(exc)
                    return
            s = left

    # -------------------------------------------------------------- tasks
    def schedule_task(self, fn: Callable[[TaskStatus], Any], delay: float | None = None
                      ) -> ChannelTask:
        """Run ``fn(status)`` on the loop, now or after ``delay`` seconds (any thread).

        After the channel has shut down, ``fn(CANCELED)`` runs synchronously, right here.
        """
        task = ChannelTask(fn)
        if self.state is ChannelState.SHUT_DOWN:
            task.done = True
            fn(TaskStatus.CANCELED)
            return task
        with _TASKS_LOCK:
            if self._tasks is None:
                self._tasks = set()
            self._tasks.add(task)
        if self.loop.is_loop_thread():
            self._arm_task(task, delay)
        else:
            self.loop.post(self._arm_task, task, delay)
        return task

    def _arm_task(self, task: ChannelTask, delay: float | None) -> None:
        if task.done:
            return
        if delay is None:
            self.loop.call_soon(self._run_task, task)
        else:
            task._timer = self.loop.call_later(delay, self._run_task, task)

    def _forget_task(self, task: ChannelTask) -> None:
        with _TASKS_LOCK:
            tasks = self._tasks
            if tasks is not None:
                tasks.discard(task)
                if not tasks:
                    self._tasks = None

    def _run_task(self, task: ChannelTask) -> None:
        if task.done:
            return
        task.done = True
        self._forget_task(task)
        status = (TaskStatus.CANCELED if self.state is ChannelState.SHUT_DOWN
                  else TaskStatus.RUN_READY)
        task.fn(status)

    def cancel_task(self, task: ChannelTask) -> None:
        """Run ``task`` now with ``CANCELED`` unless it already ran (loop-only)."""
        self._check("cancel_task")
        if task.done:
            return
        task.done = True
        if task._timer is not None:
            task._timer.cancel()
        self._forget_task(task)
        task.fn(TaskStatus.CANCELED)

    # -------------------------------------------------------------- shutdown
    def shutdown(self, error: BaseException | None = None, abort: bool = False) -> None:
        """Begin shutting down (any thread). Only the first call counts."""
        with _TASKS_LOCK:
            if self._shutdown_requested:
                return
            self._shutdown_requested = True
            self.shutdown_error = error
            self._shutdown_abort = abort
        self.post(self._shutdown_task)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown_requested

    def _shutdown_task(self) -> None:
        if self.state in (ChannelState.SHUTTING_DOWN_READ, ChannelState.SHUTTING_DOWN_WRITE,
                          ChannelState.SHUT_DOWN):
            return
        self.state = ChannelState.SHUTTING_DOWN_READ
        first = self.first
        if first is None or first.handler is None:
            self.state = ChannelState.SHUT_DOWN
            self.loop.call_soon(self._shutdown_completed)
            return
        first.handler.shutdown(first, Direction.READ, self.shutdown_error, self._shutdown_abort)

    def _on_handler_shutdown_complete(self, slot: ChannelSlot, direction: Direction,
                                      error: BaseException | None, abort: bool) -> None:
        if self.state is ChannelState.SHUT_DOWN:
            return
        if error is not None and self.shutdown_error is None:
            self.shutdown_error = error
        err = self.shutdown_error
        if direction is Direction.READ:
            right = slot.right
            if right is not None and right.handler is not None:
                right.handler.shutdown(right, Direction.READ, err, abort)
                return
            # The rightmost handler starts the write direction on a fresh tick, so no
            # handler sees its neighbours change state inside its own shutdown call.
            self.state = ChannelState.SHUTTING_DOWN_WRITE
            self.loop.call_soon(self._start_write_shutdown, slot, abort)
        else:
            left = slot.left
            if left is not None and left.handler is not None:
                left.handler.shutdown(left, Direction.WRITE, err, abort)
                return
            self.state = ChannelState.SHUT_DOWN
            self.loop.call_soon(self._shutdown_completed)

    def _start_write_shutdown(self, slot: ChannelSlot, abort: bool) -> None:
        if slot.handler is not None:
            slot.handler.shutdown(slot, Direction.WRITE, self.shutdown_error, abort)
        else:
            self._on_handler_shutdown_complete(slot, Direction.WRITE, None, abort)

    def _shutdown_completed(self) -> None:
        with _TASKS_LOCK:
            tasks, self._tasks = self._tasks or (), None
        for task in tasks:
            if not task.done:
                task.done = True
                if task._timer is not None:
                    task._timer.cancel()
                task.fn(TaskStatus.CANCELED)
        cb = self.on_shutdown
        if cb is not None:
            cb(self, self.shutdown_error)

    # -------------------------------------------------------------- destroy
    def destroy(self) -> None:
        """Destroy every handler left → right (loop-only; after shutdown completed).

        Called while setup is still pending, it waits for setup and then destroys.
        """
        if not self.loop.is_loop_thread():
            self.loop.post(self.destroy)
            return
        if self.state is ChannelState.SETTING_UP:
            self._destroy_pending = True
            return
        if self.state is not ChannelState.SHUT_DOWN and self.first is not None:
            raise RuntimeError(f"Channel.destroy() in state {self.state.value}; shut it down "
                               "and wait for on_shutdown first")
        s = self.first
        while s is not None:
            nxt = s.right
            handler, s.handler = s.handler, None
            if handler is not None:
                handler.destroy()
            s.left = s.right = None
            s = nxt
        self.first = self.last = None
        self.state = ChannelState.SHUT_DOWN

    def __repr__(self) -> str:
        names = [type(s.handler).__name__ for s in self.slots()]
        return f"<Channel {self.state.value} {'→'.join(names)}>"
