"""The curated notebooks: stored without outputs, each states its goal and checks its result, and each
runs top to bottom (nbclient, a real kernel) on the test demo cube. The scaling-out notebook runs
against the gateway of an embedded platform started here, with a member's hub token."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NEEDS_GATEWAY = {"02-scaling-out.ipynb"}
#: run here on a local cluster, and on the embedded platform's gateway cluster too (issue 18)
ON_THE_GATEWAY_TOO = [
    "08-cycle-dominance.ipynb",
    "09-land-surface-trajectories.ipynb",
    "10-prediction-challenge.ipynb",
]
FIGURES = {
    "01-getting-started.ipynb",
    "03-intrinsic-dimension.ipynb",
    "04-extreme-events.ipynb",
    "05-machine-learning.ipynb",
    "08-cycle-dominance.ipynb",
    "09-land-surface-trajectories.ipynb",
    "10-prediction-challenge.ipynb",
}
#: the use cases of the curated set (issue 7, then 18)
EXPECTED = [
    "00-start-here.ipynb",  # the start page, opened at a person's first login (issue 20)
    "01-getting-started.ipynb",
    "02-scaling-out.ipynb",
    "03-intrinsic-dimension.ipynb",
    "04-extreme-events.ipynb",
    "05-machine-learning.ipynb",
    "06-regional-cube-for-a-team.ipynb",
    "07-visual-analytics.ipynb",
    "08-cycle-dominance.ipynb",  # the talk's annual over semi-annual cycle map (issue 18)
    "09-land-surface-trajectories.ipynb",  # Kraemer et al. 2020 PCs and trajectories (issue 18)
    "10-prediction-challenge.ipynb",  # a DeepExtremes-style challenge (issue 18)
]


def test_the_curated_set_is_complete_stripped_and_states_goal_and_result():
    assert [p.name for p in NOTEBOOKS] == EXPECTED
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        intro = nb.cells[0]
        assert intro.cell_type == "markdown" and "**Goal:**" in intro.source, path.name
        assert "**Result to check:**" in intro.source, path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert "widgets" not in nb.metadata, f"{path.name} stores widget state"
        assert "assert" in code[-1].source, f"{path.name}: the last cell checks the result"


def test_the_start_page_links_every_curated_notebook_and_the_docs():
    """The start page's links open: each curated notebook (its own copy in the home folder) and the docs
    (``~/esdl-docs``, the repository's docs/)."""
    import re

    start = nbformat.read(REPO / "notebooks" / "00-start-here.ipynb", as_version=4)
    text = "\n".join(c.source for c in start.cells if c.cell_type == "markdown")
    links = re.findall(r"\]\(([^)]+)\)", text)
    for link in links:
        path = (
            REPO / "docs" / link.removeprefix("esdl-docs/")
            if link.startswith("esdl-docs/")
            else REPO / "notebooks" / link
        )
        assert path.is_file(), f"the start page links {link}, which a prepared home lacks"
    assert set(EXPECTED) - {"00-start-here.ipynb"} <= set(links), sorted(set(EXPECTED) - set(links))
    assert "esdl-docs/README.md" in links


def execute(path: Path, workdir: Path) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel (environment: this process's); raise on error."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb


def _texts(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                out.append(o.text)
            elif "data" in o and "text/plain" in o.data:
                out.append(o.data["text/plain"])
    return "\n".join(out)


@pytest.fixture()
def session_env(demo_catalog, tmp_path, monkeypatch):
    """What a member's session has: the catalog, a team folder and catalog, a user name."""
    team = tmp_path / "team"
    monkeypatch.setenv("ESDL_TEAM_DIR", str(team))
    monkeypatch.setenv("ESDL_TEAM_CATALOG", str(team / "catalog.yaml"))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as in JupyterLab
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in EXPECTED if n not in NEEDS_GATEWAY])
def test_notebook_runs_top_to_bottom(name, session_env):
    nb = execute(REPO / "notebooks" / name, session_env)
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "data" in o and "image/png" in o.data)
    widgets = sum(
        1
        for c in nb.cells
        for o in c.get("outputs", [])
        if "data" in o and "application/vnd.jupyter.widget-view+json" in o.data
    )
    if name in FIGURES:
        assert images >= 1, f"{name} draws at least one figure"
    if name == "07-visual-analytics.ipynb":
        assert widgets >= 2, "the Lexcube widget and the explorer are displayed"
    assert "Traceback" not in _texts(nb)


@pytest.fixture(scope="module")
def platform(demo_catalog, tmp_path_factory):
    """An embedded platform (``esdl up``) for project nbtest (alice admin, bob member), with the
    curated notebooks and the test demo catalog in every session."""
    from platform_helpers import PlatformEnv, small_spec

    penv = PlatformEnv.create(tmp_path_factory.mktemp("nb-platform"))
    penv.env.update(ESDL_CATALOG=os.environ["ESDL_CATALOG"], ESDL_DATA_DIR=os.environ["ESDL_DATA_DIR"])
    for nb in NOTEBOOKS:
        (penv.root / "notebooks" / nb.name).write_bytes(nb.read_bytes())
    penv.write_spec(small_spec("nbtest", ["alice"], ["bob"]))
    try:
        out = penv.esdl("up", "--project", "nbtest", "--port", "0").stdout
        assert "nbtest: ready at" in out, out
        yield penv
    finally:
        penv.esdl("down", check=False)
    assert penv.processes("nbtest") == [], "orphans after esdl down"


@pytest.fixture()
def alices_session(platform, monkeypatch):
    """What the hub puts into alice's session (FIELD-NOTES: gateway behind the hub, TLS proxy direct);
    yields her gateway address, proxy address and a token, and checks she has no cluster left after."""
    from platform_lib.gateway import close_gateway, open_gateway
    from platform_lib.local.client import HubClient

    url = platform.url("nbtest")
    alice = HubClient(url)
    alice.login("alice", platform.password("nbtest", "alice"))
    ports = platform.layout("nbtest").saved_ports()
    address, proxy = f"{url}/services/dask-gateway", f"gateway://127.0.0.1:{ports['gateway_tcp']}"
    token = alice.api_token()
    monkeypatch.setenv("DASK_GATEWAY__ADDRESS", address)
    monkeypatch.setenv("DASK_GATEWAY__PROXY_ADDRESS", proxy)
    monkeypatch.setenv("DASK_GATEWAY__AUTH__TYPE", "jupyterhub")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    yield url
    gw = open_gateway(address, proxy_address=proxy, token=token)
    try:  # and the gateway agrees: nothing of alice's is left (a shut-down cluster may take a moment)
        for _ in range(60):
            if not gw.list_clusters():
                break
            time.sleep(0.5)
        assert gw.list_clusters() == []
    finally:
        close_gateway(gw)


@pytest.mark.slow
def test_scaling_out_notebook_on_the_embedded_platform_gateway(alices_session, tmp_path):
    url = alices_session
    nb = execute(REPO / "notebooks" / "02-scaling-out.ipynb", tmp_path)
    text = _texts(nb)
    assert f"dashboard: {url}/services/dask-gateway/clusters/" in text
    assert "still running: False" in text and "no cluster left running" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", ON_THE_GATEWAY_TOO)
def test_analysis_notebooks_run_on_the_embedded_platform_gateway(name, alices_session, tmp_path, monkeypatch):
    """The talk's analyses on a member's gateway cluster (platform_lib.gateway.session_cluster picks it in a
    platform session), figures and checks as on a laptop; the challenge in a team folder of its own."""
    monkeypatch.setenv("ESDL_TEAM_DIR", str(tmp_path / "team"))
    monkeypatch.setenv("ESDL_TEAM_CATALOG", str(tmp_path / "team" / "catalog.yaml"))
    nb = execute(REPO / "notebooks" / name, tmp_path)
    text = _texts(nb)
    assert "computing on a GatewayCluster of 2 workers" in text, text[:2000]
    images = sum(1 for c in nb.cells for o in c.get("outputs", []) if "data" in o and "image/png" in o.data)
    assert images >= 1 and "Traceback" not in text


@pytest.mark.slow
@pytest.mark.browser
def test_getting_started_renders_a_plot_in_jupyterlab(platform):
    """A member opens notebook 1 in the embedded JupyterLab with Chromium, runs all cells and sees plots."""
    from platform_helpers import grey_line_share, launch_chromium, log_in_to_lab
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    artifacts = REPO / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "notebook-01-bob.png"
    url = platform.url("nbtest")
    with sync_playwright() as pw:
        browser = launch_chromium(
            pw, platform.root / "chromium-profile-nb", viewport={"width": 1280, "height": 1000}
        )
        try:
            page = browser.new_page()
            log_in_to_lab(page, url, "bob", platform.password("nbtest", "bob"))
            page.goto(f"{url}/user/bob/lab/tree/01-getting-started.ipynb")
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
            select = page.locator(".jp-Dialog .jp-mod-accept", has_text="Select")
            try:  # JupyterLab may ask which kernel to start: the notebook's own (Python 3)
                select.wait_for(timeout=15_000)
                select.click()
            except PlaywrightTimeout:
                pass
            page.wait_for_function(  # the kernel is up
                "() => document.querySelector('.jp-Notebook-ExecutionIndicator[data-status=\"idle\"]')"
                " || [...document.querySelectorAll('.jp-Toolbar-kernelStatus, .jp-KernelStatus')]"
                ".some(e => /idle/i.test(e.textContent + (e.getAttribute('title') || '')))",
                timeout=120_000,
            )
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            plots = page.locator(".jp-OutputArea-output img")
            page.wait_for_function(
                "() => document.querySelectorAll('.jp-OutputArea-output img').length >= 3", timeout=240_000
            )
            page.wait_for_function(  # the last cell printed its result
                "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                ".some(e => e.textContent.includes('hottest 8 days of the summer'))",
                timeout=240_000,
            )
            plots.nth(0).scroll_into_view_if_needed()
            sizes = [plots.nth(i).bounding_box() for i in range(plots.count())]
            first_map = plots.nth(0).bounding_box()  # the air-temperature map, in the viewport
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            error_text = " ".join(errors.all_inner_texts())
            page.screenshot(path=str(shot))
        except Exception:
            page.screenshot(path=str(artifacts / "notebook-01-bob-failed.png"))
            raise
        finally:
            browser.close()
    assert all(box and box["width"] > 200 and box["height"] > 100 for box in sizes), sizes
    # coastlines on the map, as the screenshot shows it: dark grey lines in the middle of the map, where a
    # colour scale has none (about 3 % of the pixels over Europe; 0 without coastlines)
    assert grey_line_share(shot, first_map) > 0.01, "no coastlines on notebook 01's map"
    assert "Traceback" not in error_text and "Error" not in error_text, error_text
    assert shot.stat().st_size > 10_000


def test_share_a_curated_notebook_keeps_it_stripped(session_env):
    from platform_lib.team import list_shared_notebooks, share_notebook

    shared = share_notebook(REPO / "notebooks" / "06-regional-cube-for-a-team.ipynb")
    nb = json.loads(shared.read_text())
    assert nb["metadata"]["esdl"]["shared_by"] == "alice"
    assert [n["name"] for n in list_shared_notebooks()] == ["06-regional-cube-for-a-team.ipynb"]
