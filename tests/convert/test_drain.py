"""`--drain` exits 0 only when the queue is empty, and waits for batches other workers hold.

Messages it cannot claim and that are not worth waiting for (a failed batch's retry, a parked
batch, both delayed) end the drain with EXIT_WORK_LEFT and one log line saying how many remain.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

from convert.__main__ import combined_status
from convert.worker import EXIT_WORK_LEFT, ConvertWorker, WorkerOptions
from pipeline.config import load_settings
from pipeline.errors import StoreError
from pipeline.queues import open_queue
from pipeline.stores import open_store
from tests.support.convert import (
    gz,
    make_batch,
    run_convert,
    stub_tools,
    telemetry_path,
    v1_payload,
)
from tests.support.logs import logged

LEFT_LINE = "drain: 1 message(s) still queued: "
HINT = "run again later (batches that keep failing end up in `python -m pipeline dead-letters`)"


def make_worker(settings, **options) -> ConvertWorker:
    return ConvertWorker(settings, WorkerOptions(drain=True, **options), stub_tools())


def submit(worker: ConvertWorker, key: str) -> None:
    data = make_batch([(telemetry_path(), {"Content-Encoding": "gzip"}, gz(v1_payload()))])
    worker.incoming.put(key, data)
    worker.queue.send(json.dumps({"key": key, "records": 1, "bytes": len(data)}))


def break_published_store(worker: ConvertWorker) -> None:
    def failing_put_file(key, path):
        raise StoreError("published store is down")

    worker.published.put_file = failing_put_file


def delay_one_message_elsewhere(settings, seconds: float) -> None:
    """A message put back with a delay by an earlier run."""
    queue = open_queue(settings.queue_url)
    queue.send(json.dumps({"key": "earlier.tpr"}))
    assert queue.release(queue.claim(), delay_seconds=seconds)
    queue.close()


def hold_one_message_elsewhere(settings, seconds: float = 3600) -> None:
    """A message another worker holds (leased for `seconds`): this run cannot claim it."""
    queue = open_queue(settings.queue_url)
    queue.send(json.dumps({"key": "held.tpr"}))
    assert queue.claim(lease_seconds=seconds) is not None
    queue.close()


def test_drain_of_an_empty_queue_exits_0_at_once(settings, caplog):
    worker = make_worker(settings)
    started = time.monotonic()
    with caplog.at_level("INFO"):
        assert worker.run() == 0
    assert time.monotonic() - started < 5
    assert "still queued" not in caplog.text


def test_cli_drain_of_an_empty_queue_exits_0(data_dir):
    result = run_convert({}, "--drain")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "still queued" not in result.stderr


def test_drain_that_leaves_a_failed_batch_for_a_delayed_retry_exits_3(settings, caplog):
    # Its own retry is not waited for (it comes due in an hour), so this takes no lease.
    worker = make_worker(settings, retry_delay=3600)
    break_published_store(worker)
    submit(worker, "fails.tpr")
    started = time.monotonic()
    with caplog.at_level("INFO"):
        assert worker.run() == EXIT_WORK_LEFT
    assert time.monotonic() - started < 30  # well under the 300 s lease
    lines = [r.getMessage() for r in caplog.records if "still queued" in r.getMessage()]
    assert lines == [
        LEFT_LINE + "delayed retries or parked batches, the next due in 3600s; " + HINT
    ]
    assert worker.queue.depth() == 1 and worker.incoming.exists("fails.tpr")


def test_explicit_drain_wait_still_processes_a_retry_that_comes_due_within_it(settings):
    worker = make_worker(settings, retry_delay=1, drain_wait=30)
    calls = []
    original_put_file = worker.published.put_file

    def fails_once(key, path):
        calls.append(key)
        if len(calls) == 1:
            raise StoreError("published store is down")
        return original_put_file(key, path)

    worker.published.put_file = fails_once
    submit(worker, "flaky.tpr")
    assert worker.run() == 0
    assert worker.queue.depth() == 0 and not worker.incoming.exists("flaky.tpr")


def settings_with(data_dir, env: dict[str, str]):
    return load_settings({**env, "TELEMETRY_DATA_DIR": str(data_dir)})


def test_cli_drain_waits_a_lease_for_a_message_it_cannot_claim_then_exits_3(data_dir):
    # A message held by another worker: the default wait is the lease (1 s here). The other
    # worker holds it for an hour, so the drain gives up after that.
    env = {"TELEMETRY_QUEUE_LEASE_SECONDS": "1"}
    hold_one_message_elsewhere(settings_with(data_dir, env))
    result = run_convert(env, "--drain")
    assert result.returncode == EXIT_WORK_LEFT, result.stderr[-3000:]
    assert "drain: 1 message(s) not claimable" in result.stderr
    assert "waiting up to 1s for them" in result.stderr
    assert (
        LEFT_LINE + "delayed retries, parked batches or batches held by another worker, "
        "none claimable after waiting 1s; " + HINT
    ) in result.stderr


def test_cli_drain_does_not_wait_a_lease_for_a_message_an_earlier_run_delayed(data_dir):
    # The queue tells a delayed message from a held one, whoever delayed it.
    delay_one_message_elsewhere(settings_with(data_dir, {}), 3600)
    result = run_convert({}, "--drain")
    assert result.returncode == EXIT_WORK_LEFT, result.stderr[-3000:]
    assert "not claimable" not in result.stderr
    assert LEFT_LINE + "delayed retries or parked batches, the next due in " in result.stderr


def test_cli_workers_exit_status_reflects_work_left(data_dir):
    delay_one_message_elsewhere(settings_with(data_dir, {}), 3600)
    result = run_convert({}, "--drain", "--drain-wait", "0", "--workers", "2")
    assert result.returncode == EXIT_WORK_LEFT, result.stderr[-3000:]
    assert "workers finished with exit codes [3, 3]" in result.stderr
    assert result.stderr.count(LEFT_LINE) == 2


def test_cli_workers_know_what_their_siblings_delayed(data_dir, shared_fixtures):
    # The batch's revision cannot be fetched (no cache, hg unreachable): it is published
    # unvalidated and its stash queued for re-validation with a delay. Whichever worker did
    # not queue it must not wait a lease (300 s) for it.
    env = {"TELEMETRY_HG_BASE_URL": "http://127.0.0.1:9"}
    settings = settings_with(data_dir, env)
    body = (shared_fixtures / "payloads/idle-daily-firefox-23.0.1.json.gz").read_bytes()
    path = f"/submit/telemetry/{uuid.uuid4()}/idle-daily/Firefox/23.0.1/release/20130814063812"
    data = make_batch([(path, {"Content-Encoding": "gzip"}, body)])
    open_store(settings.incoming_url).put("p/one.tpr", data)
    open_queue(settings.queue_url).send(json.dumps({"key": "p/one.tpr", "records": 1}))
    started = time.monotonic()
    result = run_convert(env, "--drain", "--workers", "2", "--park-delay", "3600")
    assert result.returncode == EXIT_WORK_LEFT, result.stderr[-3000:]
    assert time.monotonic() - started < 120
    assert "published 1 records unvalidated" in result.stderr
    assert "workers finished with exit codes [3, 3]" in result.stderr
    assert result.stderr.count(LEFT_LINE + "delayed retries or parked batches, the next due") == 2


SECOND_WAITS = "not claimable (held by another worker, or delayed); waiting up to"


def run_second_while_first_works(
    first: ConvertWorker,
    second: ConvertWorker,
    claimed: threading.Event,
    threads: dict | None = None,
) -> dict[str, int]:
    """Run both workers on threads (kept in `threads`), the second once the first has claimed
    its batch (`claimed` is set); returns their exit statuses by name."""
    results: dict[str, int] = {}
    threads = {} if threads is None else threads
    threads["first"] = threading.Thread(target=lambda: results.update(first=first.run()))
    threads["second"] = threading.Thread(target=lambda: results.update(second=second.run()))
    threads["first"].start()
    assert claimed.wait(30)
    threads["second"].start()
    threads["first"].join(60)
    threads["second"].join(60)
    return results


def test_two_draining_workers_with_one_batch_both_exit_0(settings, caplog):
    first, second = make_worker(settings), make_worker(settings)
    submit(first, "one.tpr")
    claimed, second_alive_at_the_end, threads = threading.Event(), [], {}
    process = first.processor.process
    second_waits = threading.Event()

    def slow_process(job):
        claimed.set()
        # the second worker finds nothing to claim and says it waits for the batch
        assert second_waits.wait(30), "the second worker never waited for the batch"
        second_alive_at_the_end.append(threads["second"].is_alive())
        return process(job)

    first.processor.process = slow_process
    with caplog.at_level("INFO"), logged(SECOND_WAITS, second_waits):
        results = run_second_while_first_works(first, second, claimed, threads)
    assert results == {"first": 0, "second": 0}
    assert second_alive_at_the_end == [True]  # it waited for the batch, not exit early
    assert "waiting up to 300s for them" in caplog.text
    assert "still queued" not in caplog.text
    assert first.queue.depth() == 0 and not first.incoming.exists("one.tpr")


def test_a_worker_does_not_wait_for_a_retry_its_sibling_delayed(settings, caplog):
    first = make_worker(settings, retry_delay=3600)
    second = make_worker(settings)
    break_published_store(first)
    submit(first, "fails.tpr")
    claimed = threading.Event()
    process = first.processor.process
    second_waits = threading.Event()

    def slow_failing_process(job):
        claimed.set()
        # the second worker is waiting on this batch before it fails
        assert second_waits.wait(30), "the second worker never waited for the batch"
        return process(job)

    first.processor.process = slow_failing_process
    started = time.monotonic()
    with caplog.at_level("INFO"), logged(SECOND_WAITS, second_waits):
        results = run_second_while_first_works(first, second, claimed)
    assert results == {"first": EXIT_WORK_LEFT, "second": EXIT_WORK_LEFT}
    assert time.monotonic() - started < 30  # not the 300 s lease
    assert caplog.text.count(LEFT_LINE + "delayed retries or parked batches") == 2


def test_drain_stopped_by_a_signal_with_work_left_exits_3(settings, caplog):
    hold_one_message_elsewhere(settings)
    worker = make_worker(settings, drain_wait=60)
    results = []
    thread = threading.Thread(target=lambda: results.append(worker.run()))
    with caplog.at_level("INFO"), logged("waiting up to 60s") as waiting:
        thread.start()
        assert waiting.wait(30), "the drain never waited for the delayed message"
        worker.stopping.set()  # what SIGTERM does
        thread.join(30)
    assert results == [EXIT_WORK_LEFT]
    assert LEFT_LINE + "stopped before the queue was empty; " + HINT in caplog.text


def test_combined_status_of_several_workers():
    assert combined_status([0, 0]) == 0
    assert combined_status([0, EXIT_WORK_LEFT]) == EXIT_WORK_LEFT
    assert combined_status([EXIT_WORK_LEFT, 1]) == 1  # a failure is worse than work left
    assert combined_status([0, -3]) == 131  # killed by SIGQUIT: not "work left"
    assert combined_status([EXIT_WORK_LEFT, -9]) == 137
