"""Project specs: one YAML file per research project, validated once, at the edge.

A project (a team) is ``projects/<name>.yaml``: who belongs, how they log in, the image, the resource
profiles, the Dask limits, the team storage and the cubes the team adds to the catalog. Everything else
(the embedded platform of ``esdl up``, the Helm values of a Kubernetes deployment) is derived from the
:class:`ProjectSpec` returned by :func:`load_project`. Field reference: ``docs/projects.md``.

An invalid spec raises :class:`ProjectSpecError` with one line per problem, each naming the file, the
field and what is allowed; plaintext secrets are refused (use ``env:NAME`` or ``secret:NAME/KEY``).

>>> spec = load_project("demo")
>>> spec.name, spec.login.method
('demo', 'native')
>>> spec.default_profile.name in [p.name for p in spec.profiles]
True
>>> parse_quantity("2Gi"), parse_quantity("1.5G")
(2147483648, 1500000000)
"""

from __future__ import annotations

import datetime
import os
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from platform_lib.errors import EsdlError, allowed, did_you_mean, short_repr
from platform_lib.paths import repo_root
from platform_lib.strict_yaml import YamlError, load_yaml

__all__ = [
    "CatalogEntry",
    "ProjectSpec",
    "ProjectSpecError",
    "QuotaSettings",
    "ServerSettings",
    "load_project",
    "list_projects",
    "parse_quantity",
    "projects_dir",
    "project_path",
]


#: problems listed in a :class:`ProjectSpecError`'s message (all are in its ``problems``)
MAX_PROBLEMS_SHOWN = 10


class ProjectSpecError(EsdlError):
    """A project spec that cannot be used; ``problems`` holds one message per problem.

    >>> err = ProjectSpecError("p.yaml", ["name: must not be empty"])
    >>> str(err)
    'p.yaml is not a valid project spec (1 problem):\\n  - p.yaml: name: must not be empty'
    """

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        n = len(self.problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN] if n > MAX_PROBLEMS_SHOWN + 1 else self.problems
        lines = "\n".join(f"  - {source}: {p}" for p in shown)
        if len(shown) < n:
            lines += f"\n  - ... and {n - len(shown)} more problems"
        super().__init__(
            f"{source} is not a valid project spec ({n} problem{'s' if n != 1 else ''}):\n{lines}"
        )


# ---------------------------------------------------------------------------------------------------------
# Field types with human error messages


_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_USERNAME = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_SLUG = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_QUANTITY_FACTORS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_IMAGE_NAME = re.compile(r"^[a-z0-9]+([._/:-][a-z0-9]+)*$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SECRET_REF = re.compile(
    r"^(env:[A-Za-z_][A-Za-z0-9_]*|secret:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-._A-Za-z0-9]+)$"
)
MAX_NAME_LENGTH = 40


def _dns_name(value: str) -> str:
    if not _DNS_LABEL.match(value) or len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{value!r} is not DNS-safe; allowed: lowercase letters, digits and '-', starting with a letter,"
            f" not ending with '-', at most {MAX_NAME_LENGTH} characters (e.g. 'extremes-lab')"
        )
    return value


def _username(value: str) -> str:
    if not _USERNAME.match(value) or len(value) > 64:
        raise ValueError(
            f"{value!r} is not a valid user name; allowed: lowercase letters, digits, '.', '_' and '-',"
            " starting and ending with a letter or digit (e.g. 'alice' or 'j.doe')"
        )
    return value


def _slug(value: str) -> str:
    if not _SLUG.match(value) or len(value) > 63:
        raise ValueError(
            f"{value!r} is not a valid name; allowed: lowercase letters, digits, '.', '_' and '-'"
            " (e.g. 'large' or 'esdc-europe-ts')"
        )
    return value


def parse_quantity(value: str | int) -> int:
    """Bytes in a Kubernetes quantity: ``Ki/Mi/Gi/Ti`` are powers of 1024, ``k/M/G/T`` of 1000.

    >>> parse_quantity("512Mi")
    536870912
    >>> parse_quantity(4096)
    4096
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        return value
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(
            f"{value!r} is not a size; allowed: a Kubernetes quantity such as '512Mi', '4Gi' (powers of"
            " 1024) or '4G' (powers of 1000)"
        )
    return int(float(m.group(1)) * _QUANTITY_FACTORS[m.group(2)])


def _quantity_text(value: Any) -> Any:
    """A whole number of bytes as its text; a size of any other type is left for the strict check."""
    return str(value) if type(value) is int else value


def _quantity(value: str) -> str:
    if parse_quantity(value) <= 0:
        raise ValueError(f"{value!r} must be larger than zero")
    return value


#: what a user server or a Dask worker may ask for: what one node of a cluster can provide
CPU_RANGE = (0.1, 256.0)
MEMORY_RANGE = ("128Mi", "4Ti")


def _cpu(value: float) -> float:
    low, high = CPU_RANGE
    if not low <= value <= high:
        raise ValueError(
            f"{value:g} CPUs is not what one node can provide; allowed: {low:g} to {high:g} CPUs"
        )
    return value


def _cores(value: int) -> int:
    low, high = max(1, int(CPU_RANGE[0])), int(CPU_RANGE[1])
    if not low <= value <= high:
        raise ValueError(f"{value} cores is not what one node can provide; allowed: {low} to {high} cores")
    return value


def _memory(value: str) -> str:
    low, high = MEMORY_RANGE
    if not parse_quantity(low) <= parse_quantity(value) <= parse_quantity(high):
        raise ValueError(f"{value!r} is not what one node can provide; allowed: {low} to {high} (e.g. '4Gi')")
    return value


def _image_name(value: str) -> str:
    if not _IMAGE_NAME.match(value):
        raise ValueError(
            f"{value!r} is not an image name; allowed: a lowercase repository such as"
            " 'ghcr.io/esdl/esdl-user' (no tag here: put it in image.tag)"
        )
    return value


def _image_tag(value: str) -> str:
    if not _IMAGE_TAG.match(value):
        raise ValueError(
            f"{value!r} is not an image tag; allowed: letters, digits, '_', '.', '-' (e.g. '0.1.0')"
        )
    return value


def _secret_ref(value: str) -> str:
    if not _SECRET_REF.match(value):
        raise ValueError(
            "plaintext secrets are not allowed in a project spec; give a reference instead:"
            " 'env:VARIABLE' (read from the environment of `esdl up`/the deployer) or"
            " 'secret:SECRET-NAME/KEY' (a Kubernetes Secret)"
        )
    return value


DnsName = Annotated[str, AfterValidator(_dns_name)]
Username = Annotated[str, AfterValidator(_username)]
Slug = Annotated[str, AfterValidator(_slug)]
#: a size: a Kubernetes quantity (``'4Gi'``) or a whole number of bytes; never a float or a boolean
Quantity = Annotated[str, BeforeValidator(_quantity_text), AfterValidator(_quantity)]
#: the memory of one user server or one Dask worker (:data:`MEMORY_RANGE`)
Memory = Annotated[Quantity, AfterValidator(_memory)]
#: the CPUs of one user server (:data:`CPU_RANGE`)
Cpu = Annotated[float, AfterValidator(_cpu)]
#: the cores of one Dask worker (whole cores within :data:`CPU_RANGE`)
Cores = Annotated[int, AfterValidator(_cores)]
SecretRef = Annotated[str, AfterValidator(_secret_ref)]


def _no_repeats(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    repeated = sorted({v for v in values if v in seen or seen.add(v)})  # type: ignore[func-returns-value]
    if repeated:
        raise ValueError(f"{what} {allowed(repeated)} is listed more than once; list each once")


class _Model(BaseModel):
    # strict: YAML's own types are taken as they are, nothing converted (true is not 1, 1.10 is not the
    # text '1.10', '4' is not 4); .nan and .inf are refused where a number is expected
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# ---------------------------------------------------------------------------------------------------------
# The spec


class Login(_Model):
    """How people log in: ``native`` (per-person passwords, the embedded platform's method), ``github``
    or ``generic-oauth`` (Kubernetes deployments; the client secret is a reference, never a value)."""

    method: Literal["native", "github", "generic-oauth"] = "native"
    client_id: str | None = None
    client_secret: SecretRef | None = None
    allowed_organizations: list[str] = Field(default_factory=list)
    authorize_url: str | None = None
    token_url: str | None = None
    userdata_url: str | None = None
    username_claim: str = "preferred_username"
    scopes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fields_for_method(self) -> Login:
        oauth = ("client_id", "client_secret")
        generic = ("authorize_url", "token_url", "userdata_url")
        needed = {"native": (), "github": oauth, "generic-oauth": oauth + generic}[self.method]
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"method {self.method!r} needs {', '.join(missing)}")
        if self.method == "native":
            extra = [f for f in oauth + generic if getattr(self, f) is not None]
            if self.allowed_organizations:
                extra.append("allowed_organizations")
            if extra:
                raise ValueError(f"{', '.join(extra)} only apply to method 'github' or 'generic-oauth'")
        if self.method == "github" and any(getattr(self, f) is not None for f in generic):
            raise ValueError(f"{', '.join(generic)} only apply to method 'generic-oauth'")
        return self


class Image(_Model):
    """The user image (JupyterLab and Dask workers share it). Locally the repository's venv is used.

    >>> Image(name="ghcr.io/esdl-platform/esdl-user-ml").ref
    'ghcr.io/esdl-platform/esdl-user-ml:0.1.0'
    """

    name: Annotated[str, AfterValidator(_image_name)] = "ghcr.io/esdl-platform/esdl-user"
    tag: Annotated[str, AfterValidator(_image_tag)] = "0.1.0"

    @property
    def ref(self) -> str:
        """``name:tag``, as a pod names it."""
        return f"{self.name}:{self.tag}"


class Profile(_Model):
    """A server size a member can pick at spawn time."""

    name: Slug
    display_name: str = Field(min_length=1, max_length=100)
    description: str = ""
    cpu: Cpu
    memory: Memory
    default: bool = False
    # the image of this profile's servers and so of their dask workers (e.g. esdl-user-ml for training);
    # unset: the project's image
    image: Image | None = None

    @property
    def memory_bytes(self) -> int:
        return parse_quantity(self.memory)


class IntChoices(_Model):
    """Choices offered to users (``choices``) and the one preselected (``default``)."""

    choices: list[Cores] = Field(min_length=1)
    default: Cores

    @model_validator(mode="after")
    def _default_in_choices(self) -> IntChoices:
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"choices must not repeat, got {self.choices}")
        if self.default not in self.choices:
            raise ValueError(f"default {self.default} is not one of the choices {self.choices}")
        return self


class QuantityChoices(_Model):
    """Size choices (Kubernetes quantities) and the one preselected."""

    choices: list[Memory] = Field(min_length=1)
    default: Memory

    @model_validator(mode="after")
    def _default_in_choices(self) -> QuantityChoices:
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"choices must not repeat, got {self.choices}")
        if self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not one of the choices {self.choices}")
        return self

    @property
    def choices_bytes(self) -> list[int]:
        return [parse_quantity(c) for c in self.choices]


class DaskSettings(_Model):
    """Limits of each user's Dask Gateway clusters."""

    max_workers_per_user: int = Field(default=4, ge=1, le=1000)
    max_clusters_per_user: int = Field(default=2, ge=1, le=100)
    # worker cores summed over a user's clusters; unset: max_workers_per_user x the largest core choice
    max_cores_per_user: float | None = Field(default=None, gt=0, le=100_000)
    worker_cores: IntChoices = Field(default_factory=lambda: IntChoices(choices=[1, 2], default=1))
    worker_memory: QuantityChoices = Field(
        default_factory=lambda: QuantityChoices(choices=["1Gi", "2Gi", "4Gi"], default="2Gi")
    )
    idle_timeout_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)


class StorageSettings(_Model):
    """Team and home volumes (sizes apply on Kubernetes; locally they are plain folders)."""

    team_size: Quantity = "10Gi"
    home_size: Quantity = "5Gi"
    storage_class: DnsName | None = None
    team_access: Literal["rw", "admins-write"] = "rw"


class ServerSettings(_Model):
    """Idle culling of user servers (the hub's idle culler; on Kubernetes the chart's ``cull``)."""

    cull_idle_minutes: int = Field(
        default=60, ge=0, le=30 * 24 * 60, description="0: never cull idle servers"
    )
    cull_max_age_hours: int = Field(default=0, ge=0, le=365 * 24, description="0: no maximum age")


class QuotaSettings(_Model):
    """The project's ceiling on Kubernetes (a ResourceQuota on its namespace): all user servers and Dask
    clusters together. Unset fields are derived by the deployer from the people, profiles and Dask limits.
    Every profile and one user's largest Dask cluster must fit inside an explicit quota."""

    cpu: float | None = Field(default=None, gt=0, le=100_000)
    memory: Quantity | None = None
    pods: int | None = Field(default=None, ge=1, le=10_000)


class CatalogEntry(_Model):
    """A cube the team adds to the shared catalog (an Intake ``zarr`` source).

    ``urlpath`` is a URL (``s3://``, ``https://``, ``gs://``, ``file://``), an absolute path, or a path
    relative to the platform's data folder (``ESDL_DATA_DIR``).
    """

    name: Slug
    description: str = ""
    urlpath: str = Field(min_length=1)
    driver: Literal["zarr"] = "zarr"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """Whether ``urlpath`` is a path on this machine (not a remote URL)."""
        return "://" not in self.urlpath or self.urlpath.startswith("file://")

    def local_path(self, data_dir: Path) -> Path:
        """The store's path on this machine, relative paths taken from ``data_dir``."""
        p = Path(self.urlpath.removeprefix("file://"))
        return p if p.is_absolute() else Path(data_dir) / p


class CatalogSettings(_Model):
    entries: list[CatalogEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> CatalogSettings:
        _no_repeats([e.name for e in self.entries], "entry name")
        return self


def _default_profiles() -> list[Profile]:
    return [
        Profile(name="standard", display_name="Standard: 1 CPU, 2 GiB", cpu=1, memory="2Gi", default=True)
    ]


class ProjectSpec(_Model):
    """One research project: the single source of truth for its local and Kubernetes platforms.

    >>> spec = ProjectSpec(name="tiny", title="Tiny", admins=["ada"], members=["bo"])
    >>> spec.users
    ['ada', 'bo']
    >>> spec.dask.worker_memory.default
    '2Gi'
    """

    name: DnsName
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    admins: list[Username] = Field(min_length=1)
    members: list[Username] = Field(default_factory=list)
    login: Login = Field(default_factory=Login)
    image: Image = Field(default_factory=Image)
    profiles: list[Profile] = Field(default_factory=_default_profiles, min_length=1)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    servers: ServerSettings = Field(default_factory=ServerSettings)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)

    _source: Path | None = PrivateAttr(default=None)

    @property
    def images(self) -> list[str]:
        """Every image the project's servers run (``name:tag``): the project's, then the profiles' own.

        >>> ProjectSpec(name="t", title="T", admins=["ada"]).images
        ['ghcr.io/esdl-platform/esdl-user:0.1.0']
        """
        refs = [self.image.ref] + [p.image.ref for p in self.profiles if p.image is not None]
        return list(dict.fromkeys(refs))

    @model_validator(mode="after")
    def _people_and_profiles(self) -> ProjectSpec:
        problems = _cross_problems(self.model_dump())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def users(self) -> list[str]:
        """Everyone who may log in: admins then members, in spec order."""
        return [*self.admins, *self.members]

    @property
    def default_profile(self) -> Profile:
        """The profile marked ``default: true``, else the first one."""
        return next((p for p in self.profiles if p.default), self.profiles[0])

    @property
    def source(self) -> Path | None:
        """The file this spec was loaded from (``None`` when built in code)."""
        return self._source


def _cross_problems(data: dict[str, Any]) -> list[str]:
    """Checks that span fields (people listed twice, several default profiles), on raw or dumped data."""
    problems = []

    def names(key: str, sub: str | None = None) -> list[str]:
        items = data.get(key)
        if not isinstance(items, list):
            return []
        if sub:
            items = [i.get(sub) for i in items if isinstance(i, dict)]
        return [i for i in items if isinstance(i, str)]

    admins, members = names("admins"), names("members")
    for key, values in (("admins", admins), ("members", members), ("profiles", names("profiles", "name"))):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            problems.append(f"{key}: {allowed(repeated)} listed more than once; list each once")
    both = sorted(set(admins) & set(members))
    if both:
        problems.append(
            f"members: {allowed(both)} also listed under admins; list each person once (admins are members too)"
        )
    profiles = data.get("profiles")
    if isinstance(profiles, list):
        defaults = [p.get("name") for p in profiles if isinstance(p, dict) and p.get("default") is True]
        if len(defaults) > 1:
            problems.append(
                f"profiles: only one profile may have default: true, got {allowed(map(str, defaults))}"
            )
    problems += _quota_problems(data)
    return problems


SCHEDULER_CPU = 1.0
SCHEDULER_MEMORY = "2Gi"


def _quota_problems(data: dict[str, Any]) -> list[str]:
    """Profiles and one user's largest Dask cluster must fit inside an explicit ``quota``."""
    try:
        quota = QuotaSettings.model_validate(data.get("quota") or {})
        dask = DaskSettings.model_validate(data.get("dask") or {})
        profiles = [Profile.model_validate(p) for p in data.get("profiles") or []]
    except (ValidationError, TypeError):
        return []  # reported field by field elsewhere
    problems = []
    limit_mem = parse_quantity(quota.memory) if quota.memory else None
    for i, p in enumerate(profiles):
        if quota.cpu is not None and p.cpu > quota.cpu:
            problems.append(
                f"profiles[{i}].cpu: {p.cpu:g} CPUs is above the project's quota.cpu of {quota.cpu:g};"
                " lower the profile or raise quota.cpu"
            )
        if limit_mem is not None and p.memory_bytes > limit_mem:
            problems.append(
                f"profiles[{i}].memory: {p.memory} is above the project's quota.memory of {quota.memory};"
                " lower the profile or raise quota.memory"
            )
    workers = dask.max_workers_per_user
    cluster_cpu = workers * max(dask.worker_cores.choices) + SCHEDULER_CPU
    cluster_mem = workers * max(dask.worker_memory.choices_bytes) + parse_quantity(SCHEDULER_MEMORY)
    if quota.cpu is not None and cluster_cpu > quota.cpu:
        problems.append(
            f"dask: one user's largest cluster ({workers} workers x {max(dask.worker_cores.choices)} cores"
            f" + a {SCHEDULER_CPU:g}-core scheduler = {cluster_cpu:g} CPUs) is above quota.cpu of"
            f" {quota.cpu:g}; lower dask.max_workers_per_user or dask.worker_cores, or raise quota.cpu"
        )
    if limit_mem is not None and cluster_mem > limit_mem:
        problems.append(
            f"dask: one user's largest cluster ({workers} workers x {max(dask.worker_memory.choices, key=parse_quantity)}"
            f" + a {SCHEDULER_MEMORY} scheduler = {cluster_mem / 2**30:.1f} GiB) is above quota.memory of"
            f" {quota.memory}; lower dask.max_workers_per_user or dask.worker_memory, or raise quota.memory"
        )
    return problems


# ---------------------------------------------------------------------------------------------------------
# Plaintext secrets: refused anywhere in the file

_SECRET_KEY = re.compile(
    r"(password|passwd|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|credential)", re.I
)
_SECRET_VALUE = re.compile(
    r"(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|xox[baprs]-[A-Za-z0-9-]{10,})"
)
_NOT_SECRET_KEY = re.compile(r"(_url|_uri|_endpoint|_claim)$", re.I)
_S3_CREDENTIAL_KEYS = {"key", "secret", "token", "aws_access_key_id", "aws_secret_access_key"}
#: values of a credential key that say how to find credentials and are none themselves (gcsfs's token
#: modes); the chart's catalog guard accepts the same (templates/catalog-configmap.yaml)
NOT_SECRET_VALUES = {"google_default", "cache", "anon", "browser", "cloud"}


def _plaintext_secrets(node: Any, loc: tuple[str | int, ...] = ()) -> list[str]:
    problems = []
    if isinstance(node, dict):
        for k, v in node.items():
            here = (*loc, str(k))
            secret_key = bool(_SECRET_KEY.search(str(k)) and not _NOT_SECRET_KEY.search(str(k))) or (
                "storage_options" in loc and str(k).lower() in _S3_CREDENTIAL_KEYS
            )
            if (
                secret_key
                and isinstance(v, str)
                and v
                and not _SECRET_REF.match(v)
                and v not in NOT_SECRET_VALUES
            ):
                problems.append(
                    f"{_dotted(here)}: looks like a plaintext secret; allowed: a reference 'env:VARIABLE' or"
                    " 'secret:SECRET-NAME/KEY' (never the value itself)"
                )
            else:
                problems.extend(_plaintext_secrets(v, here))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            problems.extend(_plaintext_secrets(v, (*loc, i)))
    elif isinstance(node, str) and _SECRET_VALUE.search(node):
        problems.append(
            f"{_dotted(loc)}: contains what looks like a token or key; secrets never go in a spec, give a"
            " reference 'env:VARIABLE' or 'secret:SECRET-NAME/KEY' in a secret field instead"
        )
    return problems


# ---------------------------------------------------------------------------------------------------------
# Error messages


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at ``loc`` (``loc`` excludes that field)."""
    tp: Any = ProjectSpec
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            continue
        if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """``list[X]``, ``X | None`` and ``Annotated[X, ...]`` down to ``X``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (list, typing.Union) or str(origin) == "<class 'types.UnionType'>":
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if args else tp
            if origin is not list and len(args) != 1:
                return tp
        else:
            return tp


#: pydantic's error kinds that mean "a value of the wrong type": the message shows the value and what to write
_TYPE_ERRORS = (
    "int_type",
    "int_parsing",
    "int_from_float",
    "float_type",
    "float_parsing",
    "finite_number",
    "string_type",
    "bool_type",
    "bool_parsing",
    "list_type",
    "model_type",
    "model_attributes_type",
    "dict_type",
    "literal_error",
)
#: what the range checks of a type allow, said where a value of another type was given
_RANGES = {
    _cpu: f"a number of CPUs from {CPU_RANGE[0]:g} to {CPU_RANGE[1]:g}",
    _cores: f"a whole number of cores from {max(1, int(CPU_RANGE[0]))} to {int(CPU_RANGE[1])}",
    _memory: f"a size from {MEMORY_RANGE[0]} to {MEMORY_RANGE[1]} (e.g. '4Gi')",
    _quantity: "a size such as '512Mi' or '4Gi', or a whole number of bytes",
}


def _field_at(loc: tuple[str | int, ...]) -> Any:
    """The pydantic ``FieldInfo`` of the field at ``loc``, or ``None`` (a list item, an unknown field)."""
    if not loc or not isinstance(loc[-1], str):
        return None
    model = _model_at(loc[:-1])
    return model.model_fields.get(loc[-1]) if model else None


def _allowed_at(loc: tuple[str | int, ...]) -> str:
    """What the field at ``loc`` allows, from its bounds and range checks, and what 0 means there."""
    field = _field_at(loc)
    if field is None:
        return ""
    bounds = {b: getattr(m, b) for m in field.metadata for b in ("ge", "gt", "le") if hasattr(m, b)}
    checks = [m.func for m in reversed(field.metadata) if getattr(m, "func", None) in _RANGES]
    text = _RANGES[checks[0]] if checks else ""  # the last check of a type is its narrowest
    if bounds:
        whole = _unwrap(field.annotation) is int
        low = f"from {bounds['ge']:g}" if "ge" in bounds else f"above {bounds.get('gt', 0):g}"
        high = (" to " if "ge" in bounds else ", at most ") + f"{bounds['le']:g}" if "le" in bounds else ""
        text = f"{'a whole number' if whole else 'a number'} {low}{high}"
    if field.description:
        text = f"{text} ({field.description})" if text else field.description
    return f"; allowed: {text}" if text else ""


def _hint(kind: str, value: Any) -> str:
    """What to write instead, when YAML read a value as another type than the field's."""
    if isinstance(value, bool) and kind in ("int_type", "float_type"):
        return "; true/false is not a number"
    if kind == "string_type" and isinstance(value, bool | int | float | datetime.date):
        kind_of = {bool: "a boolean", datetime.date: "a date", datetime.datetime: "a date"}.get(
            type(value), "a number"
        )
        return f"; YAML reads this unquoted value as {kind_of}: put it in quotes"
    if kind in ("int_type", "float_type") and isinstance(value, str) and _NUMBER.match(value.strip()):
        return "; write the number without quotes"
    if kind == "finite_number":
        return "; .nan and .inf are not numbers here"
    return ""


def _message(err: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = err["type"]
    where = _dotted(loc)
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        names = list(model.model_fields) if model else []
        hint = did_you_mean(str(loc[-1]), names)
        return f"{where}: unknown field.{hint} Allowed fields: {allowed(names)}"
    if kind == "missing":
        return f"{where}: is required"
    msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _TYPE_ERRORS:
        value = err.get("input")
        msg = f"{msg}, got {short_repr(value)}{_hint(kind, value)}{_allowed_at(loc)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        msg = f"{short_repr(err.get('input'))} is out of range{_allowed_at(loc) or '; ' + msg}"
    return f"{where}: {msg}"


# ---------------------------------------------------------------------------------------------------------
# Loading


def projects_dir() -> Path:
    """Where named specs live: ``ESDL_PROJECTS_DIR`` or ``<repo>/projects``.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"ESDL_PROJECTS_DIR": "/srv/projects"}):
    ...     projects_dir()
    PosixPath('/srv/projects')
    """
    env = os.environ.get("ESDL_PROJECTS_DIR")
    return Path(env) if env else repo_root() / "projects"


def list_projects() -> list[str]:
    """Names of the specs in :func:`projects_dir` (file stems of ``*.yaml``), sorted.

    >>> "demo" in list_projects()
    True
    """
    d = projects_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def project_path(path_or_name: str | os.PathLike[str]) -> Path:
    """The spec file for a project name (``demo``) or a path (``projects/demo.yaml``).

    >>> project_path("demo").name
    'demo.yaml'
    """
    text = str(path_or_name)
    if text.endswith((".yaml", ".yml")) or os.sep in text or _is_file(Path(text)):
        return Path(text)
    path = projects_dir() / f"{text}.yaml"
    if not _is_file(path):
        names = list_projects()
        raise EsdlError(
            f"no project named {short_repr(text)} in {projects_dir()}.{did_you_mean(text, names)}"
            f" Known projects: {allowed(names) or '(none)'}; or pass a path to a spec file."
        )
    return path


def parse_project(data: Any, source: str = "<spec>") -> ProjectSpec:
    """Validate already-parsed YAML data (a mapping) into a :class:`ProjectSpec`.

    >>> parse_project({"name": "x", "title": "X", "admins": ["ada"]}).name
    'x'
    >>> parse_project({"name": "X!", "title": "X", "admins": []})
    Traceback (most recent call last):
    ...
    platform_lib.projects.ProjectSpecError: <spec> is not a valid project spec (2 problems):
      - <spec>: name: 'X!' is not DNS-safe; ...
      - <spec>: admins: List should have at least 1 item after validation, not 0
    """
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ProjectSpecError(
            source, [f"(top level): the file is {kind}; allowed: a mapping with name, title, admins, ..."]
        )
    problems = _plaintext_secrets(data)
    secret_fields = {p.split(":", 1)[0] for p in problems}
    try:
        spec = ProjectSpec.model_validate(data)
    except ValidationError as exc:
        spec = None
        for err in exc.errors():
            if err["loc"] == ():  # the cross-field check: reported below, one line per problem
                continue
            message = _message(err)
            if message.split(":", 1)[0] not in secret_fields:  # a secret field: said once already
                problems.append(message)
        problems += _cross_problems(data)
    if problems:
        raise ProjectSpecError(source, problems)
    assert spec is not None
    return spec


def _is_file(path: Path) -> bool:
    """``path.is_file()``, and ``False`` for a path the file system cannot hold (too long, a NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def load_project(path_or_name: str | os.PathLike[str]) -> ProjectSpec:
    """Load and validate a project spec by name (``projects/<name>.yaml``) or by path.

    The file name must match ``name`` inside it (``esdl up --project NAME`` finds it by file name).

    >>> load_project("projects/demo.yaml").title != ""
    True
    """
    path = project_path(path_or_name)
    source = _display(path)
    if not _is_file(path):
        raise EsdlError(f"{source}: no such project spec file")
    try:
        data = load_yaml(path, source)
    except YamlError as exc:  # not UTF-8, not YAML, a key given twice
        raise ProjectSpecError(source, [exc.problem]) from None
    spec = parse_project(data, source)
    if spec.name != path.stem:
        raise ProjectSpecError(
            source,
            [
                f"name: {spec.name!r} does not match the file name; allowed: {path.stem!r} (or rename the file)"
            ],
        )
    spec._source = path.resolve()
    return spec


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (OSError, ValueError):  # outside the working folder, or a path too long to resolve
        return str(path)
