"""The charts allcores bench draws (issue 7): PNG files beside the Markdown, linked from it,
each titled with the machine; without matplotlib the bench says so and draws none."""
import contextlib
import io
import json
import pathlib
import sys

import pytest

from allcores import bench
from allcores.bench import plots, report
from allcores.bench.scaling_cases import points

pytestmark = pytest.mark.timeout(240)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    d = tmp_path_factory.mktemp("plots")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench.main(["--quick", "--cases", "rtt,scaling,bytes64,numpy64", "--libs",
                    "allcores,multiprocessing,ProcessPoolExecutor,shm",
                    "--json", str(d / "results" / "r.json"),  # a folder not made yet
                    "--markdown", str(d / "BENCHMARKS.md")])
    doc = json.loads((d / "results" / "r.json").read_text())
    return d, doc, (d / "BENCHMARKS.md").read_text()


def test_three_valid_pngs_beside_the_markdown(run):
    d, doc, _ = run
    assert set(doc["plots"]) == {"speedup", "latency", "transfer"}
    for rel in doc["plots"].values():
        path = d / rel
        assert path.parent == d / "benchmarks" / "plots"
        assert path.name.startswith(plots.machine_tag(doc))
        data = path.read_bytes()
        assert data[:8] == PNG and len(data) > 5000


def test_markdown_links_every_chart_and_has_the_new_sections(run):
    d, doc, md = run
    assert "## Charts" in md
    for rel in doc["plots"].values():
        assert f"]({rel})" in md and (d / rel).exists()
    for name in ("scaling", "bytes64", "numpy64"):
        assert doc["results"][name]["title"] in md
    assert "multiprocessing.shared_memory + Pool (hand-written)" in md


def test_scaling_has_a_point_per_worker_count_and_an_ideal_row(run):
    _, doc, _ = run
    rows = doc["results"]["scaling"]["rows"]
    w = doc["workers"]
    assert {"allcores", "ideal"} <= set(rows)
    for point in points(w):
        assert rows["allcores"][f"speedup_w{point}"] > 0


def test_titles_name_the_machine(run):
    _, doc, _ = run
    m = doc["machine"]
    title = plots._title(doc, "x")
    assert m["cpu"] in title and f"{m['cores']} cores" in title and m["python"] in title


def test_without_matplotlib_the_charts_are_skipped_with_the_reason(run, monkeypatch, tmp_path):
    _, doc, _ = run
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    drawn, why = plots.draw(doc, str(tmp_path / "p"))
    assert drawn == {} and "matplotlib is not installed" in why
    assert not (tmp_path / "p").exists()
    md = report.markdown(dict(doc, plots={}, plots_skipped=why))
    assert "## Charts" in md and "matplotlib is not installed" in md


def test_plots_folder_can_be_chosen(run, tmp_path):
    _, doc, _ = run
    drawn, why = plots.draw(doc, str(tmp_path / "elsewhere"))
    assert why is None and all(pathlib.Path(p).parent == tmp_path / "elsewhere"
                               for p in drawn.values())
