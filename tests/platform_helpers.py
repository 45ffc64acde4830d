"""Helpers for the embedded-platform tests: temporary state, specs, the ``esdl`` command, process checks."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from platform_lib.cli.platform import printed_logins
from platform_lib.local.layout import ProjectLayout
from platform_lib.local.supervisor import tagged_processes

REPO = Path(__file__).resolve().parents[1]


def let_accounts_pass(path: Path) -> Path:
    """Let every OS account read ``path`` and pass through the folders above it (add the read and traverse
    bits where missing): as root, ``esdl up`` runs each person's server under their own account, and
    pytest's temporary folders are 0700. Only under the system's temporary folder; returns ``path``."""
    import stat
    import tempfile

    top = Path(tempfile.gettempdir()).resolve()
    for folder in [path.resolve(), *path.resolve().parents]:
        if folder == top or top not in folder.parents:
            break
        mode = stat.S_IMODE(folder.stat().st_mode)
        wanted = mode | (0o055 if folder == path.resolve() else 0o011)
        if wanted != mode:
            os.chmod(folder, wanted)
    return path


def small_spec(name: str, admins: list[str], members: list[str], **extra: Any) -> dict[str, Any]:
    """A project spec sized for a 2-core test machine."""
    spec = {
        "name": name,
        "title": f"Test project {name}",
        "admins": admins,
        "members": members,
        "profiles": [{"name": "small", "display_name": "Small", "cpu": 1, "memory": "1Gi", "default": True}],
        "dask": {
            "max_workers_per_user": 2,
            "max_clusters_per_user": 1,
            "worker_cores": {"choices": [1], "default": 1},
            "worker_memory": {"choices": ["1Gi"], "default": "1Gi"},
            "idle_timeout_minutes": 10,
        },
    }
    spec.update(extra)
    return spec


@dataclass
class PlatformEnv:
    """A throw-away state folder, projects folder and notebooks folder for ``esdl`` runs."""

    root: Path
    env: dict[str, str]
    #: (project, user) -> password, as `esdl up` / `esdl passwd` printed them (only hashes are kept)
    passwords: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> PlatformEnv:
        for sub in ("state", "projects", "notebooks"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        let_accounts_pass(root)
        env = dict(os.environ)
        env.update(
            ESDL_STATE_DIR=str(root / "state"),
            ESDL_PROJECTS_DIR=str(root / "projects"),
            ESDL_NOTEBOOKS_DIR=str(root / "notebooks"),
        )
        env.setdefault("ESDL_DATA_DIR", str(root / "state" / "data"))
        return cls(root, env)

    def write_spec(self, spec: dict[str, Any]) -> Path:
        path = self.root / "projects" / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    def esdl(self, *args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``esdl`` command with this environment; ``check`` raises with its output on failure."""
        proc = subprocess.run(
            [sys.executable, "-m", "platform_lib.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"esdl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        self.passwords.update(printed_logins(proc.stdout))
        return proc

    def layout(self, project: str) -> ProjectLayout:
        return ProjectLayout(project, self.root / "state" / "platform" / project)

    def url(self, project: str) -> str:
        return f"http://127.0.0.1:{self.layout(project).saved_ports()['public']}"

    def password(self, project: str, user: str) -> str:
        """The password ``esdl up`` (or ``esdl passwd``) printed for ``user``: the only place it exists."""
        try:
            return self.passwords[(project, user)]
        except KeyError:
            raise AssertionError(f"no password of {user!r} in {project!r} was printed to this test") from None

    def processes(self, project: str) -> list:
        return tagged_processes(str(self.layout(project).root.resolve()))


#: Debian's Chromium and the flags it needs to run headless here (FIELD-NOTES); tools' own browser
#: downloads fail on this kind of machine
CHROMIUM = os.environ.get("ESDL_TEST_CHROMIUM", "/usr/bin/chromium")  # (another path: tests of the skip)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


#: why every browser test skips on a machine without Chromium (make test installs it where it can)
NO_CHROMIUM = (
    "Debian's chromium is not installed and `make test` could not install it (that needs root and apt);"
    " apt-get install chromium, then run the browser tests"
)


def launch_chromium(playwright: Any, profile: Path, **kwargs: Any) -> Any:
    """A headless persistent Chromium context (a fresh ``profile`` folder) driven by Playwright. A test that
    calls it is marked ``browser``: where Chromium is missing it skips before its fixtures start anything
    (:data:`NO_CHROMIUM`, ``tests/conftest.py``)."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, **kwargs
    )


def log_in_to_lab(page: Any, hub_url: str, user: str, password: str) -> None:
    """Log ``user`` in through the hub's login form in ``page`` and wait until JupyterLab's URL is reached."""
    page.goto(f"{hub_url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{user}/lab**", timeout=180_000)


def screenshot_pixels(shot: Path, box: dict, inner: float = 0.0) -> Any:
    """The RGB pixels (int array ``(h, w, 3)``) of a screenshot inside ``box`` (a Playwright bounding box,
    in the screenshot's coordinates), without a margin of ``inner`` of its width and height on each side."""
    import numpy as np
    from PIL import Image

    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    x, y, w, h = x + inner * w, y + inner * h, w * (1 - 2 * inner), h * (1 - 2 * inner)
    with Image.open(shot) as im:
        return np.asarray(im.convert("RGB").crop((int(x), int(y), int(x + w), int(y + h)))).astype(int)


def ink_share(shot: Path, box: dict, dark: int = 110) -> float:
    """The share of dark pixels (text, lines) inside ``box`` of a screenshot."""
    rgb = screenshot_pixels(shot, box)
    return float((rgb.mean(axis=-1) < dark).mean()) if rgb.size else 0.0


def colour_share(shot: Path, box: dict) -> float:
    """The share of strongly coloured pixels inside ``box`` of a screenshot (plot marks, not text)."""
    rgb = screenshot_pixels(shot, box)
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 60).mean()) if rgb.size else 0.0


def grey_line_share(shot: Path, box: dict, inner: float = 0.25) -> float:
    """The share of dark grey pixels in the middle of ``box`` (its outer ``inner`` cut away on each side):
    on a map, where no text is, those are the coastlines that :func:`platform_lib.viz.draw_coastlines`
    draws in grey; a colour scale has no dark grey."""
    rgb = screenshot_pixels(shot, box, inner)
    grey = (rgb.max(axis=-1) < 110) & (rgb.max(axis=-1) - rgb.min(axis=-1) < 30)
    return float(grey.mean()) if rgb.size else 0.0
