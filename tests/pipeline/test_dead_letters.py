"""`python -m pipeline dead-letters [--redrive] [--json]` against the embedded SQLite queue."""

from __future__ import annotations

import json

import pytest

from pipeline.__main__ import main
from pipeline.config import load_settings
from pipeline.queues import open_work_queue

BATCH = '{"key": "20240101/abc-0001.batch", "records": 3, "bytes": 512}'


@pytest.fixture
def queue(data_dir, monkeypatch):
    """The configured work queue, dead-lettering after one failed claim."""
    monkeypatch.setenv("TELEMETRY_QUEUE_MAX_ATTEMPTS", "1")
    opened = open_work_queue(load_settings())
    yield opened
    opened.close()


def dead_letter(queue, *bodies: str) -> None:
    for body in bodies:
        queue.send(body)
    while (message := queue.claim(lease_seconds=60)) is not None:
        assert queue.release(message)
    assert len(queue.dead_letters()) == len(bodies)


def test_lists_each_dead_letter_with_its_batch_key_and_the_count(queue, capsys):
    dead_letter(queue, BATCH, "not json\nat all")
    assert main(["dead-letters"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t") == ["1", "attempts=1", "20240101/abc-0001.batch"]
    assert out[1].split("\t") == ["2", "attempts=1", "not json at all"]
    assert out[2] == f"2 dead letter(s) in {queue.url}"
    assert len(queue.dead_letters()) == 2  # listing does not consume


def test_an_empty_dead_letter_queue_says_so(queue, capsys):
    assert main(["dead-letters"]) == 0
    assert capsys.readouterr().out == f"0 dead letter(s) in {queue.url}\n"


def test_redrive_moves_them_back_and_says_how_many(queue, capsys):
    dead_letter(queue, BATCH, "other")
    assert main(["dead-letters", "--redrive"]) == 0
    assert capsys.readouterr().out == f"redrove 2 dead letter(s) back to {queue.url}\n"
    assert queue.dead_letters() == []
    message = queue.claim(lease_seconds=60)
    assert (message.body, message.attempts) == (BATCH, 1)
    assert queue.ack(message)
    assert main(["dead-letters"]) == 0
    assert capsys.readouterr().out.endswith("0 dead letter(s) in " + queue.url + "\n")


def test_json_output(queue, capsys):
    dead_letter(queue, BATCH)
    assert main(["dead-letters", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == {
        "queue": queue.url,
        "count": 1,
        "dead_letters": [{"id": "1", "attempts": 1, "body": BATCH}],
    }
    assert main(["dead-letters", "--redrive", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"queue": queue.url, "redriven": 1}


def test_unusable_queue_is_one_line_on_stderr_without_traceback(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("TELEMETRY_QUEUE_URL", "kafka://broker/topic")
    assert main(["dead-letters", "--redrive"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("FAIL TELEMETRY_QUEUE_URL: unknown scheme")
    assert len(captured.err.splitlines()) == 1 and "Traceback" not in captured.err


def test_help_explains_the_command(data_dir, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["dead-letters", "--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--redrive", "--json", "TELEMETRY_QUEUE_MAX_ATTEMPTS", "incoming store"):
        assert text in out
