"""bench.io: atomic writes, and strict JSON with non-finite floats kept."""

import json
import math
import os

import pytest

from bench import io


def test_write_atomic_replaces_the_file(tmp_path):
    path = tmp_path / "r.json"
    io.write_text(path, "old")
    io.write_text(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["r.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would have made it


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_write_interrupted_midway_leaves_the_old_file_whole(tmp_path, monkeypatch, failing):
    path = tmp_path / "r.json"
    io.write_text(path, "old")

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, failing, killed)
    with pytest.raises(KeyboardInterrupt):
        io.write_text(path, "new" * 1000)
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def test_json_is_strict_and_keeps_non_finite_floats(tmp_path):
    path = tmp_path / "d.json"
    io.write_json(path, {"a": [1.5, math.nan, math.inf], "b": {"c": -math.inf}})
    text = path.read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard {name}"))
    back = io.read_json(path)
    assert back["a"][0] == 1.5 and math.isnan(back["a"][1]) and back["a"][2] == math.inf
    assert back["b"]["c"] == -math.inf


def test_a_damaged_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"a": [1, 2')
    with pytest.raises(ValueError, match="d.json"):
        io.read_json(path)


def test_create_json_is_whole_at_once_and_exclusive(tmp_path):
    path = tmp_path / "new.json"
    io.create_json(path, {"a": 1})
    assert io.read_json(path) == {"a": 1}
    with pytest.raises(FileExistsError):
        io.create_json(path, {"a": 2})
    assert io.read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json"]
