"""The HTML report renders in a real browser with data in every plot; compare refuses runs
with different populations or seeds; progress and logs stay out of the way."""

import json
import re
import shutil
import subprocess

import polars as pl
import pytest
from click.testing import CliRunner

from bonecohort.shell.cli import main

from test_cli import SMALL

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cfg = root / "small.toml"
    cfg.write_text(SMALL)
    out = root / "run"
    res = CliRunner().invoke(main, ["run", str(cfg), "-n", "1000", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return out


def test_run_writes_a_self_contained_report(run_dir):
    page = (run_dir / "report.html").read_text()
    # BMD, cumulative incidence, T-scores, relative risks, benefit-harm balance sheet
    assert page.count('<figure class="plot">') == 5
    assert "Cost-effectiveness" in page and "ICER" in page
    assert "research model, not medical advice" in page
    assert "estradiol" in page and "evidence grade" in page
    # nothing loaded from elsewhere: only in-page references ("#id") are allowed
    assert not re.findall(r'(?:src|href)="(?!#)', page)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package 'chromium') is "
                    "not installed; .ci/run installs it")
def test_every_plot_has_data_in_a_browser(run_dir, tmp_path):
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         (run_dir / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert 'data-ready="yes"' in dom  # the page's script ran
    counts = [int(x.split('"')[1]) for x in dom.split("data-series=")[1:]]
    assert len(counts) == 5 and all(c >= 2 for c in counts), counts


def test_report_command_rebuilds_and_refuses_non_runs(run_dir, tmp_path):
    (run_dir / "report.html").unlink()
    res = CliRunner().invoke(main, ["report", str(run_dir)])
    assert res.exit_code == 0 and (run_dir / "report.html").is_file()
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a finished run directory" in res.output
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "manifest.json").write_text("{")
    res = CliRunner().invoke(main, ["report", str(broken)])
    assert res.exit_code == 2 and "cannot build the report" in res.output
    assert "Traceback" not in res.output


def test_compare_one_table_and_refuses_other_seeds(run_dir, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(run_dir, other)
    res = CliRunner().invoke(main, ["compare", str(run_dir), str(other), "--out",
                                    str(tmp_path / "cmp.csv")])
    assert res.exit_code == 0, res.output
    table = pl.read_csv(tmp_path / "cmp.csv")
    assert table.height == 4 and set(table["run"]) == {str(run_dir), str(other)}
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["seed"] += 1
    (other / "manifest.json").write_text(json.dumps(manifest))
    res = CliRunner().invoke(main, ["compare", str(run_dir), str(other)])
    assert res.exit_code == 2 and "differ in seed" in res.output and "Traceback" not in res.output


def test_quiet_run_prints_only_results(run_dir, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    res = CliRunner().invoke(main, ["run", str(cfg), "-n", "1000", "--out", str(tmp_path / "o"),
                                    "-q"])
    assert res.exit_code == 0
    assert "first chunk compiled" not in res.output and "Study 'small'" in res.output
    res = CliRunner().invoke(main, ["run", str(cfg), "-n", "1000", "--out", str(tmp_path / "p")])
    assert "first chunk compiled" in res.output and "report written" in res.output


def test_agents_lists_every_agent_with_evidence_and_sources():
    from bonecohort.exposure.agents import AGENTS

    res = CliRunner().invoke(main, ["agents", "--sources"])
    assert res.exit_code == 0
    for name, agent in AGENTS.items():
        assert f"{name}  [{agent.kind}]" in res.output
        for route in agent.routes.values():
            assert route.dose_unit in res.output
    assert res.output.count("evidence:") == len(AGENTS)
    assert res.output.count("WARNING:") == 3  # the two GH secretagogues; testosterone (TRAVERSE)


def test_risk_command_rises_with_age(run_dir):
    values = []
    for age in ("55", "75"):
        res = CliRunner().invoke(main, ["risk", "--age", age, "--tscore", "-2.5"])
        assert res.exit_code == 0, res.output
        values.append(float(res.output.split("hip fracture ")[1].split(" %")[0]))
    assert values[1] > values[0] > 0.0
    res = CliRunner().invoke(main, ["risk", "--age", "20", "--tscore", "-2.5"])
    assert res.exit_code == 2 and "Traceback" not in res.output
