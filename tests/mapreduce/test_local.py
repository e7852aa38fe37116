"""The local engine end to end: `python -m mapreduce.job` over generated published data."""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lz4.frame
import pytest

from mapreduce import synthetic
from mapreduce.job import main
from pipeline.layout import DIMENSIONS, dimensions_from_key, published_key
from pipeline.stores import open_store
from pipeline.stores.local import LocalStore

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "mapreduce" / "examples"

COUNTER = """
def map(key, dims, value, context):
    context.write(",".join(dims), 1)

def combine(key, values, context):
    context.write(key, sum(values))

def reduce(key, values, context):
    context.write(key, sum(values))
"""


@pytest.fixture
def published(tmp_path):
    """A small published data set in a file:// store; returns (url, {key: records})."""
    root = tmp_path / "published"
    store = open_store(f"file://{root}")
    return f"file://{root}", synthetic.small_dataset(store)


def write_script(tmp_path: Path, source: str, name: str = "job.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mapreduce.job", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_output(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    pairs = [line.split("\t", 1) for line in lines]
    assert len({k for k, _ in pairs}) == len(pairs), "a key was written twice"
    return dict(pairs)


def expected_counts(written) -> Counter:
    counts: Counter = Counter()
    for key, records in written.items():
        dims = dimensions_from_key(key)
        counts[",".join(dims[name] for name in DIMENSIONS)] += len(records)
    return counts


def test_simple_counter_counts_records_per_dimension_combination(published, tmp_path):
    url, written = published
    out = tmp_path / "out.txt"
    result = run_cli(
        [
            str(EXAMPLES / "simple_counter.py"),
            "-b",
            url,
            "-m",
            "2",
            "-r",
            "3",
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr
    got = {k: int(v) for k, v in read_output(out).items()}
    assert got == dict(expected_counts(written))
    assert f"plan: {len(written)} files" in result.stderr
    assert "2 mappers, 3 reducers" in result.stderr


def test_map_receives_doc_id_dims_in_dimension_order_and_raw_json(published, tmp_path):
    url, written = published
    script = write_script(
        tmp_path,
        """
import json
def map(key, dims, value, context):
    context.write(key, {"dims": dims, "uptime": json.loads(value)["simpleMeasurements"]["uptime"]})
""",
    )
    out = tmp_path / "out.txt"
    result = run_cli([script, "-b", url, "-m", "2", "-w", str(tmp_path / "work"), "-o", str(out)])
    assert result.returncode == 0, result.stderr
    assert "map-only" in result.stderr
    got = {k: json.loads(v) for k, v in read_output(out).items()}
    expected = {}
    for key, records in written.items():
        dims = dimensions_from_key(key)
        for doc_id, body in records:
            expected[doc_id] = {
                "dims": [dims[n] for n in DIMENSIONS],
                "uptime": body["simpleMeasurements"]["uptime"],
            }
    assert got == expected


def test_output_is_identical_whatever_the_hash_seed(published, tmp_path):
    """Partitioning uses a stable hash: the reducer parts (and so the bytes) do not move."""
    url, _ = published
    script = write_script(tmp_path, COUNTER)
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out{seed}.txt"
        result = run_cli(
            [script, "-b", url, "-m", "2", "-r", "4", "-w", str(tmp_path / "work"), "-o", str(out)],
            env={"PYTHONHASHSEED": seed},
        )
        assert result.returncode == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0]


class RecordingStore(LocalStore):
    """A directory store that appends every open and listing call to a log file.

    The log is a file (not a list) because mappers run in forked processes.
    """

    def __init__(self, root: str, log: str) -> None:
        super().__init__(f"file://{root}", root)
        self.log = log

    def _note(self, kind: str, key: str) -> None:
        with open(self.log, "a") as handle:
            handle.write(f"{kind}\t{key}\n")

    def open(self, key):
        self._note("open", key)
        return super().open(key)

    def list(self, prefix=""):
        self._note("list", prefix)
        return super().list(prefix)

    def list_prefixes(self, prefix=""):
        self._note("list_prefixes", prefix)
        return super().list_prefixes(prefix)


class RecordingOpener:
    def __init__(self, root: str, log: str) -> None:
        self.root, self.log = root, log

    def __call__(self) -> RecordingStore:
        return RecordingStore(self.root, self.log)


def test_filter_never_opens_or_lists_what_it_excludes(published, tmp_path, capsys):
    url, written = published
    root = url[len("file://") :]
    log = tmp_path / "store.log"
    flt = tmp_path / "filter.json"
    flt.write_text(
        json.dumps(
            {
                "dimensions": [
                    {"field_name": "reason", "allowed_values": "saved-session"},
                    {"field_name": "appUpdateChannel", "allowed_values": ["beta", "nightly"]},
                ]
            }
        )
    )
    out = tmp_path / "out.txt"
    code = main(
        [
            write_script(tmp_path, COUNTER),
            "-f",
            str(flt),
            "-b",
            url,
            "-m",
            "2",
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(out),
        ],
        store=RecordingStore(root, str(log)),
        store_opener=RecordingOpener(root, str(log)),
    )
    assert code == 0, capsys.readouterr().err
    calls = [line.split("\t") for line in log.read_text().splitlines()]
    opened = {key for kind, key in calls if kind == "open"}
    wanted = {
        k
        for k in written
        if k.startswith("saved_session/") and k.split("/")[2] in ("beta", "nightly")
    }
    assert wanted and opened == wanted
    listed = [key for kind, key in calls if kind != "open"]
    assert not any(p.startswith("idle_daily/") for p in listed), listed
    assert not any(
        p.count("/") >= 3 and p.split("/")[2] not in ("beta", "nightly") for p in listed
    ), listed
    got = {k: int(v) for k, v in read_output(out).items()}
    assert got == {
        k: v
        for k, v in expected_counts(written).items()
        if k.startswith("saved_session,") and k.split(",")[2] in ("beta", "nightly")
    }


def _put_raw(root: Path, dims_index: int, object_id: str, data: bytes) -> str:
    key = published_key(synthetic.partition_dims(dims_index), object_id)
    LocalStore(f"file://{root}", str(root)).put(key, data)
    return key


def test_corrupt_file_and_bad_lines_are_skipped_counted_and_named(published, tmp_path):
    url, written = published
    root = Path(url[len("file://") :])
    good = lz4.frame.compress(b'id-1\t{"a": 1}\n')
    corrupt_key = _put_raw(root, 0, "corrupt", good[: len(good) // 2] + b"garbage" * 20)
    not_lz4_key = _put_raw(root, 1, "notlz4", b"this is not an lz4 frame at all")
    bad_lines_key = _put_raw(
        root,
        2,
        "badlines",
        lz4.frame.compress(
            b'ok-1\t{"x": 1}\n'
            b"no tab on this line\n"
            b'ok-2\t{"x": 2}\n'
            b'truncated\t{"x": 3, "y": [1, 2\n'
            b'\xff\xfe\t{"bad": "utf8"}\n'
        ),
    )
    out = tmp_path / "out.txt"
    result = run_cli(
        [
            write_script(tmp_path, COUNTER),
            "-b",
            url,
            "-m",
            "2",
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "2 corrupt file(s)" in result.stderr
    assert corrupt_key in result.stderr and not_lz4_key in result.stderr
    assert "3 unparsable line(s) skipped in 1 file(s)" in result.stderr
    assert f"{bad_lines_key}: 3" in result.stderr
    expected = expected_counts(written)
    dims = dimensions_from_key(bad_lines_key)
    expected[",".join(dims[n] for n in DIMENSIONS)] += 2  # the two good lines of the bad-lines file
    assert {k: int(v) for k, v in read_output(out).items()} == dict(expected)


@pytest.mark.parametrize("kind", ["bad_line", "corrupt"])
def test_strict_fails_on_bad_data_and_writes_no_output(published, tmp_path, kind):
    url, _ = published
    root = Path(url[len("file://") :])
    data = (
        lz4.frame.compress(b"no tab here\n") if kind == "bad_line" else b"\x04\x22\x4d\x18garbage"
    )
    key = _put_raw(root, 3, "bad", data)
    out = tmp_path / "out.txt"
    result = run_cli(
        [
            write_script(tmp_path, COUNTER),
            "-b",
            url,
            "-m",
            "2",
            "--strict",
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(out),
        ]
    )
    assert result.returncode == 3, result.stderr
    assert key in result.stderr and "--strict" in result.stderr
    assert not out.exists()


def test_raising_map_reports_key_file_and_traceback(published, tmp_path):
    url, written = published
    victim_key, records = sorted(written.items())[5]
    victim_doc = records[3][0]
    script = write_script(
        tmp_path,
        f"""
def map(key, dims, value, context):
    if key == {victim_doc!r}:
        raise ValueError("cannot handle this record")
    context.write(key, 1)

def reduce(key, values, context):
    context.write(key, sum(values))
""",
    )
    out = tmp_path / "out.txt"
    result = run_cli([script, "-b", url, "-m", "2", "-w", str(tmp_path / "work"), "-o", str(out)])
    assert result.returncode == 1
    assert "raised in map()" in result.stderr
    assert victim_doc in result.stderr and victim_key in result.stderr
    assert "Traceback" in result.stderr and "cannot handle this record" in result.stderr
    assert not out.exists()


def test_raising_reduce_reports_the_key(published, tmp_path):
    url, _ = published
    script = write_script(
        tmp_path,
        """
def map(key, dims, value, context):
    context.write(dims[2], 1)

def reduce(key, values, context):
    if key == "beta":
        raise KeyError("no beta please")
    context.write(key, sum(values))
""",
    )
    result = run_cli(
        [
            script,
            "-b",
            url,
            "-m",
            "2",
            "-r",
            "2",
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(tmp_path / "out.txt"),
        ]
    )
    assert result.returncode == 1
    assert "raised in reduce() for key 'beta'" in result.stderr
    assert "no beta please" in result.stderr


def test_a_key_that_is_not_json_able_is_reported_as_a_script_error(published, tmp_path):
    url, _ = published
    script = write_script(
        tmp_path,
        """
def map(key, dims, value, context):
    context.write({1, 2}, 1)

def reduce(key, values, context):
    context.write(key, sum(values))
""",
    )
    result = run_cli([script, "-b", url, "-w", str(tmp_path / "work"), "-o", str(tmp_path / "o")])
    assert result.returncode == 1
    assert "keys must be JSON-able" in result.stderr


def test_script_without_map_is_a_usage_error(published, tmp_path):
    url, _ = published
    result = run_cli(
        [
            write_script(tmp_path, "def reduce(k, v, c):\n    pass\n"),
            "-b",
            url,
            "-w",
            str(tmp_path / "work"),
        ]
    )
    assert result.returncode == 2
    assert "defines no map(key, dims, value, context)" in result.stderr


def test_local_only_reads_the_data_dir_and_delete_data_removes_what_it_mapped(published, tmp_path):
    url, written = published
    data_dir = tmp_path / "cache"
    copied = sorted(written)[:4]
    for key in copied:
        target = data_dir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((Path(url[len("file://") :]) / key).read_bytes())
    out = tmp_path / "out.txt"
    # --bucket names a store that does not exist: --local-only must not touch it.
    result = run_cli(
        [
            write_script(tmp_path, COUNTER),
            "-b",
            "s3://no-such-bucket/x",
            "-l",
            "-X",
            "-d",
            str(data_dir),
            "-m",
            "2",
            "-w",
            str(tmp_path / "work"),
            "-o",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert sum(int(v) for v in read_output(out).values()) == sum(len(written[k]) for k in copied)
    assert not any((data_dir / key).exists() for key in copied)


def test_profile_writes_pstats_files_per_mapper_and_reducer(published, tmp_path):
    url, _ = published
    work = tmp_path / "work"
    result = run_cli(
        [
            write_script(tmp_path, COUNTER),
            "-b",
            url,
            "-m",
            "2",
            "-r",
            "2",
            "-p",
            "-w",
            str(work),
            "-o",
            str(tmp_path / "out.txt"),
        ]
    )
    assert result.returncode == 0, result.stderr
    profiles = sorted(p.name for p in (work / "profiles").iterdir())
    assert profiles == ["map-0.prof", "map-1.prof", "reduce-0.prof", "reduce-1.prof"]
    stats = pstats.Stats(str(work / "profiles" / "map-0.prof"))
    assert any(func[2] == "map" for func in stats.stats)


def test_help_explains_flags_and_shows_effective_defaults(tmp_path):
    published_url = f"file://{tmp_path}/elsewhere"
    result = run_cli(["--help"], env={"TELEMETRY_PUBLISHED_URL": published_url})
    assert result.returncode == 0
    for flag in (
        "--input-filter",
        "--num-mappers",
        "--num-reducers",
        "--data-dir",
        "--work-dir",
        "--output",
        "--bucket",
        "--local-only",
        "--delete-data",
        "--profile",
        "--engine",
        "--scheduler",
        "--strict",
        "--progress",
    ):
        assert flag in result.stdout
    assert published_url in result.stdout


def test_empty_selection_gives_empty_output(published, tmp_path):
    url, _ = published
    flt = tmp_path / "filter.json"
    flt.write_text(
        json.dumps({"dimensions": [{"field_name": "appName", "allowed_values": "Thunderbird"}]})
    )
    out = tmp_path / "out.txt"
    result = run_cli(
        [
            write_script(tmp_path, COUNTER),
            "-f",
            str(flt),
            "-b",
            url,
            "-w",
            str(tmp_path / "w"),
            "-o",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "plan: 0 files in 0 partitions" in result.stderr
    assert out.read_text() == ""


def test_raising_combine_is_reported_as_combine(published, tmp_path):
    url, _ = published
    script = write_script(
        tmp_path,
        """
def map(key, dims, value, context):
    context.write(dims[2], 1)

def combine(key, values, context):
    raise ZeroDivisionError("combine broke")

def reduce(key, values, context):
    context.write(key, sum(values))
""",
    )
    result = run_cli(
        [script, "-b", url, "-m", "1", "-w", str(tmp_path / "work"), "-o", str(tmp_path / "o")]
    )
    assert result.returncode == 1
    assert "raised in combine() for key" in result.stderr and "combine broke" in result.stderr


def test_a_mapper_that_dies_without_reporting_is_an_engine_failure(published, tmp_path):
    url, _ = published
    script = write_script(
        tmp_path,
        """
import os
def map(key, dims, value, context):
    os._exit(7)
""",
    )
    out = tmp_path / "out.txt"
    result = run_cli([script, "-b", url, "-m", "2", "-w", str(tmp_path / "work"), "-o", str(out)])
    assert result.returncode == 4
    assert "died with exit code 7" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "0"], "must be at least 1"),
        (["--scheduler", "tcp://127.0.0.1:1"], "only applies with --engine dask"),
        (["-f", "FILTER_MISSING"], "file does not exist"),
        (["-f", "FILTER_BAD"], "unknown dimension"),
        (["-b", "ftp://somewhere/x"], "unknown scheme"),
        (["SCRIPT_SYNTAX"], "does not compile"),
    ],
)
def test_usage_errors_exit_2_with_an_actionable_message(published, tmp_path, args, message):
    url, _ = published
    (tmp_path / "bad_filter.json").write_text('{"dimensions": [{"field_name": "colour"}]}')
    replacements = {
        "FILTER_MISSING": str(tmp_path / "missing.json"),
        "FILTER_BAD": str(tmp_path / "bad_filter.json"),
    }
    script = write_script(tmp_path, COUNTER)
    if args == ["SCRIPT_SYNTAX"]:
        script, args = write_script(tmp_path, "def map(:\n", "broken.py"), []
    args = [replacements.get(a, a) for a in args]
    bucket = [] if "-b" in args else ["-b", url]
    result = run_cli([script, *bucket, "-w", str(tmp_path / "work"), *args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_progress_bars_only_when_asked_or_on_a_terminal(published, tmp_path):
    url, _ = published
    script = write_script(tmp_path, COUNTER)
    common = [
        script,
        "-b",
        url,
        "-m",
        "2",
        "-w",
        str(tmp_path / "work"),
        "-o",
        str(tmp_path / "out.txt"),
    ]
    quiet = run_cli(common)  # stderr is a pipe, not a terminal
    assert quiet.returncode == 0, quiet.stderr
    assert "%|" not in quiet.stderr
    shown = run_cli([*common, "--progress"])
    assert shown.returncode == 0, shown.stderr
    assert "map:" in shown.stderr and "%|" in shown.stderr
    assert "reduce:" in shown.stderr and "keys" in shown.stderr
