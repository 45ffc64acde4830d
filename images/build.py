"""Build and test the user/worker images with buildah: no Docker daemon, as root (``make image``,
``make image-test``).

    python3 images/build.py build [--image esdl-user ...]     # both images from images/notebook/Dockerfile
    .venv/bin/python images/build.py test [--image ...]       # inside each image, as its user (uid 1000)

``build`` makes the base when it is missing: ``debootstrap --variant=minbase bookworm`` with Debian's
python3 and python3-venv, trimmed (no apt lists or caches, docs, man pages, locales), imported into
buildah's store as :data:`LOCAL_BASE` (``buildah from scratch``, copy, commit). ``--base`` takes any other
(e.g. the Dockerfile's digest-pinned ``python:3.11-slim-bookworm``). torch's CPU wheel comes from
``/opt/wheels`` where it lies (as a tiny wheels image mounted into the ML build), else from the page the
ML lock names. pip reaches PyPI with the host's CA bundle, given as a build secret. Each image is built
with ``--layers`` (a rebuild with nothing changed reuses every layer; the summary counts them) and
``--format docker`` (which keeps the HEALTHCHECK). Sizes and times are printed.

``test`` runs images/notebook/image_checks.py inside each image with ``buildah run --isolation chroot
--user 1000:100`` (see that file for the checks) and prints each step's time.

``--skip-if-unavailable`` (CI): where buildah or debootstrap is missing and cannot be installed with apt
as root, print why and exit 0.

Only the standard library is imported at module level (``build`` runs under any Python 3.11).

>>> image_ref("esdl-user", "0.1.0")
'localhost/esdl-user:0.1.0'
>>> sorted(IMAGES)
['esdl-user', 'esdl-user-ml']
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_DIR = REPO / "images" / "notebook"
DOCKERFILE = IMAGE_DIR / "Dockerfile"
#: the images (Dockerfile targets) and what each adds
IMAGES = {
    "esdl-user": "JupyterLab, dask, dask-gateway, the analysis stack, platform_lib",
    "esdl-user-ml": "esdl-user plus torch (CPU) and keras",
}
#: the base made here with debootstrap when no --base is given
LOCAL_BASE = "localhost/esdl-base:bookworm-python3"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOCAL_WHEELS = Path("/opt/wheels")
#: where the ML build mounts the wheels image (the Dockerfile's bind mount target)
WHEELS_MOUNT = "/opt/torch-wheels"
HUB_REQUIREMENTS = REPO / "tests" / "hub" / "requirements.txt"
TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap"}
APT_PACKAGES = ("buildah", "debootstrap", "crun", "uidmap", "fuse-overlayfs")


def image_ref(image: str, tag: str) -> str:
    """The local name of an image in buildah's store."""
    return f"localhost/{image}:{tag}"


def project_version() -> str:
    """The version in pyproject.toml (the images' tag and OCI version label).

    >>> project_version().count(".") >= 1
    True
    """
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def git_revision() -> str:
    """The commit the images are built from (``-dirty`` when tracked files differ from it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def human(size: float) -> str:
    """A byte count for people.

    >>> human(1_288_490_188)
    '1.29 GB'
    """
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "kB") else f"{size:.2f} {unit}"
        size /= 1000
    return f"{size:.2f} GB"


def say(message: str) -> None:
    """One line of progress, at once (CI logs are read live)."""
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------- tools


def missing_tools() -> list[str]:
    """The tools that are not on PATH."""
    return [name for name, command in TOOLS.items() if shutil.which(command) is None]


def ensure_tools() -> str | None:
    """Install buildah and debootstrap with apt where they are missing (as root); the reason they are
    unavailable, or ``None`` when they are there."""
    if not missing_tools():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{', '.join(missing_tools())} not installed, and installing needs root and apt-get"
    say(f"installing {' '.join(APT_PACKAGES)} with apt-get")
    # apt's helpers write temporary files as the _apt account: give them a folder it may write
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "TMPDIR": "/var/tmp"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *APT_PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {(done.stderr or done.stdout).strip()[-400:]}"
    return None if not missing_tools() else f"{', '.join(missing_tools())} still missing after apt-get"


def buildah(*args: str, capture: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``buildah ARGS``."""
    return subprocess.run(["buildah", *args], capture_output=capture, text=True, check=check)


def image_exists(ref: str) -> bool:
    """Whether buildah's store has ``ref``."""
    return buildah("inspect", "--type", "image", ref, check=False).returncode == 0


def image_size(ref: str) -> int:
    """The unpacked size of an image in bytes (buildah's ``images`` size: all its layers)."""
    listing = json.loads(buildah("images", "--json", ref).stdout)
    return parse_size(str(listing[0]["size"]))


def parse_size(text: str) -> int:
    """Bytes of a size as buildah prints it (decimal units).

    >>> parse_size("1.69 GB"), parse_size("129 MB"), parse_size("2.42 KB")
    (1690000000, 129000000, 2420)
    """
    number, _, unit = text.strip().partition(" ")
    scale = {"B": 1, "KB": 10**3, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}[unit or "B"]
    return round(float(number) * scale)


def image_layers(ref: str) -> list[str]:
    """The layer digests of an image, base first."""
    config = json.loads(buildah("inspect", "--type", "image", ref).stdout)
    return list(config["OCIv1"]["rootfs"]["diff_ids"])


# ----------------------------------------------------------------------------------------------- base


def make_local_base(ref: str = LOCAL_BASE) -> float:
    """debootstrap a minimal Debian with python3 into a temporary folder, trim it and commit it to
    buildah's store as ``ref``; the seconds it took."""
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="esdl-base-", dir="/var/tmp"))
    rootfs = work / "rootfs"
    try:
        say(f"base: debootstrap --variant=minbase {DEBIAN_SUITE} with {', '.join(BASE_PACKAGES)}")
        env = {**os.environ, "TMPDIR": "/var/tmp", "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        trim_rootfs(rootfs)
        container = buildah("from", "scratch").stdout.strip()
        try:
            mount = buildah("mount", container).stdout.strip()
            subprocess.run(["cp", "-a", f"{rootfs}/.", mount], check=True)
            buildah("umount", container)
            buildah(
                "config",
                "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env", "LANG=C.UTF-8",
                "--cmd", "python3",
                "--label", f"org.opencontainers.image.description=Debian {DEBIAN_SUITE} minbase with"
                f" {', '.join(BASE_PACKAGES)} (debootstrap, images/build.py)",
                container,
            )  # fmt: skip
            buildah("commit", "--quiet", "--format", "docker", container, ref)
        finally:
            buildah("rm", container, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return time.monotonic() - started


def trim_rootfs(rootfs: Path) -> None:
    """Remove what a container never needs: apt's lists and downloaded packages, documentation (but
    the copyright files), man pages and translations."""
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                    "usr/share/man/*", "usr/share/locale/*", "usr/share/info/*", "var/log/*.log"):  # fmt: skip
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for path in sorted((rootfs / "usr/share/doc").glob("*/**/*"), reverse=True):
        if path.is_file() and path.name != "copyright":
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


# --------------------------------------------------------------------------------------------- wheels


def torch_wheels_image() -> str | None:
    """An image holding the torch wheel the ML lock pins, from :data:`LOCAL_WHEELS`, made once per wheel
    (``None`` where that folder has none: the build then downloads from the page the lock names)."""
    sys.path.insert(0, str(IMAGE_DIR))
    try:
        import lock  # images/notebook/lock.py
    finally:
        sys.path.remove(str(IMAGE_DIR))
    version = lock.pins(lock.ML_LOCK)["torch"]
    wanted = set(lock.hashes(lock.ML_LOCK)["torch"])
    wheels = sorted(LOCAL_WHEELS.glob(f"torch-{version}-*.whl")) if LOCAL_WHEELS.is_dir() else []
    import hashlib

    for wheel in wheels:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest not in wanted:
            continue
        ref = f"localhost/esdl-torch-wheels:{digest[:12]}"
        if not image_exists(ref):
            container = buildah("from", "scratch").stdout.strip()
            try:
                buildah("copy", "--quiet", container, str(wheel), f"/{wheel.name}")
                buildah("commit", "--quiet", container, ref)
            finally:
                buildah("rm", container, check=False)
        return ref
    return None


# ---------------------------------------------------------------------------------------------- build


def build_image(image: str, tag: str, base: str, wheels: str | None, log: Path) -> dict[str, object]:
    """``buildah build`` one target of the Dockerfile; its time, steps and the steps taken from cache."""
    command = [
        "buildah", "build", "--layers", "--isolation", "chroot", "--format", "docker",
        "--file", str(DOCKERFILE), "--target", image, "--tag", image_ref(image, tag),
        "--build-arg", f"BASE={base}",
        "--build-arg", f"VERSION={tag}",
        "--build-arg", f"REVISION={git_revision()}",
    ]  # fmt: skip
    if CA_BUNDLE.is_file():
        command += ["--secret", f"id=ca,src={CA_BUNDLE}"]
    if wheels:
        command += [
            "--build-arg",
            f"TORCH_WHEELS_FROM={wheels}",
            "--build-arg",
            f"TORCH_WHEELS={WHEELS_MOUNT}",
        ]
    command.append(str(REPO))
    started = time.monotonic()
    steps = cached = 0
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            if re.match(r"^\[\d+/\d+\] STEP \d+/\d+: ", line):
                steps += 1
                say("  " + line.rstrip()[:150])
            elif line.startswith("--> Using cache"):
                cached += 1
        code = process.wait()
    seconds = time.monotonic() - started
    if code != 0:
        tail = log.read_text().splitlines()[-40:]
        raise SystemExit(f"building {image} failed (exit {code}); the end of {log}:\n" + "\n".join(tail))
    return {"seconds": seconds, "steps": steps, "cached": cached}


def build(images: list[str], base: str | None, log_dir: Path) -> int:
    """Build ``images`` (making the local base first if needed) and print times, cache use and sizes."""
    tag = project_version()
    say(f"buildah {buildah('--version').stdout.split()[2]}, storage driver {storage_driver()}")
    if base is None:
        base = LOCAL_BASE
        if image_exists(base):
            say(f"base: {base} (in buildah's store; `buildah rmi {base}` makes it anew)")
        else:
            say(f"base: {base} made in {make_local_base(base):.0f} s")
    wheels = torch_wheels_image() if "esdl-user-ml" in images else None
    if "esdl-user-ml" in images:
        say(
            f"torch wheel: {'from ' + str(LOCAL_WHEELS) + ' (' + wheels + ')' if wheels else 'the page the ML lock names'}"
        )
    results = {}
    for image in images:
        say(f"{image}: building ({IMAGES[image]})")
        results[image] = build_image(image, tag, base, wheels, log_dir / f"{image}.log")
        r = results[image]
        say(f"{image}: built in {r['seconds']:.0f} s, {r['cached']} of {r['steps']} steps from cache")
    base_size = image_size(base)
    say(f"sizes (unpacked): base {human(base_size)}")
    for image in images:
        ref = image_ref(image, tag)
        size = image_size(ref)
        say(
            f"  {ref}: {human(size)} ({len(image_layers(ref))} layers, {human(size - base_size)} above the base)"
        )
    if "esdl-user" in images and "esdl-user-ml" in images:
        user, ml = (image_layers(image_ref(i, tag)) for i in ("esdl-user", "esdl-user-ml"))
        shared = len(user) == len([1 for a, b in zip(user, ml, strict=False) if a == b])
        say(
            f"  esdl-user-ml {'adds layers on top of' if shared else 'does NOT share the layers of'} esdl-user"
        )
    say(f"build logs: {log_dir}")
    return 0


def storage_driver() -> str:
    """The storage driver buildah uses (``STORAGE_DRIVER`` overrides its configuration)."""
    info = json.loads(buildah("info").stdout)
    return str(info["store"]["GraphDriverName"])


# ----------------------------------------------------------------------------------------------- test


def hub_major() -> int:
    """The JupyterHub major version of the hub that runs the images (tests/hub/requirements.txt).

    >>> hub_major()
    5
    """
    for line in HUB_REQUIREMENTS.read_text().splitlines():
        match = re.match(r"^jupyterhub==(\d+)\.", line.strip())
        if match:
            return int(match.group(1))
    raise SystemExit(f"{HUB_REQUIREMENTS} pins no jupyterhub==X.Y.Z")


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: ``buildah run`` attempts when buildah itself fails to start the command (never when the command fails)
RUN_ATTEMPTS = 3
#: what buildah prints when it failed before the command ran: a transient race of its re-executed copy
#: ("Close_Fd sealing memfd copy: Device or resource busy"), seen once in CI on this kind of machine
RUNTIME_HICCUPS = ("sealing memfd copy",)


def _runtime_hiccup(stderr: str) -> bool:
    """Whether ``buildah run`` failed in buildah's own start-up, not in the command it ran.

    >>> _runtime_hiccup("Close_Fd sealing memfd copy: Device or resource busy\\nError: exit status 1")
    True
    >>> _runtime_hiccup("AssertionError: means differ")
    False
    """
    return any(text in stderr for text in RUNTIME_HICCUPS)


class ImageRun:
    """One working container of an image, run as its user: ``run`` waits, ``start`` runs in the
    background (its own process group, stopped at the end)."""

    CHECKS = "/opt/esdl-checks"

    def __init__(self, ref: str, mounts: dict[Path, str]) -> None:
        self.ref = ref
        self.mounts = {IMAGE_DIR: self.CHECKS, **mounts}
        self.container = buildah("from", "--quiet", "--pull-never", ref).stdout.strip()
        self.background: list[subprocess.Popen[str]] = []

    def command(self, args: list[str], env: dict[str, str] | None = None) -> list[str]:
        command = ["buildah", "run", "--isolation", "chroot", "--user", "1000:100"]
        for host, inside in self.mounts.items():
            command += ["--volume", f"{host}:{inside}:ro"]
        for key, value in (env or {}).items():
            command += ["--env", f"{key}={value}"]
        return [*command, self.container, "--", *args]

    def run(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
        for attempt in range(RUN_ATTEMPTS):
            done = subprocess.run(self.command(args, env), capture_output=True, text=True, timeout=timeout)
            if done.returncode == 0 or not _runtime_hiccup(done.stderr) or attempt == RUN_ATTEMPTS - 1:
                break
            say(f"  buildah run could not start ({done.stderr.strip().splitlines()[0]}); again")
            time.sleep(1)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed in {self.ref} (exit {done.returncode}):\n"
                                 f"{done.stdout[-3000:]}{done.stderr[-3000:]}")  # fmt: skip
        return done.stdout

    def check(self, *args: str, env: dict[str, str] | None = None) -> str:
        return self.run(["python", f"{self.CHECKS}/image_checks.py", *args], env)

    def start(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        out = log.open("w")
        process = subprocess.Popen(
            self.command(args, env), stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.background.append(process)
        return process

    def stop(self, process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)

    def close(self) -> None:
        for process in self.background:
            self.stop(process)
        buildah("rm", self.container, check=False)


@contextmanager
def image_run(ref: str, mounts: dict[Path, str]) -> Iterator[ImageRun]:
    """A working container of ``ref`` for the time of the ``with`` block."""
    run = ImageRun(ref, mounts)
    try:
        yield run
    finally:
        run.close()


def wait_for(predicate, what: str, process: subprocess.Popen[str], log: Path, timeout: float = 120) -> None:
    """Poll ``predicate`` until it is true; fail with the log if ``process`` ends or time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready; the end of {log}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def port_open(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_image(image: str, tag: str, data_dir: Path, expected: dict[str, float], work: Path) -> list[str]:
    """Run every check in one image; the failures (each step's time is printed as it ends)."""
    ref = image_ref(image, tag)
    failures: list[str] = []
    data = "/home/jovyan/team/data"

    def step(name: str, action) -> None:
        started = time.monotonic()
        try:
            detail = action()
            say(
                f"  {image} {name}: ok in {time.monotonic() - started:.1f} s{' -- ' + detail if detail else ''}"
            )
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the next steps still run
            failures.append(f"{image} {name}: {exc}")
            say(f"  {image} {name}: FAILED in {time.monotonic() - started:.1f} s: {str(exc)[:3000]}")

    with image_run(ref, {data_dir: data}) as box:

        def singleuser() -> str:
            out = box.run(["jupyterhub-singleuser", "--version"]).strip().splitlines()[-1]
            major = int(out.split(".")[0])
            assert major == hub_major(), f"jupyterhub-singleuser {out}, the hub runs JupyterHub {hub_major()}"
            return f"jupyterhub-singleuser {out}, the hub's major version {hub_major()}"

        def platform() -> str:
            return box.check("platform").strip().splitlines()[-1]

        def cube() -> str:
            env = {"ESDL_DATA_DIR": data, "ESDL_CATALOG": f"{data}/catalog.yaml"}
            return box.check("cube", json.dumps(expected), env=env).strip().splitlines()[-1]

        def dask() -> str:
            scheduler_port, dashboard_port = free_port(), free_port()
            address = f"tcp://127.0.0.1:{scheduler_port}"
            scheduler_log, worker_log = work / f"{image}-scheduler.log", work / f"{image}-worker.log"
            scheduler = box.start(
                ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port),
                 "--dashboard-address", f"127.0.0.1:{dashboard_port}"], scheduler_log,
            )  # fmt: skip
            wait_for(lambda: port_open(scheduler_port), "dask scheduler", scheduler, scheduler_log)
            worker = box.start(
                ["dask", "worker", address, "--nthreads", "2", "--no-dashboard", "--name", "image-test"],
                worker_log,
            )
            health = box.run(["esdl-healthcheck", "--root-pid", str(scheduler.pid)]).strip()
            assert health.startswith("healthy: dask scheduler"), health
            out = box.check("dask", address).strip().splitlines()[-1]
            box.stop(worker)
            box.stop(scheduler)
            return f"{out}; {health}"

        def jupyter() -> str:
            port = free_port()
            log = work / f"{image}-jupyter.log"
            lab = box.start(
                ["jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                 "--IdentityProvider.token=image-test", "--LabApp.news_url=None"], log,
            )  # fmt: skip
            wait_for(lambda: port_open(port), "jupyter lab", lab, log)
            health = box.run(["esdl-healthcheck", "--root-pid", str(lab.pid)]).strip()
            assert health.startswith("healthy: jupyter server") and "-> 200" in health, health
            box.stop(lab)
            return health

        def notebooks() -> str:
            return box.check("notebook-imports", image).strip().splitlines()[-1]

        def home() -> str:
            # the user container's command on Kubernetes, up to the server, then a shell that says what it got
            from platform_lib.deploy.values import user_server_command
            from platform_lib.plan import kubernetes_placement

            command = user_server_command(kubernetes_placement("image-test"))
            home = command[3]
            shell = f'echo "$JUPYTERHUB_DEFAULT_URL"; ls {home}; ls {home}/esdl-docs/'
            out = box.run([*command[: command.index("--") + 1], "sh", "-c", shell])
            words = out.split()
            assert words[0] == "/lab/tree/00-start-here.ipynb", out
            assert "00-start-here.ipynb" in words and "esdl-docs" in words and "README.md" in words, out
            return (
                f"start page {words[0]}, {sum(w.endswith('.ipynb') for w in words[1:])} notebooks, esdl-docs"
            )

        step("jupyterhub-singleuser --version", singleuser)
        step("platform_lib without a state folder", platform)
        step("demo cube from a mounted folder", cube)
        step("dask scheduler + worker compute", dask)
        step("jupyter lab answers, health check", jupyter)
        step("the user command prepares the home", home)
        step("curated notebooks' imports", notebooks)
        if image == "esdl-user-ml":
            step(
                "torch: a tiny model trains one step",
                lambda: box.check("torch-step").strip().splitlines()[-1],
            )
    return failures


def demo_data(folder: Path) -> dict[str, float]:
    """A tiny demo cube pair written on the host (10 degrees, 2003) with a catalog of its own
    (``catalog.yaml`` beside the stores), and the values the image must read from them."""
    sys.path.insert(0, str(REPO))
    from platform_lib.catalog import write_catalog
    from platform_lib.demo import demo_catalog_sources, write_demo_cubes

    write_demo_cubes(folder, resolution=10.0, years=(2003, 2003), progress=False)
    sources = demo_catalog_sources(resolution=10.0, years=(2003, 2003))
    write_catalog(folder / "catalog.yaml", sources, title="ESDL demo cubes for the image test")
    sys.path.insert(0, str(IMAGE_DIR))
    import image_checks  # images/notebook/image_checks.py: the same reduction inside the image

    os.environ.update(ESDL_DATA_DIR=str(folder), ESDL_CATALOG=str(folder / "catalog.yaml"))
    return image_checks.cube_summary()


def test(images: list[str], work: Path) -> int:
    """Run the checks in every image; exit status 1 if any failed."""
    tag = project_version()
    absent = [i for i in images if not image_exists(image_ref(i, tag))]
    if absent:
        raise SystemExit(f"not built: {', '.join(absent)} (run `make image` first)")
    data = work / "data"
    started = time.monotonic()
    expected = demo_data(data)
    os.chmod(work, 0o755)  # the image's user reads the mounted cubes
    for path in data.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    data.chmod(0o755)
    say(f"demo cubes (10 degrees, 2003) written in {time.monotonic() - started:.1f} s")
    failures = []
    for image in images:
        ref = image_ref(image, tag)
        say(f"{ref} ({human(image_size(ref))}):")
        image_started = time.monotonic()
        failures += test_image(image, tag, data, expected, work)
        say(f"  {image}: all checks in {time.monotonic() - image_started:.0f} s")
    for failure in failures:
        say(f"FAILED: {failure[:500]}")
    say("image-test: " + ("ok" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["build", "test"])
    parser.add_argument("--image", action="append", choices=sorted(IMAGES), help="default: both")
    parser.add_argument("--base", help=f"the base image (default: {LOCAL_BASE}, made here when missing)")
    parser.add_argument(
        "--skip-if-unavailable", action="store_true", help="exit 0 when buildah cannot be had"
    )
    args = parser.parse_args(argv)
    images = args.image or list(IMAGES)
    if os.geteuid() != 0:
        reason = (
            "buildah builds here as root (rootless buildah needs subuid mappings this script does not set)"
        )
        return _unavailable(reason, args.skip_if_unavailable)
    reason = ensure_tools()
    if reason:
        return _unavailable(reason, args.skip_if_unavailable)
    work = Path(tempfile.mkdtemp(prefix=f"esdl-image-{args.action}-", dir="/var/tmp"))
    started = time.monotonic()
    try:
        code = build(images, args.base, work) if args.action == "build" else test(images, work)
    finally:
        if args.action == "test":
            shutil.rmtree(work, ignore_errors=True)
    say(f"image {args.action}: {time.monotonic() - started:.0f} s in all")
    return code


def _unavailable(reason: str, skip: bool) -> int:
    say(f"{'SKIPPED' if skip else 'cannot build images'}: {reason}")
    return 0 if skip else 1


if __name__ == "__main__":
    sys.exit(main())
