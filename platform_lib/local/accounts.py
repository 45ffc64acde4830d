"""One OS account per person when the embedded platform runs as root (a server shared by a team).

JupyterHub's answer to several people on one machine is one Unix account each (``LocalProcessSpawner``),
and dask-gateway's is the same for clusters (``LocalBackend``). ``esdl up`` run as root makes and reuses
those accounts from the project spec:

- **accounts** ``<project>_<user>`` (project names have no ``_``, so two projects never collide; names
  longer than Linux's 32 characters are shortened with a hash). Each is marked in its comment field
  (``ESDL <project>/<user>``) so ``esdl up`` never takes over an account it did not make. No password
  (nobody logs in to the machine as them) and ``nologin`` as shell; the hub and the gateway switch to them.
- **groups** ``esdl.<project>`` (everyone in the spec) and ``esdl.<project>.admins`` (the spec's admins).
  Dots never appear in project names, so these cannot be an account's own group.
- **folders** (see :func:`secure_layout`): the state folder and ``platform/`` are traverse-only (0711);
  the project folder is ``root:esdl.<project>`` 0710, so people of other projects stop there; secrets,
  hub database, configs, logs and run records stay root's (0700/0600); each home is its owner's (0700);
  the team folder is group-owned (set-gid): ``rw`` gives the project group write access, ``admins-write``
  gives it to the admins group and read access to the rest of the project.
- **a person removed from the spec** keeps account and files (an admin deletes them), but loses the
  project groups, the account is expired and its processes (server, kernels, clusters) are stopped; the
  hub removes their login, and neither the hub nor the gateway starts anything for them again.

Nothing here runs unless the process is root; :func:`account_name` and friends are pure.

>>> account_name("demo", "ada")
'demo_ada'
>>> project_group("demo"), admins_group("demo")
('esdl.demo', 'esdl.demo.admins')
>>> len(account_name("a-very-long-project-name", "someone.with.a.long.name"))
32
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from platform_lib.errors import EsdlError
from platform_lib.local.layout import ProjectLayout
from platform_lib.paths import state_dir

#: Linux's longest user and group name (shadow's ``useradd``)
MAX_NAME_LENGTH = 32
#: the shell of every platform account: nobody logs in to the machine as them
NOLOGIN = "/usr/sbin/nologin"
#: the comment (GECOS) field that marks an account as made by ``esdl up``
MARK_PREFIX = "ESDL "


def _fit(name: str) -> str:
    """``name`` if Linux accepts its length, else a prefix of it plus 6 hex characters of its hash."""
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: MAX_NAME_LENGTH - 7]}-{digest}"


def account_name(project: str, user: str) -> str:
    """The OS account of ``user`` in ``project``: ``<project>_<user>``, shortened to 32 characters.

    >>> account_name("extremes-lab", "bo")
    'extremes-lab_bo'
    """
    return _fit(f"{project}_{user}")


def project_group(project: str) -> str:
    """The group of everyone in ``project`` (the team folder's group, the project folder's too).

    >>> project_group("extremes-lab")
    'esdl.extremes-lab'
    """
    return _fit(f"esdl.{project}")


def admins_group(project: str) -> str:
    """The group of ``project``'s admins (who write the team folder under ``team_access: admins-write``).

    >>> admins_group("extremes-lab")
    'esdl.extremes-lab.admins'
    """
    return _fit(f"esdl.{project}.admins")


def _mark(project: str, user: str) -> str:
    return f"{MARK_PREFIX}{project}/{user}"


@dataclass(frozen=True)
class Account:
    """One person's OS account: their hub name, account name, ids and home."""

    user: str
    name: str
    uid: int
    gid: int
    home: Path


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EsdlError(
            f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _ensure_group(name: str) -> int:
    if not _group_exists(name):
        _run(["groupadd", name])
    return grp.getgrnam(name).gr_gid


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _ensure_account(project: str, user: str, home: Path, groups: list[str]) -> Account:
    name = account_name(project, user)
    entry = _lookup(name)
    if entry is None:
        _run(["useradd", "--no-create-home", "--user-group", "--home-dir", str(home), "--shell", NOLOGIN,
              "--comment", _mark(project, user), "--groups", ",".join(groups), name])  # fmt: skip
        entry = pwd.getpwnam(name)
    elif entry.pw_gecos != _mark(project, user):
        raise EsdlError(
            f"the OS account {name!r} exists but was not made by `esdl up` for {user!r} of project {project!r}"
            f" (its comment is {entry.pw_gecos!r}, expected {_mark(project, user)!r}); rename or remove that"
            " account, or rename the person in the spec"
        )
    else:  # reused: the spec decides its groups and that it is active; home may have moved with the state
        if entry.pw_dir != str(home) and _processes(entry.pw_uid):
            owner = Path(entry.pw_dir).parent.parent
            raise EsdlError(
                f"the OS account {name!r} of {user!r} is in use by the platform of project {project!r} at {owner}:"
                " one machine runs a project from one state folder at a time; stop that one first (`esdl down`"
                f" with ESDL_STATE_DIR={owner.parent.parent}) or give this project another name"
            )
        _run(["usermod", "--groups", ",".join(groups), "--expiredate", "", "--home", str(home), name])
        entry = pwd.getpwnam(name)
    return Account(user, name, entry.pw_uid, entry.pw_gid, home)


def _processes(uid: int) -> list:
    import psutil

    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]


def _stop_processes(uid: int, timeout: float = 5.0) -> None:
    """SIGTERM every process of ``uid`` (their server, kernels, dask processes), SIGKILL what is left."""
    import psutil

    procs = _processes(uid)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def project_accounts(layout: ProjectLayout) -> dict[str, int]:
    """``{account name: uid}`` of every OS account ``esdl up`` made for this platform of the project
    (current and retired): marked with its name, their homes in its ``homes/``.

    >>> import tempfile
    >>> project_accounts(ProjectLayout("no-such-project", Path(tempfile.mkdtemp())))
    {}
    """
    mark, homes = _mark(layout.project, ""), str(layout.homes_dir) + os.sep
    return {
        e.pw_name: e.pw_uid
        for e in pwd.getpwall()
        if e.pw_gecos.startswith(mark) and e.pw_dir.startswith(homes)
    }


def stop_processes_of(layout: ProjectLayout) -> None:
    """Stop every process running under one of this platform's accounts (``esdl down``): also those a
    person started without the platform's tag in their environment. Needs root; a no-op otherwise."""
    if os.geteuid() == 0:
        for uid in project_accounts(layout).values():
            _stop_processes(uid)


def _retire(layout: ProjectLayout, keep: set[str]) -> list[str]:
    """Accounts of ``project`` made by ``esdl up`` for people no longer in the spec: out of the project's
    groups, expired, their processes stopped (files stay). Returns their names."""
    retired = []
    project = layout.project
    for name, uid in project_accounts(layout).items():
        if pwd.getpwnam(name).pw_gecos[len(_mark(project, "")) :] in keep:
            continue
        _run(["usermod", "--groups", "", "--expiredate", "1", name])
        _stop_processes(uid)
        retired.append(name)
    return retired


def _chmod(path: Path, mode: int, uid: int = 0, gid: int = 0) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode)


def ensure_accounts(
    project: str, users: Iterable[str], admins: Iterable[str], layout: ProjectLayout
) -> dict[str, Account]:
    """Make or reuse the account and home of everyone in ``users``; retire the project's other accounts.

    Needs root. Returns ``{hub user: Account}``. Each home (``layout.homes_dir/<user>``) is created if
    missing and made its owner's alone (0700); what is inside is left as the person left it.
    """
    if os.geteuid() != 0:
        raise EsdlError("per-person OS accounts need root: run `esdl up` as root on a shared server")
    admins = set(admins)
    team, admin_group = project_group(project), admins_group(project)
    _ensure_group(team)
    _ensure_group(admin_group)
    layout.homes_dir.mkdir(parents=True, exist_ok=True)
    accounts = {}
    for user in users:
        home = layout.homes_dir / user
        groups = [team, admin_group] if user in admins else [team]
        account = accounts[user] = _ensure_account(project, user, home, groups)
        if home.is_symlink():  # never follow a link someone left in place of a home
            home.unlink()
        home.mkdir(exist_ok=True)
        _chmod(home, 0o700, account.uid, account.gid)
    _retire(layout, set(accounts))
    return accounts


def secure_layout(layout: ProjectLayout, team_access: str, base: Path | None = None) -> None:
    """Set owners and modes of a project's state for per-person accounts (see the module docstring).

    Root's own parts (secrets, hub, logs, run, credentials, ports, configs) stay owner-only. Members may
    only pass through the state folder and ``platform/``; the project folder admits the project group;
    the team folder is group-owned with set-gid so what people write there stays the team's.
    """
    team_gid = grp.getgrnam(project_group(layout.project)).gr_gid
    admins_gid = grp.getgrnam(admins_group(layout.project)).gr_gid
    state = base or state_dir()
    for traverse_only in (state, state / "platform"):
        _chmod(traverse_only, 0o711)
    _chmod(layout.root, 0o710, 0, team_gid)
    for private in (layout.secrets_dir, layout.hub_dir, layout.logs_dir, layout.run_dir):
        _chmod(private, 0o700)
    # the gateway's folder: its config and database stay root's (0600), each cluster's working folder
    # (made by the gateway) is its owner's, so the clusters folder is traverse-only
    _chmod(layout.gateway_dir, 0o711)
    _chmod(layout.clusters_dir, 0o711)
    _chmod(layout.homes_dir, 0o711)
    if team_access == "admins-write":
        _chmod(
            layout.team_dir, 0o2775, 0, admins_gid
        )  # others = the project group (the parent admits only it)
    else:
        _chmod(layout.team_dir, 0o2770, 0, team_gid)
    for path in layout.root.iterdir():
        if path.is_file() and path != layout.project_catalog:
            _chmod(path, 0o600)
