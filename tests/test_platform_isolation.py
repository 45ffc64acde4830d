"""People cannot reach each other on one machine: a member's own kernel is the attacker.

Two projects run side by side as root, which gives everyone an OS account of their own. From inside
a member's kernel (the place any member controls), the test tries to read another member's home, the
environment of their processes (their server's hub token), every secret of both platforms (passwords,
cookie secret, proxy and service tokens, the hub database, the configs, the logs), the other project's
homes and team folder, the TLS key of another member's dask cluster, to signal their processes, to write
where the project's ``team_access`` forbids it, and then to log in as the others with anything it found.
Positive controls show the same code reads the attacker's own files and token, so a refusal is a refusal
and not a broken probe.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import requests
from platform_helpers import PlatformEnv, small_spec

from platform_lib.local.accounts import account_name
from platform_lib.local.client import HubClient

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="per-person OS accounts need root (CI runs as root); without root esdl up is one trust domain",
    ),
]

#: what the attacker's kernel runs: every probe prints one JSON line {probe: outcome}
ATTACK = r"""
import json, os, signal
targets = json.loads({targets!r})
found, outcome = {{}}, {{}}

def read(path):
    try:
        if os.path.isdir(path):
            return "listed: " + ",".join(sorted(os.listdir(path)))
        with open(path, "rb") as f:
            data = f.read(200000)
        found[path] = data.decode("utf-8", "replace")
        return "read"
    except OSError as e:
        return type(e).__name__

for path in targets["read"]:
    outcome["read " + path] = read(path)
# whatever lies under the other platforms' state that can be walked at all
for top in targets["walk"]:
    for folder, dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(folder, name)
            if path not in outcome:
                outcome["walk " + path] = read(path)
# every process's environment: server tokens live there
mine = os.environ["JUPYTERHUB_API_TOKEN"]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{{pid}}/environ", "rb") as f:
            env = f.read().decode("utf-8", "replace")
    except OSError:
        continue
    if "JUPYTERHUB_API_TOKEN=" in env and mine not in env:
        found[f"/proc/{{pid}}/environ"] = env
        outcome[f"environ {{pid}}"] = "read"
for pid in targets["signal"]:
    try:
        os.kill(pid, signal.SIGTERM)
        outcome[f"signal {{pid}}"] = "sent"
    except OSError as e:
        outcome[f"signal {{pid}}"] = type(e).__name__
for path in targets["write"]:
    try:
        with open(path, "w") as f:
            f.write("written by an attacker")
        outcome["write " + path] = "written"
    except OSError as e:
        outcome["write " + path] = type(e).__name__
print(json.dumps({{"outcome": outcome, "found": found, "uid": os.getuid(), "token": mine}}))
"""


def _attack(client: HubClient, kernel: str, targets: dict) -> dict:
    out = client.run(kernel, ATTACK.format(targets=json.dumps(targets)))
    return json.loads(out.strip().splitlines()[-1])


def _secrets_in(found: dict[str, str]) -> set[str]:
    """Token- and password-like strings in what the attacker managed to read (hex tokens, our passwords)."""
    words: set[str] = set()
    for text in found.values():
        words |= set(re.findall(r"\b[0-9a-f]{32,64}\b", text))
        words |= set(re.findall(r"\b[A-Za-z0-9]{20}\b", text))
    return words


@pytest.fixture(scope="module")
def two_projects(tmp_path_factory: pytest.TempPathFactory, demo_catalog: Path):
    penv = PlatformEnv.create(tmp_path_factory.mktemp("isolation"))
    penv.write_spec(small_spec("alpha", ["ada"], ["bo"]))
    penv.write_spec(small_spec("beta", ["cy"], ["dee"], storage={"team_access": "admins-write"}))
    try:
        for project in ("alpha", "beta"):
            penv.esdl("up", "--project", project, "--port", "0")
        clients = {}
        for project, user in (("alpha", "ada"), ("alpha", "bo"), ("beta", "cy"), ("beta", "dee")):
            client = HubClient(penv.url(project))
            client.login(user, penv.password(project, user))
            client.open_lab()
            clients[user] = client
        yield penv, clients
    finally:
        penv.esdl("down", check=False)


def _victim_setup(client: HubClient) -> dict:
    """The victim writes a private file and starts a dask cluster; returns what the attacker aims at."""
    kernel = client.start_kernel()
    out = client.run(
        kernel,
        "import os, json\n"
        "from dask_gateway import Gateway\n"
        "open(os.path.expanduser('~/private.txt'), 'w').write('only mine')\n"
        "cluster = Gateway().new_cluster()\n"
        "print(json.dumps({'home': os.environ['HOME'], 'pid': os.getpid(), 'server': os.getppid(),"
        " 'cluster': cluster.name, 'token': os.environ['JUPYTERHUB_API_TOKEN']}))",
    )
    return json.loads(out.strip().splitlines()[-1])


def test_a_members_kernel_reaches_no_one_else(two_projects):
    penv, clients = two_projects
    bo, cy = _victim_setup(clients["bo"]), _victim_setup(clients["cy"])
    alpha, beta = penv.layout("alpha"), penv.layout("beta")
    assert bo["home"] == str(alpha.homes_dir / "bo") and cy["home"] == str(beta.homes_dir / "cy")

    def state_files(layout):
        return [
            layout.credentials_file, layout.ports_file, layout.hub_config, layout.gateway_config,
            layout.hub_dir / "jupyterhub.sqlite", *layout.secrets_dir.iterdir(), *layout.logs_dir.iterdir(),
            *layout.run_dir.iterdir(), layout.gateway_db,
        ]  # fmt: skip

    # ada attacks bo (her own project) and cy (the other); dee (a member of beta) attacks cy and bo
    for attacker, own, other in (("ada", alpha, beta), ("dee", beta, alpha)):
        client = clients[attacker]
        kernel = client.start_kernel()
        own_home = own.homes_dir / attacker
        targets = {
            "read": [
                *map(str, state_files(own)), *map(str, state_files(other)),
                bo["home"] + "/private.txt", bo["home"], cy["home"] + "/private.txt", cy["home"],
                str(alpha.clusters_dir / bo["cluster"] / ".certs" / "dask.pem"),
                str(beta.clusters_dir / cy["cluster"] / ".certs" / "dask.pem"),
                str(other.team_dir), str(other.homes_dir),
                # positive controls: the attacker's own home and the shared catalog
                str(own_home / ".esdl" / "seeded.json"), str(own.project_catalog),
            ],
            "walk": [str(penv.root / "state")],
            "signal": [bo["pid"], bo["server"], cy["pid"], cy["server"]],
            "write": [str(other.team_dir / "planted.txt"), str(own_home / "mine.txt")],
        }  # fmt: skip
        result = _attack(client, kernel, targets)
        outcome, found = result["outcome"], result["found"]
        assert result["uid"] == __import__("pwd").getpwnam(account_name(own.project, attacker)).pw_uid
        # controls: the probe does read and write what is the attacker's own
        assert outcome["read " + str(own_home / ".esdl" / "seeded.json")] == "read"
        assert outcome["read " + str(own.project_catalog)] == "read"
        assert outcome["write " + str(own_home / "mine.txt")] == "written"
        allowed = {str(own_home / ".esdl" / "seeded.json"), str(own.project_catalog)}

        def is_own(probe: str, allowed: set[str] = allowed, home: str = str(own_home)) -> bool:
            path = probe.split(" ", 1)[1]
            return path in allowed or path.startswith(home + "/")

        leaks = {
            probe: got for probe, got in outcome.items() if not got.endswith("Error") and not is_own(probe)
        }
        assert leaks == {}, f"{attacker}'s kernel reached: {leaks}"
        assert [got for probe, got in outcome.items() if probe.startswith("signal")] == [
            "PermissionError"
        ] * 4
        found = {path: text for path, text in found.items() if not is_own("read " + path)}
        assert found == {}, f"{attacker}'s kernel read: {sorted(found)}"
        # with anything it found (nothing) and with its own token, it cannot act as another person
        for victim_user, project in (("bo", "alpha"), ("cy", "beta")):
            url = penv.url(project)
            for secret in _secrets_in(found) | {result["token"]}:
                resp = requests.get(
                    f"{url}/hub/api/user", headers={"Authorization": f"token {secret}"}, timeout=10
                )
                assert resp.status_code in (401, 403) or resp.json()["name"] == attacker, resp.text[:200]
                login = requests.post(
                    f"{url}/hub/login", data={"username": victim_user, "password": secret}, timeout=10,
                    allow_redirects=False,
                )  # fmt: skip
                assert login.status_code == 403
    for victim in ("bo", "cy"):  # the victims' servers are alive and their files untouched
        check = clients[victim].run(clients[victim].start_kernel(), "print(open('private.txt').read())")
        assert check.strip() == "only mine"


def test_team_access_is_enforced_by_permissions(two_projects):
    penv, clients = two_projects
    # two members share through the team's lock files and catalog, one after the other (what one creates,
    # the other can lock and replace: the files are the team's, not their creator's alone)
    share = (
        "import json\nfrom platform_lib.team import share_notebook, list_shared_notebooks\n"
        "open('{name}.ipynb', 'w').write(json.dumps({{'cells': [], 'metadata': {{}}, 'nbformat': 4,"
        " 'nbformat_minor': 5}}))\nshare_notebook('{name}.ipynb')\n"
        "print(sorted(n['name'] for n in list_shared_notebooks()))"
    )
    assert (
        clients["bo"].run(clients["bo"].start_kernel(), share.format(name="bos")).strip() == "['bos.ipynb']"
    )
    shared = clients["ada"].run(clients["ada"].start_kernel(), share.format(name="adas")).strip()
    assert shared == "['adas.ipynb', 'bos.ipynb']"
    write = "open('team/{name}', 'w').write('x'); print('written')"
    # alpha (rw): a member writes the team folder; what she writes stays readable by the team
    assert (
        clients["bo"].run(clients["bo"].start_kernel(), write.format(name="from-bo.txt")).strip() == "written"
    )
    read = clients["ada"].run(clients["ada"].start_kernel(), "print(open('team/from-bo.txt').read())")
    assert read.strip() == "x"
    # beta (admins-write): the admin writes, the member reads it but cannot write
    cy, dee = clients["cy"], clients["dee"]
    assert cy.run(cy.start_kernel(), write.format(name="from-cy.txt")).strip() == "written"
    kernel = dee.start_kernel()
    assert dee.run(kernel, "print(open('team/from-cy.txt').read())").strip() == "x"
    refused = dee.run(
        kernel,
        "try:\n    " + write.format(name="from-dee.txt") + "\nexcept PermissionError:\n    print('refused')",
    )
    assert refused.strip() == "refused"
    assert not (penv.layout("beta").team_dir / "from-dee.txt").exists()


def test_a_person_removed_from_the_spec_loses_login_and_access(two_projects):
    penv, clients = two_projects
    import grp
    import pwd

    import psutil

    from platform_lib.local.accounts import project_group

    account = account_name("alpha", "bo")
    assert account in grp.getgrnam(project_group("alpha")).gr_mem
    penv.write_spec(small_spec("alpha", ["ada"], []))
    try:
        penv.esdl("up", "--project", "alpha")
        assert account not in grp.getgrnam(project_group("alpha")).gr_mem  # no team folder any more
        uid = pwd.getpwnam(account).pw_uid
        assert [p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid] == []
        assert pwd.getpwnam(account).pw_dir == str(penv.layout("alpha").homes_dir / "bo")  # files stay
        assert (penv.layout("alpha").homes_dir / "bo" / "private.txt").exists()
        resp = requests.post(
            f"{penv.url('alpha')}/hub/login", data={"username": "bo", "password": penv.password("alpha", "bo")},
            timeout=10, allow_redirects=False,
        )  # fmt: skip
        assert resp.status_code == 403
    finally:
        penv.write_spec(small_spec("alpha", ["ada"], ["bo"]))


def test_a_second_state_folder_cannot_take_over_a_running_projects_accounts(two_projects, tmp_path):
    penv, clients = two_projects
    other = PlatformEnv.create(tmp_path / "elsewhere")
    other.write_spec(small_spec("alpha", ["ada"], ["bo"]))
    refused = other.esdl("up", "--project", "alpha", "--port", "0", check=False)
    assert refused.returncode == 2
    assert "is in use by the platform of project 'alpha' at" in refused.stderr, refused.stderr
    assert str(penv.layout("alpha").root) in refused.stderr
    other.esdl("down", check=False)  # stops nothing of the running platform
    ada = clients["ada"]
    assert ada.run(ada.start_kernel(), "import os; print(os.environ['HOME'])").strip() == str(
        penv.layout("alpha").homes_dir / "ada"
    )


def test_down_stops_what_a_person_started_outside_the_platform(two_projects):
    penv, clients = two_projects
    import psutil

    ada = clients["ada"]
    out = ada.run(
        ada.start_kernel(),
        "import subprocess\n"
        "p = subprocess.Popen(['env', '-i', 'sleep', '600'], start_new_session=True)\n"
        "print(p.pid)",
    )
    stray = psutil.Process(int(out.strip()))
    assert "ESDL_PLATFORM" not in stray.environ()  # not tagged: only its account ties it to the project
    penv.esdl("down", "--project", "alpha")
    psutil.wait_procs([stray], timeout=10)
    assert not stray.is_running() or stray.status() == psutil.STATUS_ZOMBIE
    assert penv.processes("beta"), "stopping alpha leaves beta running"
