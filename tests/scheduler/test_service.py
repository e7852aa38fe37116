"""The service's policies: firing, restart without double runs, missed firings, overlap,
lost runs, manual runs, cancellation, notifications, and APScheduler driving it all."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from pipeline.db import make_engine, session_factory
from scheduler.clock import FakeClock, ScaledClock
from scheduler.jobs import cancel_run, request_run_now
from scheduler.models import Job, Run, RunState
from scheduler.service import SchedulerService
from tests.support.scheduler import T0, RecordingRunner, add_job, processes_running, runs_of
from tests.support.waiting import wait_for

DAILY_12 = ("daily", None, 12)


def make_service(settings, config, clock, runner=None) -> SchedulerService:
    return SchedulerService(
        settings, config, clock=clock, runners={"local": runner} if runner else None
    )


def test_a_firing_runs_each_job_once_and_a_double_firing_is_ignored(settings, config, Session):
    runner = RecordingRunner()
    a, b = add_job(Session, settings, "a"), add_job(Session, settings, "b")
    add_job(Session, settings, "other-hour", hour=13)
    service = make_service(settings, config, FakeClock(T0), runner)
    assert len(service.fire_key(DAILY_12, T0)) == 2
    assert service.fire_key(DAILY_12, T0) == []  # same instant again: nothing new
    assert (
        SchedulerService(settings, config, clock=FakeClock(T0), runners={"local": runner}).fire_key(
            DAILY_12, T0
        )
        == []
    )
    service.wait_idle()
    assert sorted(r.job_name for r in runner.requests) == ["a", "b"]
    for job in (a, b):
        (run,) = runs_of(Session, job.id)
        assert (
            run.state == RunState.succeeded.value
            and run.scheduled_for == T0
            and run.trigger == "schedule"
        )


def test_restart_after_a_run_does_not_run_the_firing_again(settings, config, Session):
    job = add_job(Session, settings)
    runner = RecordingRunner()
    first = make_service(settings, config, FakeClock(T0), runner)
    first.fire_key(DAILY_12, T0)
    first.wait_idle()
    second = make_service(settings, config, FakeClock(T0 + dt.timedelta(minutes=30)), runner)
    second.recover()
    second.wait_idle()
    assert len(runner.requests) == 1
    assert [r.scheduled_for for r in runs_of(Session, job.id)] == [T0]


def test_missed_firing_within_the_grace_period_runs_once(settings, config, Session):
    job = add_job(Session, settings, created=T0 - dt.timedelta(hours=1))
    runner = RecordingRunner()
    service = make_service(settings, config, FakeClock(T0 + dt.timedelta(minutes=40)), runner)
    service.recover()
    service.wait_idle()
    service.recover()  # a second restart finds the firing recorded
    service.wait_idle()
    (run,) = runs_of(Session, job.id)
    assert run.scheduled_for == T0 and run.state == RunState.succeeded.value
    assert len(runner.requests) == 1


def test_missed_firings_older_than_the_grace_period_are_recorded_missed(settings, config, Session):
    job = add_job(Session, settings, created=T0 - dt.timedelta(days=2, hours=1))
    runner = RecordingRunner()
    service = make_service(settings, config, FakeClock(T0 + dt.timedelta(hours=2)), runner)
    service.recover()
    runs = runs_of(Session, job.id)
    assert [r.scheduled_for for r in runs] == [
        T0 - dt.timedelta(days=2),
        T0 - dt.timedelta(days=1),
        T0,
    ]
    assert all(r.state == RunState.missed.value for r in runs)
    assert "older than the grace period" in runs[-1].reason
    assert runner.requests == []


def test_only_the_latest_missed_firing_runs_the_older_ones_are_missed(settings, config, Session):
    job = add_job(Session, settings, created=T0 - dt.timedelta(days=1, hours=1))
    runner = RecordingRunner()
    service = make_service(settings, config, FakeClock(T0 + dt.timedelta(minutes=5)), runner)
    service.recover()
    service.wait_idle()
    runs = runs_of(Session, job.id)
    assert [(r.scheduled_for, r.state) for r in runs] == [
        (T0 - dt.timedelta(days=1), RunState.missed.value),
        (T0, RunState.succeeded.value),
    ]


def test_a_firing_while_the_previous_run_is_going_is_recorded_as_overlap(settings, config, Session):
    job = add_job(Session, settings)
    runner = RecordingRunner()
    runner.hold.set()
    service = make_service(settings, config, FakeClock(T0), runner)
    service.fire_key(DAILY_12, T0)
    assert runner.started.acquire(timeout=30)
    service.fire_key(DAILY_12, T0 + dt.timedelta(days=1))
    # A manual run waits for the job to be free instead.
    with Session() as session:
        manual = request_run_now(
            session, session.get(Job, job.id), clock=FakeClock(T0 + dt.timedelta(days=1, hours=1))
        )
    service.dispatch()
    with Session() as session:
        assert session.get(Run, manual.id).state == RunState.scheduled.value
    runner.release.set()
    service.wait_idle()
    service.dispatch()
    service.wait_idle()
    states = {r.scheduled_for: (r.state, r.reason) for r in runs_of(Session, job.id)}
    assert states[T0][0] == RunState.succeeded.value
    assert states[T0 + dt.timedelta(days=1)][0] == RunState.missed.value
    assert states[T0 + dt.timedelta(days=1)][1].startswith("overlap")
    with Session() as session:
        assert session.get(Run, manual.id).state == RunState.succeeded.value
    assert len(runner.requests) == 2


def test_runs_left_running_by_a_dead_service_become_lost(settings, config, Session):
    job = add_job(Session, settings)
    with Session() as session:
        session.add(
            Run(job_id=job.id, scheduled_for=T0, state=RunState.running.value, started_at=T0)
        )
        session.commit()
    runner = RecordingRunner()
    service = make_service(settings, config, FakeClock(T0 + dt.timedelta(minutes=10)), runner)
    service.recover()
    (run,) = runs_of(Session, job.id)
    assert (
        run.state == RunState.lost.value and "stopped while the run was in progress" in run.reason
    )
    assert runner.requests == []  # a lost run is not re-run


def test_a_lost_run_emails_the_owner(settings, config, Session, smtp_server, monkeypatch):
    monkeypatch.setenv("TELEMETRY_SMTP_URL", smtp_server.url)
    from pipeline.config import load_settings

    settings = load_settings()
    job = add_job(Session, settings)
    with Session() as session:
        session.add(
            Run(job_id=job.id, scheduled_for=T0, state=RunState.running.value, started_at=T0)
        )
        session.commit()
    service = make_service(settings, config, FakeClock(T0 + dt.timedelta(minutes=10)), None)
    service.recover()
    (message,) = smtp_server.wait_for(1)
    assert message["X-Envelope-To"] == "demo@example.com"
    assert "demo" in message["Subject"] and "lost" in message["Subject"]
    assert "stopped while the run was in progress" in message.get_payload(decode=True).decode()


def test_disabled_and_expired_jobs_do_not_fire(settings, config, Session):
    add_job(Session, settings, "off", enabled=False)
    add_job(Session, settings, "ended", end_date=T0 - dt.timedelta(days=1))
    service = make_service(settings, config, FakeClock(T0), RecordingRunner())
    assert service.fire_key(DAILY_12, T0) == []


def test_manual_run_and_cancel_through_the_real_local_runner(settings, config, Session):

    job = add_job(Session, settings, command="sleep 3021", timeout_minutes=600)
    service = make_service(settings, config, FakeClock(T0), None)
    with Session() as session:
        run = request_run_now(session, session.get(Job, job.id))
    service.dispatch()
    wait_for(lambda: processes_running("sleep 3021"))
    with Session() as session:
        cancel_run(session, session.get(Run, run.id))
    service.dispatch()
    assert service.wait_idle(60)
    assert not processes_running("sleep 3021")
    with Session() as session:
        done = session.get(Run, run.id)
        assert done.state == RunState.cancelled.value and done.log_key == f"demo/logs/{run.id}.log"


def test_cancelling_a_queued_run_stops_it_before_it_starts(settings, config, Session):
    job = add_job(Session, settings)
    runner = RecordingRunner()
    service = make_service(settings, config, FakeClock(T0), runner)
    with Session() as session:
        run = request_run_now(session, session.get(Job, job.id))
        cancel_run(session, run)
    service.dispatch()
    service.wait_idle()
    assert runner.requests == []
    with Session() as session:
        assert session.get(Run, run.id).state == RunState.cancelled.value


def test_failed_run_emails_the_owner_with_the_end_of_the_log(
    settings, config, Session, smtp_server, monkeypatch
):
    monkeypatch.setenv("TELEMETRY_SMTP_URL", smtp_server.url)
    from pipeline.config import load_settings

    settings = load_settings()
    job = add_job(Session, settings, command="for i in $(seq 1 30); do echo line-$i; done; exit 4")
    service = make_service(settings, config, FakeClock(T0), None)
    service.fire_key(DAILY_12, T0)
    service.wait_idle(60)
    (message,) = smtp_server.wait_for(1)
    body = message.get_payload(decode=True).decode()
    assert message["X-Envelope-To"] == "demo@example.com"
    assert "demo" in message["Subject"] and "failed" in message["Subject"]
    assert "Reason: command exited with status 4" in body
    lines = body.splitlines()
    # The last 20 log lines: line-12 .. line-30 and the scheduler's closing note.
    assert "line-30" in lines and "line-12" in lines and "line-11" not in lines
    assert lines[-1].endswith("command exited with status 4")
    assert runs_of(Session, job.id)[0].state == RunState.failed.value


def test_timed_out_run_emails_the_owner(settings, config, Session, smtp_server, monkeypatch):
    monkeypatch.setenv("TELEMETRY_SMTP_URL", smtp_server.url)
    from pipeline.config import load_settings

    settings = load_settings()
    add_job(
        Session, settings, command="echo started; sleep 300", timeout_minutes=1
    )  # 1 "minute" = 1 s here
    service = make_service(settings, config, FakeClock(T0), None)
    service.fire_key(DAILY_12, T0)
    service.wait_idle(60)
    (message,) = smtp_server.wait_for(1)
    assert "timed out" in message["Subject"]
    assert "started" in message.get_payload(decode=True).decode()


def test_expired_job_is_announced_once(settings, config, Session, smtp_server, monkeypatch):
    monkeypatch.setenv("TELEMETRY_SMTP_URL", smtp_server.url)
    from pipeline.config import load_settings

    settings = load_settings()
    add_job(Session, settings, end_date=T0 - dt.timedelta(hours=1))
    service = make_service(settings, config, FakeClock(T0), RecordingRunner())
    service.dispatch()
    service.dispatch()
    (message,) = smtp_server.wait_for(1)
    assert "expired" in message["Subject"] and "demo" in message["Subject"]
    # dispatch() sends its mail before it returns, and the server keeps a message before it
    # answers: every mail the two dispatches sent is here already
    assert len(smtp_server.messages) == 1


def test_apscheduler_fires_jobs_including_ones_added_while_running(settings, config, Session):
    # Simulated time runs 600x faster: one simulated hour is 6 real seconds.
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(11, 59, 30))
    clock = ScaledClock(start, speed=600)
    first = add_job(Session, settings, "first", created=start - dt.timedelta(minutes=1))
    runner = RecordingRunner()
    service = make_service(settings, config, clock, runner)
    service.start()
    try:
        wait_for(lambda: runs_of(Session, first.id))
        late = add_job(Session, settings, "late", hour=13, created=start)
        wait_for(lambda: runs_of(Session, late.id), timeout=60)
    finally:
        service.stop()
    noon = dt.datetime.combine(day, dt.time(12))
    assert runs_of(Session, first.id)[0].scheduled_for == noon
    assert runs_of(Session, late.id)[0].scheduled_for == noon + dt.timedelta(hours=1)


def test_stopping_the_service_kills_active_runs_and_records_why(settings, config, Session):

    job = add_job(Session, settings, command="sleep 3022", timeout_minutes=600)
    service = make_service(settings, config, FakeClock(T0), None)
    service.fire_key(DAILY_12, T0)
    wait_for(lambda: processes_running("sleep 3022"))
    service.stop(wait_seconds=60)
    assert not processes_running("sleep 3022")
    (run,) = runs_of(Session, job.id)
    assert run.state == RunState.cancelled.value
    assert run.reason == "cancelled: the scheduler service stopped"


@pytest.fixture
def postgres_engine(postgres_url):
    from pipeline.db import init_db

    engine = make_engine(postgres_url)
    try:
        init_db(engine)
        yield engine
    finally:
        engine.dispose()


def test_two_services_on_postgresql_never_run_a_firing_twice(settings, config, postgres_engine):
    Session = session_factory(postgres_engine)
    jobs = [add_job(Session, settings, f"pg-{i}") for i in range(5)]
    runner = RecordingRunner()
    services = [
        SchedulerService(
            settings, config, clock=FakeClock(T0), runners={"local": runner}, engine=postgres_engine
        )
        for _ in range(2)
    ]
    barrier = threading.Barrier(2)

    def fire(service):
        barrier.wait()
        service.fire_key(DAILY_12, T0)

    threads = [threading.Thread(target=fire, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for service in services:
        service.wait_idle()
    assert sorted(r.job_name for r in runner.requests) == sorted(j.name for j in jobs)
    for job in jobs:
        assert [r.state for r in runs_of(Session, job.id)] == [RunState.succeeded.value]
