"""MessagePool: which buffer each acquire hands out, and where it goes back."""

from __future__ import annotations

import pytest

from reseau_patch.io.message import LARGE_FRAGMENT, MAX_FRAGMENT, MessagePool


@pytest.mark.parametrize(("hint", "capacity"), [
    (1, 128), (128, 128), (129, MAX_FRAGMENT), (MAX_FRAGMENT, MAX_FRAGMENT),
    (MAX_FRAGMENT + 1, LARGE_FRAGMENT), (LARGE_FRAGMENT - 64, LARGE_FRAGMENT),
    (4 * LARGE_FRAGMENT, LARGE_FRAGMENT)])
def test_acquire_read_hands_out_a_whole_pooled_buffer(hint, capacity):
    pool = MessagePool()
    msg = pool.acquire_read(hint)
    # A whole buffer (no view to allocate per read), never smaller than the hint allows.
    assert type(msg.buf) is bytearray and msg.capacity == capacity
    assert msg.capacity >= min(hint, LARGE_FRAGMENT) and msg.len == 0
    assert pool.outstanding == 1
    buf = msg.buf
    msg.release()
    msg.release()  # idempotent: given back once
    assert pool.outstanding == 0
    again = pool.acquire_read(hint)
    assert again is msg and again.buf is buf and again.len == 0  # reused from its free list


def test_acquire_large_sizes_exactly_and_shares_the_free_lists_with_acquire_read():
    pool = MessagePool()
    part = pool.acquire_large(LARGE_FRAGMENT - 64)
    assert part.capacity == LARGE_FRAGMENT - 64
    part.release()
    whole = pool.acquire_read(LARGE_FRAGMENT)
    assert whole.capacity == LARGE_FRAGMENT and pool.outstanding == 1
    whole.release()
    assert pool.outstanding == 0
