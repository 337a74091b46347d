"""bench.environment: what the fingerprint says of the checkout."""

import subprocess

from bench import environment


def test_rewritten_results_leave_the_code_clean_but_a_code_change_does_not(tmp_path,
                                                                           monkeypatch):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "run.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.setattr(environment, "REPO", tmp_path)
    assert environment.git_state()["dirty"] is False
    (tmp_path / "results" / "run.json").write_text('{"again": 1}')
    assert environment.git_state()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    state = environment.git_state()
    assert state["dirty"] is True and len(state["commit"]) == 40
