"""bench.speed.results: atomic writes, the versioned document, finding runs."""

import json
import os

import pytest

from bench.speed import results
from bench.speed.cases import QUICK_TIMING, Case, Plan


def small_plan():
    return Plan(profile="test", cases=[Case("lstm", "inference", 3, 2, 4, H) for H in (4, 8)],
                implementations=["torch"], baseline="torch", timing=QUICK_TIMING,
                fresh_process=False)


def test_run_file_round_trip_and_remaining(tmp_path):
    plan = small_plan()
    path = results.run_path(tmp_path, "run1")
    run = results.RunFile.create(path, "run1", plan)
    run.start_session({"cpu": "test"})
    assert path.is_file()
    run.add_cases([{"key": plan.cases[0].key, "case": plan.cases[0].to_dict(),
                    "implementations": {}}])
    loaded = results.RunFile.load(path)
    assert loaded.run_id == "run1"
    assert loaded.plan == plan
    assert loaded.remaining() == plan.cases[1:]
    assert loaded.data["schema"] == results.SCHEMA
    assert loaded.data["schema_version"] == results.SCHEMA_VERSION


def test_create_refuses_to_overwrite(tmp_path):
    path = results.run_path(tmp_path, "run1")
    results.RunFile.create(path, "run1", small_plan()).save()
    with pytest.raises(ValueError, match="already exists; resume it with --resume"):
        results.RunFile.create(path, "run1", small_plan())


@pytest.mark.parametrize("content, match", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"schema": "something.else"}), "expected schema 'rnnbench.bench-results'"),
    (json.dumps([1, 2]), "expected schema"),
    (json.dumps({"schema": results.SCHEMA, "schema_version": 99}), "schema version 99"),
])
def test_load_refuses_what_it_cannot_read(tmp_path, content, match):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        results.RunFile.load(path)


def test_find_run_by_file_folder_or_id_and_latest(tmp_path):
    first = results.RunFile.create(results.run_path(tmp_path, "a"), "a", small_plan())
    first.save()
    second = results.RunFile.create(results.run_path(tmp_path, "b"), "b", small_plan())
    second.save()
    os.utime(first.path, (1, 1))
    assert results.find_run("a", tmp_path) == first.path
    assert results.find_run(str(first.path.parent), tmp_path) == first.path
    assert results.find_run(str(first.path), tmp_path) == first.path
    assert results.latest_run(tmp_path) == second.path
    with pytest.raises(ValueError, match="runs in .*: a, b"):
        results.find_run("c", tmp_path)


def test_latest_run_of_an_empty_folder_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="run `python -m bench` first"):
        results.latest_run(tmp_path)


def test_run_ids_never_collide_within_a_second():
    ids = {results.new_run_id("quick") for _ in range(200)}
    assert len(ids) == 200


def test_a_run_claims_its_file_at_creation(tmp_path):
    path = results.run_path(tmp_path, "same")
    results.RunFile.create(path, "same", small_plan())
    assert results.RunFile.load(path).cases == []  # on disk at once, complete
    with pytest.raises(ValueError, match="already exists"):
        results.RunFile.create(path, "same", small_plan())


@pytest.mark.parametrize("drop", ["plan", "cases", "key", "time"])
def test_an_incomplete_results_file_is_named_in_the_error(tmp_path, drop):
    path = results.run_path(tmp_path, "run")
    run = results.RunFile.create(path, "run", small_plan())
    entry = {"status": "ok", "samples_s": [[1.0, 1.0, 1.0]], "time": {"median": 1.0}}
    run.add_cases([{"key": "k", "case": {}, "implementations": {"torch": entry}}])
    data = json.loads(path.read_text())
    if drop == "key":
        del data["cases"][0]["key"]
    elif drop == "time":
        del data["cases"][0]["implementations"]["torch"]["time"]
    else:
        del data[drop]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"{path}: not a complete results file"):
        results.RunFile.load(path)


def test_leftovers_of_killed_writes_are_removed_on_resume(tmp_path):
    path = results.run_path(tmp_path, "run")
    results.RunFile.create(path, "run", small_plan())
    leftover = path.parent / ".results.abc123.tmp.json"
    leftover.write_text("{half")
    results.RunFile.load(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_retry_forgets_the_groups_with_failures_of_the_given_reasons(tmp_path):
    plan = small_plan()
    path = results.run_path(tmp_path, "run")
    run = results.RunFile.create(path, "run", plan)
    crashed = {"status": "failed", "reason": "crashed", "message": "SIGSEGV"}
    run.add_cases([
        {"key": c.key, "group": c.group, "case": c.to_dict(),
         "implementations": {"torch": crashed if c.H == 8 else {"status": "n/a"}}}
        for c in plan.cases])
    with pytest.raises(ValueError, match="unknown reasons"):
        run.forget_failures(["segfault"])
    assert run.forget_failures(["timeout"]) == []
    assert run.forget_failures(["crashed"]) == [plan.cases[1].key]
    assert results.RunFile.load(path).remaining() == [plan.cases[1]]


def test_a_file_written_before_the_layer_fields_loads_with_their_defaults(tmp_path):
    plan = small_plan()
    path = results.run_path(tmp_path, "old")
    run = results.RunFile.create(path, "old", plan)
    run.add_cases([{"key": plan.cases[0].key, "group": plan.cases[0].group,
                    "case": plan.cases[0].to_dict(), "implementations": {}}])
    data = json.loads(path.read_text())
    for case in [*data["plan"]["cases"], data["cases"][0]["case"]]:
        for field in ("layers", "bidirectional", "lengths"):
            del case[field]
    path.write_text(json.dumps(data))
    loaded = results.RunFile.load(path)
    assert loaded.plan == plan
    assert loaded.remaining() == plan.cases[1:]
    assert loaded.cases[0]["case"] == plan.cases[0].to_dict()
    assert loaded.cases[0]["case"]["lengths"] is None
