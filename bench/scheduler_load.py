"""Scheduler under load: 1,000 jobs over one simulated day, driven by the real service.

APScheduler sleeps in wall time while a ScaledClock compresses the simulated day (default:
one day in 60 s). Each job gets a random daily/weekly/monthly schedule; runs go to a no-op
runner that records when it was called, so the figures measure the scheduler itself (alarm
-> Run rows -> runner start). Printed: firing delay p50/p99/max in *wall* seconds (target:
every run starts within 1 s of its scheduled time), runs started vs expected, and the
service process's CPU time and RSS (target: RSS < 150 MB).

    .venv/bin/python bench/scheduler_load.py               # 1,000 jobs, a day in 60 s
    .venv/bin/python bench/scheduler_load.py --jobs 5000 --day-seconds 240
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_settings  # noqa: E402
from scheduler.clock import ScaledClock, as_utc  # noqa: E402
from scheduler.config import SchedulerConfig  # noqa: E402
from scheduler.models import Job, RunState  # noqa: E402
from scheduler.runners.base import Runner, RunOutcome  # noqa: E402
from scheduler.service import SchedulerService  # noqa: E402
from scheduler.triggers import firings_between  # noqa: E402


class NoopRunner(Runner):
    name = "local"

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.lock = threading.Lock()

    def execute(self, request, on_started=None):
        with self.lock:
            self.started[request.run_id] = time.time()
        return RunOutcome(RunState.succeeded, "no-op", exit_code=0)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--jobs", type=int, default=1000, help="number of jobs (default: %(default)s)"
    )
    parser.add_argument(
        "--day-seconds",
        type=float,
        default=60.0,
        help="wall seconds per simulated day (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="random seed for the schedules (default: %(default)s)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also print the worst delay of each simulated hour"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    tmp = tempfile.mkdtemp(prefix="scheduler-bench-")
    settings = load_settings(env={"TELEMETRY_DATA_DIR": tmp})
    config = SchedulerConfig(sync_seconds=5, dispatch_seconds=1, grace_seconds=3600)
    day = dt.datetime(2024, 2, 29)  # a leap day: monthly jobs on the 29th-31st fire too
    # Begin the simulated clock a few wall seconds before midnight so start-up is not measured.
    start = day - dt.timedelta(seconds=3 * 86400 / args.day_seconds)
    clock = ScaledClock(start, speed=86400 / args.day_seconds)
    runner = NoopRunner()
    service = SchedulerService(settings, config, clock=clock, runners={"local": runner})

    rng = random.Random(args.seed)
    expected = 0
    end = day + dt.timedelta(days=1) - dt.timedelta(seconds=1)
    with service.Session() as session:
        for i in range(args.jobs):
            kind = rng.choices(["daily", "weekly", "monthly"], [70, 20, 10])[0]
            job = Job(
                name=f"job-{i:05d}",
                owner=f"u{i}@example.com",
                tarball_key="x/y.tar.gz",
                command="true",
                output_dir="output",
                frequency=kind,
                hour=rng.randrange(24),
                timeout_minutes=5,
                day_of_week=rng.randrange(7) if kind == "weekly" else None,
                day_of_month=rng.randrange(1, 32) if kind == "monthly" else None,
                created_at=start - dt.timedelta(minutes=1),
            )
            expected += len(list(firings_between(job, day - dt.timedelta(microseconds=1), end)))
            session.add(job)
        session.commit()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.time()
    service.start()
    finish_wall = clock.to_wall(as_utc(end)).timestamp() + 3
    while time.time() < finish_wall:
        time.sleep(0.5)
    service.stop()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)

    with service.Session() as session:
        from sqlalchemy import select

        from scheduler.models import Run

        runs = session.execute(select(Run.id, Run.scheduled_for, Run.state)).all()
    delays = []
    runs = [r for r in runs if day <= r.scheduled_for <= end]  # the simulated day only
    late_by_hour: dict[int, float] = {}
    for run_id, scheduled_for, _state in runs:
        if run_id in runner.started:
            delay = runner.started[run_id] - clock.to_wall(as_utc(scheduled_for)).timestamp()
            delays.append(delay)
            late_by_hour[scheduled_for.hour] = max(late_by_hour.get(scheduled_for.hour, 0.0), delay)
    delays.sort()
    missed = sum(1 for r in runs if r.state == RunState.missed.value)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    wall = time.time() - wall0
    print(f"jobs: {args.jobs}")
    print(f"simulated_day_wall_seconds: {args.day_seconds:g} s")
    print(f"runs_expected: {expected}")
    print(f"runs_started: {len(delays)}")
    print(f"runs_missed: {missed}")
    if delays:
        print(f"firing_delay_p50: {statistics.median(delays):.3f} s")
        print(f"firing_delay_p99: {delays[min(len(delays) - 1, int(len(delays) * 0.99))]:.3f} s")
        print(f"firing_delay_max: {delays[-1]:.3f} s")
        print(f"runs_within_1s: {sum(d <= 1.0 for d in delays)}/{len(delays)}")
    if args.verbose:
        for hour, worst in sorted(late_by_hour.items()):
            print(f"firing_delay_max_hour_{hour:02d}: {worst:.3f} s")
    print(f"service_cpu: {cpu:.2f} s over {wall:.1f} s wall ({100 * cpu / wall:.1f} %)")
    print(f"service_rss: {rss_mb():.1f} MB")
    print(f"service_max_rss: {cpu1.ru_maxrss / 1024:.1f} MB")
    ok = len(delays) == expected and delays and delays[-1] <= 1.0 and cpu1.ru_maxrss / 1024 < 150
    print(f"targets_met: {'yes' if ok else 'no'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
