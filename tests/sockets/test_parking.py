"""Parker: one greenlet parked per spot, queued and direct wake-ups, deadlines."""

from __future__ import annotations

import gevent
import pytest
from gevent.exceptions import ConcurrentObjectUseError

from reseau_patch.sockets.parking import TIMED_OUT, Parker, current_io_loop


def test_queued_wake_then_a_new_park_keeps_the_new_waiter(run):
    """wake() queues the switch: another greenlet may park before the woken one runs,
    and the woken one's exit must not forget it."""
    def body():
        loop = current_io_loop()
        spot = Parker("owner", "read")
        first = gevent.spawn(spot.park, loop, 5)
        gevent.sleep(0)
        assert spot.waiting
        spot.wake("one")  # queued
        second = gevent.spawn(spot.park, loop, 5)
        assert first.get(timeout=5) == "one"
        gevent.sleep(0)
        assert spot.waiting  # second is parked
        spot.wake("two")
        assert second.get(timeout=5) == "two"
    run(body)


def test_wake_now_deadline_and_concurrent_park(run):
    def body():
        loop = current_io_loop()
        spot = Parker("owner", "read")
        assert spot.wake_now("nobody") is False
        g = gevent.spawn(spot.park, loop, None)
        gevent.sleep(0)
        with pytest.raises(ConcurrentObjectUseError, match="already waiting to read on 'owner'"):
            spot.park(loop, 1)
        loop.call_soon(lambda: spot.wake_now("direct"))
        assert g.get(timeout=5) == "direct"
        assert spot.park(loop, 0.01) is TIMED_OUT
        assert not spot.waiting
    run(body)
