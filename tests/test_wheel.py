"""It installs like a library: the wheel alone (no source tree, no configs/ folder) runs a study
from any folder."""

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installed_in_a_fresh_environment_runs_the_shipped_study(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                    str(wheels), str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("bonecohort-*.whl")
    # a fresh environment; its dependencies (jax, polars, ...) are borrowed from the test
    # environment's site-packages, appended after its own, so only the wheel provides
    # bonecohort (the test environment's editable install is not activated there)
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    fresh_site = Path(site.stdout.strip())
    (fresh_site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--quiet", "--target", str(fresh_site), str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import bonecohort, sys; "
                            "print(bonecohort.__file__)"], check=True, cwd=work,
                           capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(fresh_site)
    res = subprocess.run([str(python), "-m", "bonecohort", "run", "default", "-n", "300",
                          "--chunk-size", "300", "--out", "out", "-q"], cwd=work,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    assert manifest["patients"] == 300 and manifest["study"] == "default"
    assert Path(manifest["config_path"]).is_relative_to(fresh_site)
    assert len(list((work / "out" / "patients").glob("*.parquet"))) == 1
