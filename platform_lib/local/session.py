"""What a user's session finds when it starts: the curated notebooks, the ``team`` folder, the docs.

The hub calls :func:`prepare_home` (as ``Spawner.pre_spawn_hook``) before each server start; it loads
this module from its file, so it imports only the standard library, never ``platform_lib``. Curated
notebooks from ``<repo>/notebooks/`` are copied in once each: a file the user edited, renamed or deleted
is never touched again (the names already copied are kept in ``~/.esdl/seeded.json``); notebooks added
to the repository later arrive at the next start. ``~/team`` is a link to the project's shared folder and
``~/esdl-docs`` one to the platform's documentation (read-only: the platform's own files). The start page
(:data:`START_PAGE`) opens at the first start, the one that copies it in; later starts open JupyterLab.
When the server runs under the person's own OS account (the hub is root), the home is prepared by a child
process running as that account, never by root: root following a link a person left in their home
could otherwise write anywhere.

>>> import tempfile
>>> from pathlib import Path
>>> tmp = Path(tempfile.mkdtemp())
>>> (tmp / "nb").mkdir(); _ = (tmp / "nb" / "intro.ipynb").write_text("{}")
>>> (tmp / "team").mkdir()
>>> (tmp / "docs").mkdir()
>>> prepare_home(tmp / "home" / "ada", notebooks_dir=tmp / "nb", team_dir=tmp / "team", docs_dir=tmp / "docs")
['intro.ipynb']
>>> sorted(p.name for p in (tmp / "home" / "ada").iterdir())
['.esdl', 'esdl-docs', 'intro.ipynb', 'team']
>>> prepare_home(tmp / "home" / "ada", notebooks_dir=tmp / "nb", team_dir=tmp / "team")
[]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

SEED_RECORD = ".esdl/seeded.json"
#: the curated notebook that opens at a person's first start: the platform's map (catalog, team, docs)
START_PAGE = "00-start-here.ipynb"
_SKIP = {".ipynb_checkpoints", "__pycache__", ".git"}


def _curated_files(notebooks_dir: Path) -> list[Path]:
    if not notebooks_dir.is_dir():
        return []
    out = []
    for path in sorted(notebooks_dir.rglob("*")):
        rel = path.relative_to(notebooks_dir)
        if path.is_file() and not any(part in _SKIP or part.startswith(".") for part in rel.parts):
            out.append(rel)
    return out


def prepare_home(
    home: str | os.PathLike[str],
    *,
    notebooks_dir: str | os.PathLike[str],
    team_dir: str | os.PathLike[str],
    docs_dir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Create ``home``, copy in curated notebooks not copied before, link ``team`` (and ``esdl-docs`` to
    ``docs_dir``); return what was copied. A name the person already uses is never replaced."""
    home, notebooks_dir, team_dir = Path(home), Path(notebooks_dir), Path(team_dir)
    home.mkdir(parents=True, exist_ok=True)
    record = home / SEED_RECORD
    record.parent.mkdir(exist_ok=True)
    try:
        seeded = set(json.loads(record.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        seeded = set()
    copied = []
    for rel in _curated_files(notebooks_dir):
        key = rel.as_posix()
        target = home / rel
        if key in seeded or target.exists() or target.is_symlink():
            seeded.add(key)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(notebooks_dir / rel, target)
        seeded.add(key)
        copied.append(key)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted(seeded), indent=1))
    os.replace(tmp, record)
    links = {"team": team_dir, **({"esdl-docs": Path(docs_dir)} if docs_dir else {})}
    for name, target in links.items():
        link = home / name
        if not link.is_symlink() and not link.exists():
            link.symlink_to(target, target_is_directory=True)
    return copied


async def pre_spawn_hook(spawner: Any, *, notebooks_dir: str, team_dir: str, docs_dir: str = "") -> None:
    """``Spawner.pre_spawn_hook``: :func:`prepare_home` for the spawner's home folder, as the person's OS
    account if the spawner has one (``os_account``), else in the hub's process; then the page this start
    opens: the start page if this start copied it in, else the configured ``default_url``."""
    if not hasattr(spawner, "os_account"):
        copied = prepare_home(
            spawner.home_dir, notebooks_dir=notebooks_dir, team_dir=team_dir, docs_dir=docs_dir
        )
    else:
        home = spawner.home_dir
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, home, notebooks_dir, team_dir, docs_dir,
            preexec_fn=spawner.make_preexec_fn(spawner.user.name),
            env={"PATH": "/usr/bin:/bin", "HOME": home},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(
                f"preparing the home {home} of {spawner.user.name!r} failed: {err.decode()[-2000:]}"
            )
        copied = json.loads(out)
    if copied:
        spawner.log.info("ESDL: copied %d curated notebook(s) into %s", len(copied), spawner.home_dir)
    configured = spawner.__dict__.setdefault("_esdl_configured_default_url", spawner.default_url)
    spawner.default_url = f"/lab/tree/{START_PAGE}" if START_PAGE in copied else configured


def start_server(argv: list[str]) -> None:
    """``session.py start HOME NOTEBOOKS_DIR TEAM_DIR DOCS_DIR -- COMMAND ...``: prepare the home, then
    run the server command in this process (Kubernetes: the user container's command, as the person,
    where the hub cannot reach the home). The start that copies the start page in opens it
    (``JUPYTERHUB_DEFAULT_URL``, which jupyterhub-singleuser reads); later starts open the configured page.
    """
    if len(argv) < 6 or argv[4] != "--":
        raise SystemExit("usage: session.py start HOME NOTEBOOKS_DIR TEAM_DIR DOCS_DIR -- COMMAND [ARG ...]")
    (home, notebooks, team, docs), command = argv[:4], argv[5:]
    copied = prepare_home(home, notebooks_dir=notebooks, team_dir=team, docs_dir=docs)
    if START_PAGE in copied:
        os.environ["JUPYTERHUB_DEFAULT_URL"] = f"/lab/tree/{START_PAGE}"
    os.execvp(command[0], command)


if __name__ == "__main__":
    if sys.argv[1:2] == ["start"]:  # the user container's command on Kubernetes (see start_server)
        start_server(sys.argv[2:])
    else:  # run by pre_spawn_hook as the person's account: HOME NOTEBOOKS_DIR TEAM_DIR DOCS_DIR
        home, notebooks, team, docs = sys.argv[1:5]
        print(json.dumps(prepare_home(home, notebooks_dir=notebooks, team_dir=team, docs_dir=docs)))
