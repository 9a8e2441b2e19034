"""DecodePool.hold: the decode threads start no job while a CPU encoder runs a batch."""

from __future__ import annotations

import threading

import pytest

from photofind.library.analysers import ClipAnalyser
from photofind.library.decode_pool import DecodePool


def test_a_held_pool_starts_no_job_until_released():
    pool = DecodePool(1)
    try:
        busy = threading.Event()
        first = pool.submit(busy.wait)
        assert first.started.wait(10)
        pool.hold()
        second = pool.submit(lambda: "decoded")
        busy.set()
        assert first.future.result(timeout=10)
        # The thread is free, the job queued: held, it does not start.
        assert not second.started.wait(0.2)
        pool.release()
        assert second.future.result(timeout=10) == "decoded"
    finally:
        pool.shutdown()


def test_shutdown_of_a_held_pool_ends_its_threads():
    pool = DecodePool(2)
    pool.hold()
    job = pool.submit(lambda: 1)
    job.cancel()
    pool.shutdown()  # joins: would hang here if the held threads never woke
    assert all(not t.is_alive() for t in pool._threads)


def test_the_clip_analyser_holds_the_pool_when_its_model_runs_on_the_cpu(model):
    clip = ClipAnalyser(model, index=None)
    assert model.info.provider == "cpu" and clip.uses_every_core


def test_an_encoder_on_fewer_threads_than_cores_does_not_hold_the_pool(random_package):
    from photofind.clip import load_model
    from photofind.clip.providers import cpu_threads

    if cpu_threads() < 2:
        pytest.skip("one core: any encoder uses all of them")
    model = load_model(random_package, provider="cpu", threads=cpu_threads() - 1)
    assert not ClipAnalyser(model, index=None).uses_every_core
