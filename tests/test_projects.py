"""Project specs: the shipped examples load, and every kind of bad input gets one clear message."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest
import yaml

from platform_lib.cli import project as project_cli
from platform_lib.errors import EsdlError
from platform_lib.projects import (
    ProjectSpec,
    ProjectSpecError,
    list_projects,
    load_project,
    parse_project,
    parse_quantity,
)

GOOD = {
    "name": "tiny",
    "title": "Tiny",
    "admins": ["ada"],
    "members": ["bo", "cy"],
    "profiles": [
        {"name": "small", "display_name": "Small", "cpu": 1, "memory": "1Gi", "default": True},
        {"name": "big", "display_name": "Big", "cpu": 4, "memory": "8Gi"},
    ],
}


def problems_of(data, source="t.yaml") -> list[str]:
    with pytest.raises(ProjectSpecError) as info:
        parse_project(data, source)
    assert all(line.startswith(f"  - {source}: ") for line in str(info.value).splitlines()[1:])
    return info.value.problems


def with_(**changes):
    data = copy.deepcopy(GOOD)
    data.update(changes)
    return data


def test_shipped_specs_are_valid():
    assert {"demo", "extremes-lab"} <= set(list_projects())
    demo = load_project("demo")
    assert demo.login.method == "native" and demo.users == ["alice", "bob", "carol"]
    lab = load_project("extremes-lab")
    assert len(lab.members) >= 8 and len(lab.profiles) >= 3
    assert lab.login.client_secret.startswith("secret:")
    assert lab.default_profile.name == "small"
    assert lab.dask.worker_memory.choices_bytes == [4 * 2**30, 8 * 2**30, 16 * 2**30]


def test_defaults_fill_a_minimal_spec():
    spec = parse_project({"name": "x", "title": "X", "admins": ["ada"]})
    assert spec.default_profile.default and spec.dask.idle_timeout_minutes == 30
    assert spec.storage.team_access == "rw" and spec.catalog.entries == []
    assert spec.users == ["ada"]


def test_every_problem_is_reported_once_with_its_field():
    data = with_(
        name="Bad_Name",
        members=["bo", "bo", "ada"],
        login={"method": "ldap"},
        dask={"worker_cores": {"choices": [1, 2], "default": 3}, "max_wrkers_per_user": 3},
        storage={"team_access": "ro", "team_size": "10GB"},
        titel="typo",
    )
    problems = problems_of(data)
    text = "\n".join(problems)
    assert len(problems) == 9, text
    assert "name: 'Bad_Name' is not DNS-safe" in text
    assert "members: 'bo' listed more than once" in text
    assert "members: 'ada' also listed under admins" in text
    assert "login.method: Input should be 'native', 'github' or 'generic-oauth'" in text
    assert "dask.worker_cores: default 3 is not one of the choices [1, 2]" in text
    assert "dask.max_wrkers_per_user: unknown field. Did you mean 'max_workers_per_user'?" in text
    assert "storage.team_access: Input should be 'rw' or 'admins-write'" in text
    assert "storage.team_size: '10GB' is not a size; allowed: a Kubernetes quantity" in text
    assert "titel: unknown field. Did you mean 'title'?" in text


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"login": {"method": "github", "client_id": "x", "client_secret": "hunter2hunter2"}},
            "login.client_secret",
        ),
        (
            {
                "catalog": {
                    "entries": [
                        {"name": "c", "urlpath": "s3://b/c.zarr", "storage_options": {"key": "AKIA0"}}
                    ]
                }
            },
            "catalog.entries[0].storage_options.key",
        ),
        ({"description": "token ghp_0123456789abcdefghijABCDEFGHIJ012345"}, "description"),
        ({"login": {"method": "native"}, "api_token": "abc"}, "api_token"),
    ],
)
def test_plaintext_secrets_are_refused(changes, expected):
    problems = problems_of(with_(**changes))
    secret = [p for p in problems if p.startswith(expected + ":")]
    assert len(secret) == 1, problems
    assert "env:VARIABLE" in secret[0] and "secret:SECRET-NAME/KEY" in secret[0]


def test_secret_references_are_accepted():
    spec = parse_project(
        with_(
            login={
                "method": "generic-oauth",
                "client_id": "esdl",
                "client_secret": "env:OAUTH_SECRET",
                "authorize_url": "https://id.example.org/auth",
                "token_url": "https://id.example.org/token",
                "userdata_url": "https://id.example.org/userinfo",
            }
        )
    )
    assert spec.login.client_secret == "env:OAUTH_SECRET"


def test_login_fields_must_match_the_method():
    assert problems_of(with_(login={"method": "github"})) == [
        "login: method 'github' needs client_id, client_secret"
    ]
    assert problems_of(with_(login={"method": "native", "client_id": "x"})) == [
        "login: client_id only apply to method 'github' or 'generic-oauth'"
    ]


def test_profiles_and_choices():
    two_defaults = copy.deepcopy(GOOD["profiles"])
    two_defaults[1]["default"] = True
    assert problems_of(with_(profiles=two_defaults)) == [
        "profiles: only one profile may have default: true, got 'big', 'small'"
    ]
    assert "profiles: List should have at least 1 item" in problems_of(with_(profiles=[]))[0]
    bad_cpu = problems_of(
        with_(profiles=[{"name": "s", "display_name": "S", "cpu": "lots", "memory": "1Gi"}])
    )
    assert bad_cpu == [
        "profiles[0].cpu: Input should be a valid number, got 'lots'; allowed: a number of CPUs from 0.1 to 256"
    ]
    mem = problems_of(with_(dask={"worker_memory": {"choices": ["1Gi", "2Gi"], "default": "4Gi"}}))
    assert mem == ["dask.worker_memory: default '4Gi' is not one of the choices ['1Gi', '2Gi']"]


def test_a_profile_may_choose_its_image():
    ml = {"name": "ghcr.io/esdl-platform/esdl-user-ml", "tag": "0.1.0"}
    profiles = copy.deepcopy(GOOD["profiles"])
    profiles[1]["image"] = ml
    profiles.append({"name": "same", "display_name": "Same", "cpu": 2, "memory": "2Gi", "image": ml})
    spec = parse_project(with_(profiles=profiles))
    assert (
        spec.profiles[0].image is None
        and spec.profiles[1].image.ref == "ghcr.io/esdl-platform/esdl-user-ml:0.1.0"
    )
    # the project's image first, each other image once
    assert spec.images == [
        "ghcr.io/esdl-platform/esdl-user:0.1.0",
        "ghcr.io/esdl-platform/esdl-user-ml:0.1.0",
    ]
    profiles[1]["image"] = {"name": "GHCR.io/Esdl:latest", "tag": "0.1.0"}
    (problem,) = problems_of(with_(profiles=profiles[:2]))
    assert problem.startswith("profiles[1].image.name: ") and "is not an image name" in problem, problem
    profiles[1]["image"] = {"name": "ghcr.io/esdl-platform/esdl-user-ml", "tag": "0.1.0", "digest": "x"}
    (problem,) = problems_of(with_(profiles=profiles[:2]))
    assert problem.startswith("profiles[1].image.digest: "), problem


def test_quantities():
    assert parse_quantity("1Ki") == 1024 and parse_quantity("2k") == 2000 and parse_quantity("0.5Gi") == 2**29
    with pytest.raises(ValueError, match="not a size"):
        parse_quantity("4 GB")


def test_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ESDL_PROJECTS_DIR", str(tmp_path))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(GOOD))
    assert load_project("tiny").source == (tmp_path / "tiny.yaml").resolve()
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(GOOD))
    with pytest.raises(ProjectSpecError, match="name: 'tiny' does not match the file name; allowed: 'other'"):
        load_project("other")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ProjectSpecError, match=r"line \d+, column \d+: not valid YAML"):
        load_project("broken")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ProjectSpecError, match="the file is empty"):
        load_project(tmp_path / "empty.yaml")
    with pytest.raises(EsdlError, match="no project named 'tinny'.*Did you mean 'tiny'"):
        load_project("tinny")
    assert list_projects() == ["broken", "empty", "other", "tiny"]


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="esdl")
    project_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_validate_and_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    assert run_cli("project", "validate", "demo", "extremes-lab") == 0
    out = capsys.readouterr().out
    assert "ok" in out and "extremes-lab: 2 admin(s), 10 member(s), login github" in out

    monkeypatch.setenv("ESDL_PROJECTS_DIR", str(tmp_path))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(with_(name="bad", admins=[])))
    assert run_cli("project", "validate") == 1
    captured = capsys.readouterr()
    assert "ok" in captured.out and "tiny" in captured.out
    assert "bad.yaml: admins: List should have at least 1 item" in captured.err
    assert "1 of 2 spec(s) invalid" in captured.err
    assert run_cli("project", "list") == 0
    out = capsys.readouterr().out
    assert "tiny  Tiny  [3 people, login native]" in out and "bad   INVALID (1 problem(s)" in out


def test_spec_objects_are_immutable():
    spec = ProjectSpec(name="x", title="X", admins=["ada"])
    with pytest.raises(Exception, match="frozen"):
        spec.name = "y"
