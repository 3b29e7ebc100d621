"""The sdist and the wheel `python -m build` makes: their metadata (name, the one version, Python
versions, license, classifiers), the LICENSE file, the typing files in the wheel, and the wheel
holding the runtime only (the bench and the demo stay in the checkout and the sdist)."""
import email.parser
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest

import allcores
from budget import tools_suite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytest.importorskip("build")

try:
    import tomllib
except ImportError:  # pragma: no cover - 3.11 has it
    tomllib = None


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """Builds the sdist, then the wheel from it (as `python -m build` does by default), with the
    build tools of this environment (no download)."""
    if not os.path.isdir(os.path.join(ROOT, ".git")) and \
            not os.path.isfile(os.path.join(ROOT, ".git")):
        pytest.skip("the sdist is made by `meson dist`, which needs a git checkout")
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                          ROOT], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    sdists = list(out.glob("allcores-*.tar.gz"))
    wheels = list(out.glob("allcores-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, os.listdir(out)
    return sdists[0], wheels[0]


def _check_metadata(text):
    meta = email.parser.Parser().parsestr(text)
    project = _pyproject()
    assert meta["Name"] == "allcores"
    assert meta["Version"] == project["version"] == allcores.__version__
    assert meta["Requires-Python"] == project["requires-python"]
    assert meta["License-Expression"] == "MIT"
    assert meta["Author"] == "allcores developers"
    classifiers = meta.get_all("Classifier")
    for c in ("Operating System :: POSIX :: Linux", "Typing :: Typed",
              "Programming Language :: Python :: 3.11"):
        assert c in classifiers
    assert any(r.startswith("cloudpickle") for r in meta.get_all("Requires-Dist"))
    return meta


@tools_suite
def test_wheel_metadata_and_files(dist):
    _sdist, wheel = dist
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        _check_metadata(z.read(info).decode())
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses and "MIT License" in z.read(licenses[0]).decode()
        assert "allcores/py.typed" in names
        for stub in ("__init__.pyi", "pool.pyi", "executor.pyi", "aio.pyi", "shared.pyi"):
            assert f"allcores/{stub}" in names, stub
        assert any(re.fullmatch(r"allcores/_core\..*\.so", n) for n in names)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"allcores", next(t for t in tops if t.endswith(".dist-info"))}, tops
    tooling = [n for n in names if re.search(r"bench|demo|/gil/cost\.py", n)]
    assert not tooling, tooling


@tools_suite
def test_sdist_metadata_and_files(dist):
    sdist, _wheel = dist
    with tarfile.open(sdist) as t:
        names = t.getnames()
        top = names[0].split("/")[0]
        _check_metadata(t.extractfile(f"{top}/PKG-INFO").read().decode())
        for f in ("LICENSE", "README.md", "pyproject.toml", "meson.build",
                  "src/allcores/py.typed", "src/core/region.c",
                  "benchmarks/allcores_bench/__init__.py", "demo/allcores_demo.py"):
            assert f"{top}/{f}" in names, f


def test_the_version_is_written_once():
    with open(os.path.join(ROOT, "meson.build")) as f:
        project_call = f.read().split("project(", 1)[1].split(")", 1)[0]
    assert "version" not in project_call.replace("meson_version", "")
    for name in ("__init__.py", "cli.py"):
        with open(os.path.join(ROOT, "src", "allcores", name)) as f:
            assert not re.search(r"\d+\.\d+\.\d+", f.read()), name
    assert allcores.__version__ == _pyproject()["version"] == importlib.metadata.version("allcores")
