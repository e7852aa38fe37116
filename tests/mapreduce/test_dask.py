"""The Dask runner gives the same answers as the local engine, on a real LocalCluster.

One cluster (2 worker processes, 1 thread each) serves the whole module; jobs reach it with
`--scheduler`, exactly as they would reach a shared cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lz4.frame
import pytest

from mapreduce import synthetic
from mapreduce.job import main
from pipeline.layout import published_key
from pipeline.stores import open_store

distributed = pytest.importorskip("dask.distributed")
import dask  # noqa: E402  (after the skip: the dask extra is optional)

from mapreduce.dask_runner import WORKER_CONFIG  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "mapreduce" / "examples"

MAP_ONLY = """
import json
def map(key, dims, value, context):
    context.write(key, [dims[2], json.loads(value)["info"]["OS"]])
"""

NO_COMBINE = """
def map(key, dims, value, context):
    context.write((dims[0], dims[3]), len(value))

def setup_reduce(context):
    context.write("reducer-started", 1)

def reduce(key, values, context):
    values = list(values)
    context.write(key, [len(values), sum(values)])
"""


@pytest.fixture(scope="module")
def cluster():
    with (
        dask.config.set(WORKER_CONFIG),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as local_cluster,
    ):
        yield local_cluster.scheduler_address


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    store = open_store(f"file://{root}")
    written = synthetic.small_dataset(store, partitions=16, records=60)
    store.put(
        published_key(synthetic.partition_dims(5), "broken"), b"\x04\x22\x4d\x18 not really lz4"
    )
    store.put(
        published_key(synthetic.partition_dims(6), "badline"),
        lz4.frame.compress(b'good-1\t{"info": {"OS": "Linux"}}\nbad line\n'),
    )
    return f"file://{root}", written


def run_job(
    script: str, url: str, tmp_path: Path, *extra: str
) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the CLI in a fresh interpreter (how the local engine is always used)."""
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.txt"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mapreduce.job",
            script,
            "-b",
            url,
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(out),
            *extra,
        ],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    return result, out


def run_on_cluster(capsys, cluster: str, script: str, url: str, tmp_path: Path, *extra: str):
    """Run the CLI's main() in this process against the module's cluster (saves a Dask import)."""
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.txt"
    capsys.readouterr()
    code = main(
        [
            script,
            "-b",
            url,
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(out),
            "--engine",
            "dask",
            "--scheduler",
            cluster,
            *extra,
        ]
    )
    captured = capsys.readouterr()
    return subprocess.CompletedProcess([], code, captured.out, captured.err), out


def write_script(tmp_path: Path, source: str) -> str:
    path = tmp_path / f"job{len(list(tmp_path.glob('job*.py')))}.py"
    path.write_text(source)
    return str(path)


@pytest.mark.parametrize(
    "script, extra",
    [
        (str(EXAMPLES / "simple_counter.py"), ["-r", "3"]),
        (
            str(EXAMPLES / "osdistribution.py"),
            ["-r", "2", "-f", str(EXAMPLES / "osdistribution_filter.json")],
        ),
        (str(EXAMPLES / "histogram_aggregate.py"), ["-r", "4"]),
        ("NO_COMBINE", ["-r", "3", "--spill-records", "50"]),
        ("MAP_ONLY", []),
    ],
    ids=["simple_counter", "osdistribution", "histogram_aggregate", "no_combine", "map_only"],
)
def test_both_engines_write_the_same_lines(cluster, dataset, tmp_path, capsys, script, extra):
    url, _ = dataset
    if script in ("NO_COMBINE", "MAP_ONLY"):
        script = write_script(tmp_path, globals()[script])
    local, local_out = run_job(script, url, tmp_path, "-m", "2", *extra)
    assert local.returncode == 0, local.stderr
    dask, dask_out = run_on_cluster(capsys, cluster, script, url, tmp_path, "-m", "2", *extra)
    assert dask.returncode == 0, dask.stderr
    local_lines = Counter(local_out.read_text().splitlines())
    assert local_lines, "the job wrote nothing: the comparison would prove nothing"
    assert Counter(dask_out.read_text().splitlines()) == local_lines
    bad_data = [_bad_data_report(r.stderr) for r in (local, dask)]
    assert bad_data[0] == bad_data[1]


def _bad_data_report(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("bad data")), len(lines))
    return lines[start:]


def test_bad_data_is_counted_and_named_on_dask(cluster, dataset, tmp_path, capsys):
    url, _ = dataset
    result, _ = run_on_cluster(
        capsys, cluster, str(EXAMPLES / "simple_counter.py"), url, tmp_path, "-m", "2"
    )
    assert result.returncode == 0, result.stderr
    report = _bad_data_report(result.stderr)
    assert "1 corrupt file(s)" in report[0] and "broken" in report[1]
    assert any("1 unparsable line(s) skipped in 1 file(s)" in line for line in report)
    assert any("badline" in line and line.endswith(": 1") for line in report)


def test_a_raising_script_on_dask_exits_non_zero_with_key_and_file(
    cluster, dataset, tmp_path, capsys
):
    url, written = dataset
    victim_key, records = sorted(written.items())[3]
    victim_doc = records[1][0]
    script = write_script(
        tmp_path,
        f"""
def map(key, dims, value, context):
    if key == {victim_doc!r}:
        raise RuntimeError("boom on purpose")
    context.write(dims[2], 1)

def reduce(key, values, context):
    context.write(key, sum(values))
""",
    )
    result, out = run_on_cluster(capsys, cluster, script, url, tmp_path, "-m", "2")
    assert result.returncode == 1
    assert victim_doc in result.stderr and victim_key in result.stderr
    assert "boom on purpose" in result.stderr and "Traceback" in result.stderr
    assert not out.exists()


def test_strict_on_dask_fails_on_bad_data(cluster, dataset, tmp_path, capsys):
    url, _ = dataset
    result, out = run_on_cluster(
        capsys, cluster, str(EXAMPLES / "simple_counter.py"), url, tmp_path, "--strict"
    )
    assert result.returncode == 3
    assert "bad input data" in result.stderr
    assert not out.exists()


def test_dask_without_scheduler_starts_its_own_local_cluster(dataset, tmp_path, capsys):
    url, written = dataset
    out = tmp_path / "out.txt"
    code = main(
        [
            str(EXAMPLES / "simple_counter.py"),
            "-b",
            url,
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(out),
            "-m",
            "1",
            "--engine",
            "dask",
        ]
    )
    assert code == 0, capsys.readouterr().err
    total = sum(int(line.split("\t")[1]) for line in out.read_text().splitlines())
    assert (
        total == sum(len(r) for r in written.values()) + 1
    )  # + the good line of the bad-line file


def test_profile_on_dask_brings_the_stats_home(cluster, dataset, tmp_path, capsys):
    url, _ = dataset
    result, _ = run_on_cluster(
        capsys,
        cluster,
        str(EXAMPLES / "simple_counter.py"),
        url,
        tmp_path,
        "-m",
        "2",
        "-r",
        "2",
        "-p",
    )
    assert result.returncode == 0, result.stderr
    profiles = sorted(p.name for p in (tmp_path / "work" / "profiles").iterdir())
    assert profiles == ["map-0.prof", "map-1.prof", "reduce-0.prof", "reduce-1.prof"]
    import pstats

    assert any(
        func[2] == "reduce"
        for func in pstats.Stats(str(tmp_path / "work" / "profiles" / "reduce-0.prof")).stats
    )
