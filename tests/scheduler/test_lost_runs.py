"""Lost runs go to the runner that recorded facts about them (Runner.abandon through the
RunnerPool), never to a runner named by the service."""

from __future__ import annotations

import datetime as dt

from scheduler.clock import FakeClock
from scheduler.models import RunState
from scheduler.runners import LostRun, Runner, RunOutcome
from scheduler.service import SchedulerService
from tests.support.scheduler import T0, RecordingRunner, add_job, left_running, runs_of


class InstanceRunner(Runner):
    """Records an instance id while a run goes, like the EC2 runner; remembers what it abandons."""

    name = "ec2"
    recorded_fields = ("instance_id",)

    def __init__(self, fail: bool = False) -> None:
        self.abandoned: list[LostRun] = []
        self.fail = fail

    def execute(self, request, on_started=None):
        return RunOutcome(RunState.succeeded, "ok")

    def abandon(self, lost: LostRun) -> None:
        self.abandoned.append(lost)
        if self.fail:
            raise RuntimeError("the cloud is down")


def service_with(settings, config, ec2) -> SchedulerService:
    return SchedulerService(
        settings,
        config,
        clock=FakeClock(T0 + dt.timedelta(minutes=10)),
        runners={"local": RecordingRunner(), "ec2": ec2},
    )


def test_a_lost_run_with_an_instance_goes_to_the_runner_that_recorded_it(
    settings,
    config,
    Session,
):
    job = add_job(Session, settings)
    with_instance = left_running(Session, job.id, T0, "i-0123")
    without = left_running(Session, job.id, T0 - dt.timedelta(days=1))
    ec2 = InstanceRunner()
    service_with(settings, config, ec2).mark_lost()
    assert ec2.abandoned == [LostRun(with_instance, {"instance_id": "i-0123"})]
    states = {run.id: run.state for run in runs_of(Session, job.id)}
    assert states == {with_instance: RunState.lost.value, without: RunState.lost.value}


def test_a_failed_cleanup_still_records_the_run_lost(
    settings,
    config,
    Session,
):
    job = add_job(Session, settings)
    run_id = left_running(Session, job.id, T0, "i-0456")
    ec2 = InstanceRunner(fail=True)
    service_with(settings, config, ec2).mark_lost()
    assert [lost.run_id for lost in ec2.abandoned] == [run_id]
    (run,) = runs_of(Session, job.id)
    assert run.state == RunState.lost.value
