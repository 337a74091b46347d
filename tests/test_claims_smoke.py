"""The whole claims run at the `smoke` scale: every experiment, the JSON and the report.

The smoke profile shrinks every experiment to seconds; its verdicts mean nothing, but every
line of measuring, deciding, summarising, plotting and writing runs.
"""

import json

import pytest

from bench import claims
from bench.claims.experiment import STATUSES


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("claims")
    assert claims.main(["--profile", "smoke", "--out", str(out)]) == 0
    return out


def test_every_claim_gets_a_verdict_in_json_and_markdown(smoke_run):
    results = json.loads((smoke_run / "claims" / "claims.json").read_text())
    assert results["profile"] == "smoke"
    assert set(results["claims"]) == set(claims.CLAIMS)
    for record in results["claims"].values():
        assert record["status"] == "ok", record.get("error")
        assert record["verdict"]["status"] in STATUSES
    markdown = (smoke_run / "CLAIMS.md").read_text()
    for claim_id, claim in claims.CLAIMS.items():
        assert f"## {claim_id}\n" in markdown
        assert f"--profile smoke --only {claim_id}`" in markdown
        assert f"**How it is tested:** {claim.method}" in markdown
    assert results["environment"]["versions"]["torch"]
    assert "../" not in markdown


def test_figures_are_linked_and_written(smoke_run):
    markdown = (smoke_run / "CLAIMS.md").read_text()
    figures = sorted((smoke_run / "claims" / "figures").glob("*.png"))
    assert len(figures) >= 10
    for figure in figures:
        assert f"(claims/figures/{figure.name})" in markdown


def test_only_reruns_one_claim_and_keeps_the_others(smoke_run):
    path = smoke_run / "claims" / "claims.json"
    before = json.loads(path.read_text())
    assert claims.main(["--profile", "smoke", "--out", str(smoke_run), "--only", "A3"]) == 0
    after = json.loads(path.read_text())
    assert set(after["claims"]) == set(before["claims"])
    assert after["claims"]["A1"] == before["claims"]["A1"]


def test_report_only_rebuilds_the_markdown_from_json(smoke_run):
    markdown = smoke_run / "CLAIMS.md"
    markdown.unlink()
    assert claims.main(["--profile", "smoke", "--out", str(smoke_run), "--report-only"]) == 0
    assert "## F2" in markdown.read_text()


def test_unknown_claim_id_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        claims.main(["--profile", "smoke", "--only", "Q7", "--out", "/nonexistent"])
    assert exc.value.code == 2
    assert "--only: unknown claim 'Q7'; known claims: A1" in capsys.readouterr().err
