"""Benchmark: DICOMweb of this platform against Orthanc, QIDO at a million instances, STOW memory.

In one run, on one machine, with the same bytes sent to both servers:

1. STOW-RS of synthetic CT series (512x512, 300 slices, ~158 MB; three of them, median) each as one
   `multipart/related; type="application/dicom"` request, to this platform (gunicorn, PostgreSQL,
   objects as local files; with --s3 also on an S3 server) and to Orthanc with its DICOMweb plugin
   (Debian's packages, installed with apt-get when missing): instances/s, MB/s, and ours/Orthanc.
2. WADO-RS retrieval of those whole studies from both (median of 5 rounds): MB/s and the ratio.
   For 1 and 2 also the servers' CPU time per instance, steadier than wall time on a shared machine.
3. QIDO-RS study searches with a million instances in the index (bulk-loaded with COPY): p50/p95
   per kind of search, for an organization's radiologist and for a regional admin.
4. The peak RSS of a single web worker while it receives a ~1 GB STOW sent chunked.

Targets: STOW and WADO ratio >= 1.0, QIDO p95 <= 50 ms, worker peak RSS <= 300 MB.
MB is 10^6 bytes throughout. --quick shrinks every size (100k instances, ~100 MB STOW) for a smoke run.

Run: .venv/bin/python bench/dicomweb.py [--quick] [--s3] [--keep]
"""

import argparse
import contextlib
import dataclasses
import datetime as dt
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "platform"))

from medai.runtime import services  # noqa: E402

MB = 1_000_000
ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
ORTHANC_PACKAGES = ("orthanc", "orthanc-dicomweb")
# Debian installs the plugin in the folder its service loads, and the versioned library it links to.
DICOMWEB_PLUGIN_GLOBS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so*", "/usr/lib/orthanc/libOrthancDicomWeb.so*")
# Both servers are asked for the stored transfer syntax, uncompressed on the wire.
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DICOM_JSON = "application/dicom+json"
STOW_TIMEOUT = 1800  # seconds; generous, a failing server answers long before
RSS_SAMPLE_SECONDS = 0.05


@dataclass(frozen=True)
class Sizes:
    """How much work each part does; --quick divides everything so the whole run takes a few minutes."""

    slices: int  # per CT series sent to both servers
    stow_rounds: int  # series sent, each to both servers
    wado_rounds: int
    qido_studies: int
    qido_series_per_study: int
    qido_instances_per_series: int
    qido_searches: int  # per principal, all kinds together
    rss_slices: int  # the big chunked STOW; 2000 slices of 512x512 are ~1.05 GB

    @property
    def qido_instances(self) -> int:
        return self.qido_studies * self.qido_series_per_study * self.qido_instances_per_series


FULL = Sizes(slices=300, stow_rounds=3, wado_rounds=5, qido_studies=10_000, qido_series_per_study=4,
             qido_instances_per_series=25, qido_searches=700, rss_slices=2000)
QUICK = Sizes(slices=60, stow_rounds=3, wado_rounds=3, qido_studies=1_000, qido_series_per_study=4,
              qido_instances_per_series=25, qido_searches=210, rss_slices=200)


# --- Statistics and output -----------------------------------------------------------------------


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile: with 200 samples p95 is an observed latency, not an interpolation."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


@dataclass
class Row:
    """One line of the final table; `ours` is compared with `target` by `better` (>= or <=)."""

    metric: str
    ours: float
    orthanc: float | None = None
    target: float | None = None
    better: str = ">="  # the direction of the target: ratio or value must be >= or <= it
    on_ratio: bool = False  # the target applies to ours/orthanc, not to ours

    @property
    def ratio(self) -> float | None:
        return self.ours / self.orthanc if self.orthanc else None

    @property
    def passed(self) -> bool | None:
        value = self.ratio if self.on_ratio else self.ours
        if self.target is None or value is None:
            return None
        return value >= self.target if self.better == ">=" else value <= self.target


def print_table(rows: list[Row]) -> None:
    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"

    print()
    print(f"{'metric':60} {'ours':>9} {'orthanc':>9} {'ratio':>7}  {'target':14} result")
    for row in rows:
        target = "" if row.target is None else f"{'ratio ' if row.on_ratio else ''}{row.better} {row.target:g}"
        result = {True: "PASS", False: "FAIL", None: ""}[row.passed]
        print(f"{row.metric:60} {number(row.ours):>9} {number(row.orthanc):>9} {number(row.ratio):>7}  "
              f"{target:14} {result}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- Synthetic data and multipart bodies ---------------------------------------------------------


def ct_slices(count: int, *, study_uid: str, seed: int = 0) -> Iterator[bytes]:
    """`count` Part 10 files of one 512x512 CT series, generated one at a time (never all in memory)."""
    from pydicom.uid import generate_uid

    from medai.archive import synthetic

    series_uid = generate_uid()
    patient = synthetic.Patient(patient_id=f"BENCH-{seed}", name="Benchmark^CT")
    for number in range(1, count + 1):
        dataset = synthetic.make_instance(
            modality="CT", rows=512, columns=512, study_uid=study_uid, series_uid=series_uid,
            instance_number=number, patient=patient, accession_number=f"BENCH{seed}", seed=seed * 100_000 + number,
        )
        yield synthetic.to_bytes(dataset)


def multipart_related(files: Iterable[bytes], boundary: str) -> Iterator[bytes]:
    """A `multipart/related; type="application/dicom"` body (PS3.18 8.6.1.2, RFC 2046 5.1.1).

    Each part is `--boundary CRLF headers CRLF CRLF data`; the CRLF before every following
    delimiter belongs to the delimiter, and the body ends with `CRLF --boundary-- CRLF`.
    """
    opening = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    first = True
    for data in files:
        yield opening if first else b"\r\n" + opening
        yield data
        first = False
    yield f"\r\n--{boundary}--\r\n".encode()


def multipart_content_type(boundary: str) -> str:
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


@dataclass(frozen=True)
class Body:
    """A STOW body spooled to disk once, so both servers get the very same bytes, read as they are sent."""

    path: Path
    boundary: str
    study_uid: str
    instances: int
    size: int

    @property
    def content_type(self) -> str:
        return multipart_content_type(self.boundary)


def write_body(path: Path, *, slices: int, seed: int) -> Body:
    from pydicom.uid import generate_uid

    study_uid, boundary = generate_uid(), f"medai-bench-{uuid.uuid4().hex}"
    with open(path, "wb") as out:
        for chunk in multipart_related(ct_slices(slices, study_uid=study_uid, seed=seed), boundary):
            out.write(chunk)
    return Body(path, boundary, study_uid, slices, path.stat().st_size)


# --- Processes, from /proc -----------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (state) on: the command name before it may hold spaces. [] once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _parents() -> dict[int, int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(int(stat.parent.name))
        if fields:
            parents[int(stat.parent.name)] = int(fields[1])
    return parents


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (gunicorn's workers)."""
    return [child for child, parent in _parents().items() if parent == pid]


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (a postmaster and its backends, gunicorn and its workers)."""
    parents = _parents()
    tree = [root]
    for pid in tree:  # breadth-first: the list grows while it is walked
        tree.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU time of each process, all its threads together."""
    times = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return times


def status_kib(pid: int, key: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/PID/status in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- The DICOMweb client side --------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A DICOMweb origin as the client sees it: the service root and the headers it needs."""

    name: str
    root: str  # e.g. http://127.0.0.1:8000/dicomweb
    headers: dict[str, str] = field(default_factory=dict)

    def session(self) -> requests.Session:
        session = requests.Session()
        # Identity encoding: neither server may spend the run compressing (Orthanc can gzip answers).
        session.headers.update({"Accept-Encoding": "identity", **self.headers})
        return session


@dataclass(frozen=True)
class Origin:
    """One server under test: who stores (a PACS's uploader), who retrieves (a radiologist), and the
    processes that do its work by role: Orthanc's one; for us gunicorn's, PostgreSQL's, S3's if used."""

    name: str
    store: Server
    read: Server
    processes: Callable[[], dict[str, list[int]]]


@dataclass(frozen=True)
class Transfer:
    seconds: float
    size: int
    instances: int
    server_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds the origin's processes spent, by role

    @property
    def cpu_ms_per_instance(self) -> float:
        return sum(self.server_cpu.values()) * 1000 / self.instances

    def cpu_breakdown(self) -> str:
        """`12.3 ms/instance (web 9.1, postgresql 3.2)`."""
        roles = ", ".join(f"{role} {cpu * 1000 / self.instances:.2f}" for role, cpu in self.server_cpu.items())
        return f"{self.cpu_ms_per_instance:.2f} ms/instance ({roles})"

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.seconds

    @property
    def instances_per_s(self) -> float:
        return self.instances / self.seconds


def stow(server: Server, body: Body) -> Transfer:
    """POST the spooled body (with Content-Length) and check that every instance was stored."""
    session = server.session()
    with open(body.path, "rb") as data:
        started = time.perf_counter()
        response = session.post(
            f"{server.root}/studies", data=data, timeout=STOW_TIMEOUT,
            headers={"Content-Type": body.content_type, "Content-Length": str(body.size), "Accept": DICOM_JSON},
        )
        seconds = time.perf_counter() - started
    _check_stored(server, response, body.study_uid, body.instances)
    return Transfer(seconds, body.size, body.instances)


def _check_stored(server: Server, response: requests.Response, study_uid: str, expected: int) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{server.name} STOW answered {response.status_code}: {response.text[:500]}")
    failed = response.json().get("00081198", {}).get("Value", [])
    if failed:
        raise RuntimeError(f"{server.name} STOW reported {len(failed)} failed instances: {failed[:3]}")
    stored = study_instance_count(server, study_uid)
    if stored != expected:
        raise RuntimeError(f"{server.name} holds {stored} instances of the study after STOW, not {expected}")


def study_instance_count(server: Server, study_uid: str) -> int:
    """Number of Study Related Instances from a QIDO search on the UID: the same question to both servers."""
    response = server.session().get(
        f"{server.root}/studies", params={"StudyInstanceUID": study_uid, "includefield": "00201208"},
        headers={"Accept": DICOM_JSON}, timeout=60,
    )
    response.raise_for_status()
    results = response.json() if response.content else []
    if not results:
        return 0
    return int(results[0].get("00201208", {}).get("Value", [0])[0])


def wado_study(server: Server, study_uid: str, expected_parts: int) -> Transfer:
    """GET the whole study as multipart/related, read to the end; the parts are counted as they pass."""
    session = server.session()
    started = time.perf_counter()
    response = session.get(f"{server.root}/studies/{study_uid}", headers={"Accept": WADO_ACCEPT}, stream=True,
                           timeout=STOW_TIMEOUT)
    if response.status_code != 200:
        raise RuntimeError(f"{server.name} WADO answered {response.status_code}: {response.text[:500]}")
    delimiter = b"--" + _boundary_of(response.headers["Content-Type"]).encode()
    overlap = len(delimiter) - 1
    size, delimiters, tail = 0, 0, b""
    for chunk in response.iter_content(1024 * 1024):
        size += len(chunk)
        # The delimiters inside the chunk, plus one straddling its start (too long to lie in either side).
        delimiters += chunk.count(delimiter) + (tail + chunk[:overlap]).count(delimiter)
        tail = chunk[-overlap:] if len(chunk) >= overlap else (tail + chunk)[-overlap:]
    seconds = time.perf_counter() - started
    if delimiters - 1 != expected_parts:  # the closing delimiter is the one more
        raise RuntimeError(f"{server.name} WADO returned {delimiters - 1} parts, not {expected_parts}")
    return Transfer(seconds, size, expected_parts)


def wado_studies(server: Server, bodies: list[Body]) -> Transfer:
    """Retrieve each body's study in turn, as one transfer: a longer reading than one study's fraction
    of a second, which the scheduler's noise on a small machine would otherwise dominate."""
    transfers = [wado_study(server, body.study_uid, body.instances) for body in bodies]
    return Transfer(sum(t.seconds for t in transfers), sum(t.size for t in transfers),
                    sum(t.instances for t in transfers))


def _boundary_of(content_type: str) -> str:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip('"')
    raise RuntimeError(f"no boundary in {content_type!r}")


# --- Orthanc -------------------------------------------------------------------------------------


def _dicomweb_plugin() -> Path | None:
    for pattern in DICOMWEB_PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    return None


def ensure_orthanc() -> Path:
    """Install Debian's Orthanc and its DICOMweb plugin when missing; returns the plugin's library."""
    plugin = _dicomweb_plugin()
    if ORTHANC_BINARY.exists() and plugin is not None:
        return plugin
    log(f"installing {' '.join(ORTHANC_PACKAGES)} with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *ORTHANC_PACKAGES]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, check=True, stdout=subprocess.DEVNULL)
    plugin = _dicomweb_plugin()
    if not ORTHANC_BINARY.exists() or plugin is None:
        raise RuntimeError(f"{ORTHANC_BINARY} or the DICOMweb plugin is still missing after apt-get install")
    return plugin


def start_orthanc(workdir: Path) -> services.RunningService:
    """Orthanc on a free loopback port with its own storage in `workdir`; no DICOM listener, no auth.

    Its defaults otherwise (SQLite index, files on disk, fsync on write), as `apt-get install` gives them.
    """
    plugin = ensure_orthanc()
    workdir.mkdir(parents=True, exist_ok=True)
    port = services.free_port()
    config = {
        "Name": "medai-bench",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "StorageCompression": False,
        "HttpServerEnabled": True,
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # loopback callers only
        "AuthenticationEnabled": False,
        "HttpCompressionEnabled": False,
        "DicomServerEnabled": False,
        "DicomPort": services.free_port(),
        "Plugins": [str(plugin)],
        "SaveJobs": False,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},  # WADO-URI off; WADO-RS is on
    }
    config_file = workdir / "orthanc.json"
    config_file.write_text(json.dumps(config, indent=2))
    log_file = open(workdir / "orthanc.log", "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen([str(ORTHANC_BINARY), str(config_file)], stdout=log_file, stderr=subprocess.STDOUT,
                               cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    services.wait_until(lambda: services.http_ok(url + "/dicom-web/studies"), timeout=60, what="Orthanc",
                        process=process)
    return services.RunningService("orthanc", url, stop=lambda: services.terminate(process), process=process)


def orthanc_versions(url: str) -> str:
    system = requests.get(f"{url}/system", timeout=10).json()
    plugin = requests.get(f"{url}/plugins/dicom-web", timeout=10).json()
    return f"Orthanc {system.get('Version')}, DICOMweb plugin {plugin.get('Version')}"


# --- The platform --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    organization_ids: list[int]
    region_ids: list[int]
    uploader_tokens: list[str]  # a PACS uploader of each of the first two organizations
    radiologist_tokens: list[str]  # a radiologist of each of the first two organizations
    regional_token: str  # a regional admin of the first organization's region


def setup_django(home: Path, database_url: str) -> dict[str, str]:
    """Point this process at the benchmark's database (as the web tier will be), migrate; returns the env."""
    env = {"DATABASE_URL": database_url, "MEDAI_HOME": str(home), "DJANGO_SETTINGS_MODULE": "medai.settings",
           "CELERY_BROKER_URL": "memory://", "S3_ENDPOINT_URL": "", "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def create_tenants(organizations: int) -> Tenant:
    """Organizations in two regions (the last one alone in the second); users in the first two."""
    from medai.accounts.models import Role
    from medai.accounts.services import api_token_create, user_ensure
    from tenants.services import organization_ensure, region_ensure

    regions = [region_ensure(code="RU-MOW", name="Москва"), region_ensure(code="RU-SPE", name="Санкт-Петербург")]
    orgs = [
        organization_ensure(region=regions[0] if n < organizations - 1 else regions[1], oms_code=f"77{n:04d}",
                            name=f"Bench clinic {n}")
        for n in range(organizations)
    ]

    def token(username: str, role: Role, **scope) -> str:
        return api_token_create(user=user_ensure(username=username, role=role, **scope))

    return Tenant(
        organization_ids=[o.id for o in orgs],
        region_ids=[o.region_id for o in orgs],
        uploader_tokens=[token(f"bench-pacs-{n}", Role.UPLOADER, organization=orgs[n]) for n in (0, 1)],
        radiologist_tokens=[token(f"bench-radiologist-{n}", Role.RADIOLOGIST, organization=orgs[n]) for n in (0, 1)],
        regional_token=token("bench-regional", Role.REGIONAL_ADMIN, region=regions[0]),
    )


def start_web(env: dict[str, str], log_file: Path, *, workers: int, threads: int = 4) -> services.RunningService:
    """gunicorn with the production configuration (medai.gunicorn_conf), on a free loopback port."""
    port = services.free_port()
    log = open(log_file, "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:medai.gunicorn_conf", "--chdir", str(ROOT / "platform"),
         "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
         "--max-requests", "0"],
        env=dict(os.environ, **env), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    services.wait_until(lambda: services.http_ok(url + "/healthz"), timeout=60, what="gunicorn", process=process)
    return services.RunningService("web", url, stop=lambda: services.terminate(process, timeout=60), process=process)


def platform_server(web: services.RunningService, token: str, name: str = "ours") -> Server:
    return Server(name, f"{web.url}/dicomweb", {"Authorization": f"Bearer {token}"})


def platform_origin(
    name: str, web: services.RunningService, tenant: Tenant, organization: int, servers: dict[str, int]
) -> Origin:
    """The platform as a PACS (uploader) stores to it and a radiologist of the same organization reads
    from it; its work is done by gunicorn's processes and those of the `servers` (PostgreSQL, S3)."""
    return Origin(name, platform_server(web, tenant.uploader_tokens[organization], name),
                  platform_server(web, tenant.radiologist_tokens[organization], name),
                  lambda: {"web": process_tree(web.process.pid),
                           **{role: process_tree(pid) for role, pid in servers.items()}})


def postmaster_pid(data_dir: Path) -> int:
    """pgserver's PostgreSQL writes its PID on the first line of postmaster.pid."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def superuser_url(app_url: str) -> str:
    """The pgserver superuser on the application's database: it bypasses row-level security, which COPY needs."""
    return app_url.replace(f"{services.APP_ROLE}:@/", "postgres:@/", 1)


# --- Bulk-loading the index ----------------------------------------------------------------------

SURNAMES = ("Ivanov", "Petrov", "Sidorov", "Smirnov", "Kuznetsov", "Popov", "Vasiliev", "Sokolov", "Mikhailov",
            "Novikov", "Fedorov", "Morozov", "Volkov", "Alekseev", "Lebedev", "Semenov", "Egorov", "Pavlov")
GIVEN_NAMES = ("Ivan", "Petr", "Anna", "Maria", "Olga", "Sergey", "Dmitry", "Elena", "Nikolay", "Tatiana")
# Weighted like a regional archive: mostly CT and radiographs, some MR and mammography.
MODALITY_MIX = (["CT"],) * 4 + (["CR"],) * 3 + (["MR"],) * 2 + (["MG"], ["CT", "SR"], ["DX"])
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "CR": "1.2.840.10008.5.1.4.1.1.1",
             "MR": "1.2.840.10008.5.1.4.1.1.4", "MG": "1.2.840.10008.5.1.4.1.1.1.2",
             "DX": "1.2.840.10008.5.1.4.1.1.1.1", "SR": "1.2.840.10008.5.1.4.1.1.88.22"}
FIRST_STUDY_DATE = dt.date(2024, 1, 1)
STUDY_DAYS = 730
PATIENTS_PER_STUDY = 0.4  # patients come back: ~2.5 studies per patient


@dataclass(frozen=True)
class SyntheticStudy:
    """What the QIDO searches look for, kept so that the searches ask for values that exist."""

    patient_id: str
    patient_name: str
    accession_number: str
    study_date: dt.date


TABLE_COLUMNS = {
    "archive_study": "id, organization_id, region_id, study_instance_uid, patient_id, patient_name, "
    "patient_birth_date, patient_sex, accession_number, study_id, study_date, study_time, study_description, "
    "referring_physician_name, modalities, number_of_series, number_of_instances, size_bytes, status, received_at, "
    "last_received_at, completed_at",
    "archive_series": "id, organization_id, region_id, study_id, series_instance_uid, modality, series_number, "
    "series_description, body_part_examined, number_of_instances, received_at",
    "archive_instance": "id, organization_id, region_id, study_id, series_id, sop_instance_uid, sop_class_uid, "
    "transfer_syntax_uid, instance_number, rows, columns, number_of_frames, size_bytes, sha256, storage_key, "
    "metadata, received_at",
}


def bulk_load_index(database_url: str, tenant: Tenant, sizes: Sizes, *, seed: int = 7) -> list[SyntheticStudy]:
    """Study, series and instance rows straight into PostgreSQL with COPY, then VACUUM ANALYZE.

    No objects are written: QIDO answers from the index. The indexes that back no constraint are
    dropped for the COPY and built again after it, in one transaction (sorted builds are several
    times faster than a million scattered inserts); the unique ones stay and vet the generated rows.
    Foreign keys are not checked row by row: the generator assigns the ids that tie the rows together.
    The vacuum leaves autovacuum nothing to do while searches are timed.
    """
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        first_ids = [conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]
                     for table in TABLE_COLUMNS]
        studies, lines = synthetic_index_rows(tenant, sizes, random.Random(seed), first_ids)
        with conn.transaction(), conn.cursor() as cursor:
            # No triggers, hence no foreign-key checks (four per instance row, most of the load's time): the
            # generator assigns every id itself. Superuser only, as pg_restore --disable-triggers does it.
            cursor.execute("SET LOCAL session_replication_role = replica")
            for table, columns in TABLE_COLUMNS.items():
                secondary = cursor.execute(
                    "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = "
                    "%s::regclass AND NOT EXISTS (SELECT FROM pg_constraint WHERE conindid = indexrelid)", [table]
                ).fetchall()
                for name, _ in secondary:
                    cursor.execute(f"DROP INDEX {name}")
                _copy(cursor, table, columns, lines[table])
                for _, definition in secondary:
                    cursor.execute(definition)
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        for table in TABLE_COLUMNS:
            conn.execute(f"VACUUM ANALYZE {table}")
    return studies


def synthetic_index_rows(
    tenant: Tenant, sizes: Sizes, rng: random.Random, first_ids: list[int]
) -> tuple[list[SyntheticStudy], dict[str, list[str]]]:
    """COPY text lines for TABLE_COLUMNS: studies spread over the organizations, two years and the
    modality mix, patients coming back; UIDs under a root of their own, storage keys unique but
    pointing nowhere, each instance's metadata a small DICOM JSON."""
    study_id, series_id, instance_id = first_ids
    uid_root = f"1.2.826.0.1.3680043.10.1{rng.randrange(10**6)}"
    patients = max(1, int(sizes.qido_studies * PATIENTS_PER_STUDY))
    now = dt.datetime.now(dt.UTC).isoformat()
    per_study = sizes.qido_series_per_study * sizes.qido_instances_per_series
    studies: list[SyntheticStudy] = []
    lines: dict[str, list[str]] = {table: [] for table in TABLE_COLUMNS}
    for s in range(sizes.qido_studies):
        org = tenant.organization_ids[s % len(tenant.organization_ids)]
        region = tenant.region_ids[s % len(tenant.region_ids)]
        patient = rng.randrange(patients)
        name = f"{SURNAMES[patient % len(SURNAMES)]}^{GIVEN_NAMES[patient // len(SURNAMES) % len(GIVEN_NAMES)]}"
        modalities = rng.choice(MODALITY_MIX)
        study = SyntheticStudy(f"P{patient:07d}", name, f"A{s:09d}",
                               FIRST_STUDY_DATE + dt.timedelta(days=rng.randrange(STUDY_DAYS)))
        studies.append(study)
        study_uid = f"{uid_root}.{s}"
        lines["archive_study"].append(
            f"{study_id}\t{org}\t{region}\t{study_uid}\t{study.patient_id}\t{name}\t19600101\tM\t"
            f"{study.accession_number}\t1\t{study.study_date.isoformat()}\t101500\tSynthetic\tPetrov^Petr\t"
            f"{{{','.join(modalities)}}}\t{sizes.qido_series_per_study}\t{per_study}\t{per_study * 524_000}\t"
            f"complete\t{now}\t{now}\t{now}\n")
        for r in range(sizes.qido_series_per_study):
            modality = modalities[min(r, len(modalities) - 1)]
            series_uid = f"{study_uid}.{r + 1}"
            lines["archive_series"].append(
                f"{series_id}\t{org}\t{region}\t{study_id}\t{series_uid}\t{modality}\t{r + 1}\tSynthetic\tCHEST\t"
                f"{sizes.qido_instances_per_series}\t{now}\n")
            metadata = json.dumps({"00080060": {"vr": "CS", "Value": [modality]}})
            for i in range(1, sizes.qido_instances_per_series + 1):
                lines["archive_instance"].append(
                    f"{instance_id}\t{org}\t{region}\t{study_id}\t{series_id}\t{series_uid}.{i}\t"
                    f"{SOP_CLASS[modality]}\t1.2.840.10008.1.2.1\t{i}\t512\t512\t1\t524000\t{'0' * 64}\t"
                    f"bench/{org}/{series_uid}.{i}.dcm\t{metadata}\t{now}\n")
                instance_id += 1
            series_id += 1
        study_id += 1
    return studies, lines


def _copy(cursor, table: str, columns: str, lines: list[str], batch: int = 20_000) -> None:
    """COPY in the text format; the generated values hold no tab, newline or backslash to escape."""
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for start in range(0, len(lines), batch):
            copy.write("".join(lines[start:start + batch]))


# --- QIDO latency --------------------------------------------------------------------------------


def qido_searches(studies: list[SyntheticStudy], rng: random.Random) -> dict[str, Callable[[], dict[str, str]]]:
    """The kinds of study search a viewer and a worklist make, each drawing values that exist in the index."""

    def some() -> SyntheticStudy:
        return rng.choice(studies)

    def month() -> str:
        start = FIRST_STUDY_DATE + dt.timedelta(days=rng.randrange(STUDY_DAYS - 31))
        return f"{start:%Y%m%d}-{start + dt.timedelta(days=30):%Y%m%d}"

    return {
        "list newest, limit=50": lambda: {"limit": "50"},
        "PatientID exact": lambda: {"PatientID": some().patient_id},
        "PatientName prefix*": lambda: {"PatientName": some().patient_name.split("^")[0][:5] + "*", "limit": "50"},
        "StudyDate month range": lambda: {"StudyDate": month(), "limit": "50"},
        "AccessionNumber exact": lambda: {"AccessionNumber": some().accession_number},
        "ModalitiesInStudy=MR": lambda: {"ModalitiesInStudy": "MR", "limit": "50"},
        "StudyDate range + ModalitiesInStudy=CT": lambda: {"StudyDate": month(), "ModalitiesInStudy": "CT",
                                                          "limit": "50"},
    }


def bench_qido(server: Server, studies: list[SyntheticStudy], searches: int) -> dict[str, list[float]]:
    """Sequential searches, kinds interleaved; latencies in ms per kind. Every answer must be 200."""
    rng = random.Random(11)
    kinds = qido_searches(studies, rng)
    session = server.session()
    session.headers["Accept"] = DICOM_JSON
    url = f"{server.root}/studies"
    for make in list(kinds.values()) * 3:  # warm both workers' code paths and connections
        session.get(url, params=make(), timeout=60).raise_for_status()
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    names = list(kinds)
    for n in range(searches):
        kind = names[n % len(names)]
        params = kinds[kind]()
        started = time.perf_counter()
        response = session.get(url, params=params, timeout=60)
        latencies[kind].append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"QIDO {params} answered {response.status_code}: {response.text[:300]}")
    return latencies


# --- Peak RSS of a web worker during a big STOW --------------------------------------------------


class RssSampler(threading.Thread):
    """The largest VmRSS among the given processes, sampled every 50 ms until stopped."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kib = max([self.peak_kib, *(status_kib(pid, "VmRSS") for pid in self.pids)])
            self._stop_event.wait(RSS_SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass(frozen=True)
class RssReading:
    before_mb: float
    peak_sampled_mb: float
    peak_hwm_mb: float  # the kernel's high-water mark: no peak slips between samples
    transfer: Transfer


def bench_stow_memory(server: Server, web: services.RunningService, slices: int) -> RssReading:
    """STOW `slices` CT slices generated on the fly and sent chunked (no Content-Length), as a PACS
    streams a study it reads from disk; the one worker's RSS is sampled throughout."""
    from pydicom.uid import generate_uid

    (worker,) = children_of(web.process.pid)
    before = status_kib(worker, "VmRSS")
    study_uid, boundary = generate_uid(), f"medai-bench-{uuid.uuid4().hex}"
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for chunk in multipart_related(ct_slices(slices, study_uid=study_uid, seed=3), boundary):
            sent += len(chunk)
            yield chunk

    sampler = RssSampler([worker])
    sampler.start()
    session = server.session()
    started = time.perf_counter()
    try:
        response = session.post(f"{server.root}/studies", data=body(), timeout=STOW_TIMEOUT,
                                headers={"Content-Type": multipart_content_type(boundary), "Accept": DICOM_JSON})
        seconds = time.perf_counter() - started
    finally:
        sampler.stop()
    _check_stored(server, response, study_uid, slices)
    return RssReading(before * 1024 / MB, sampler.peak_kib * 1024 / MB, status_kib(worker, "VmHWM") * 1024 / MB,
                      Transfer(seconds, sent, slices))


# --- The run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """An origin's results: the median transfers by time, and the median server CPU per instance."""

    stow: Transfer
    wado: Transfer
    stow_cpu_ms: float
    wado_cpu_ms: float


def stow_and_wado(origins: list[Origin], bodies: list[Body], warmup: Body, wado_rounds: int) -> dict[str, Measured]:
    """STOW each body to every origin, then retrieve all the studies `wado_rounds` times from each.

    A small STOW and WADO first warm every origin's code paths and connections. Origins take turns
    and swap order every round, so drift in the machine's load (and the write-back of the previous
    upload) hits all alike.
    """
    for origin in origins:
        stow(origin.store, warmup)
        wado_study(origin.read, warmup.study_uid, warmup.instances)
    stored: dict[str, list[Transfer]] = {origin.name: [] for origin in origins}
    retrieved: dict[str, list[Transfer]] = {origin.name: [] for origin in origins}
    for n, body in enumerate(bodies):
        for origin in origins[:: -1 if n % 2 else 1]:
            stored[origin.name].append(done := charged(origin, stow, origin.store, body))
            log(f"STOW {body.instances} instances ({body.size / MB:.0f} MB) to {origin.name}: "
                f"{done.instances_per_s:.1f} instances/s, {done.mb_per_s:.1f} MB/s, "
                f"server CPU {done.cpu_breakdown()}")
    for n in range(wado_rounds):
        for origin in origins[:: -1 if n % 2 else 1]:
            retrieved[origin.name].append(done := charged(origin, wado_studies, origin.read, bodies))
            log(f"WADO {len(bodies)} studies, {done.size / MB:.0f} MB from {origin.name}: {done.mb_per_s:.1f} MB/s, "
                f"server CPU {done.cpu_breakdown()}")
    return {
        name: Measured(_median_by_time(stored[name]), _median_by_time(retrieved[name]),
                       statistics.median(t.cpu_ms_per_instance for t in stored[name]),
                       statistics.median(t.cpu_ms_per_instance for t in retrieved[name]))
        for name in stored
    }


def charged(origin: Origin, action: Callable[..., Transfer], *args) -> Transfer:
    """Run a transfer and charge it the CPU time the origin's processes spent meanwhile: on a shared
    machine this is steadier than wall time, and it is what a server costs per instance."""
    before = {role: cpu_seconds(pids) for role, pids in origin.processes().items()}
    transfer = action(*args)
    after = {role: cpu_seconds(pids) for role, pids in origin.processes().items()}
    spent = {role: sum(cpu - before[role].get(pid, 0.0) for pid, cpu in times.items()) for role, times in after.items()}
    return dataclasses.replace(transfer, server_cpu=spent)


def _median_by_time(transfers: list[Transfer]) -> Transfer:
    return sorted(transfers, key=lambda transfer: transfer.seconds)[(len(transfers) - 1) // 2]


def compare_with_orthanc(
    sizes: Sizes, home: Path, cleanup: contextlib.ExitStack, env: dict[str, str], tenant: Tenant,
    web: services.RunningService, *, with_s3: bool,
) -> list[Row]:
    """STOW and WADO, ours against Orthanc (started and stopped here, to free the machine after)."""
    orthanc = start_orthanc(home / "orthanc")
    cleanup.callback(orthanc.stop)
    log(orthanc_versions(orthanc.url))
    orthanc_server = Server("orthanc", f"{orthanc.url}/dicom-web")
    postgres_pid = postmaster_pid(home / "pg")
    origins = [Origin("orthanc", orthanc_server, orthanc_server, lambda: {"orthanc": [orthanc.process.pid]}),
               platform_origin("ours", web, tenant, 0, {"postgresql": postgres_pid})]
    if with_s3:
        s3 = services.start_s3(log_file=home / "s3.log")
        cleanup.callback(s3.stop)
        web_s3 = start_web({**env, "S3_ENDPOINT_URL": s3.url}, home / "gunicorn-s3.log", workers=2)
        cleanup.callback(web_s3.stop)
        # Another organization: the index is shared and UIDs are per organization, so the same bytes fit.
        servers = {"postgresql": postgres_pid, "s3": s3.process.pid}
        origins.append(platform_origin("ours [S3]", web_s3, tenant, 1, servers))

    log(f"generating {sizes.stow_rounds} CT series of {sizes.slices} slices of 512x512")
    bodies = [write_body(home / f"stow-{n}", slices=sizes.slices, seed=10 + n) for n in range(sizes.stow_rounds)]
    warmup = write_body(home / "warmup-body", slices=5, seed=2)
    results = stow_and_wado(origins, bodies, warmup, sizes.wado_rounds)
    orthanc.stop()
    if with_s3:
        web_s3.stop()
        s3.stop()

    theirs = results["orthanc"]
    series = f"{sizes.slices} slices, {bodies[0].size / MB:.0f} MB"
    rows = []
    for origin in origins[1:]:
        ours, suffix = results[origin.name], origin.name.removeprefix("ours")
        rows += [
            Row(f"STOW-RS {series}, instances/s{suffix}", ours.stow.instances_per_s, theirs.stow.instances_per_s,
                target=1.0, on_ratio=True),
            Row(f"STOW-RS {series}, MB/s{suffix}", ours.stow.mb_per_s, theirs.stow.mb_per_s, target=1.0,
                on_ratio=True),
            Row(f"WADO-RS study of {series}, MB/s{suffix}", ours.wado.mb_per_s, theirs.wado.mb_per_s, target=1.0,
                on_ratio=True),
            Row(f"  STOW server CPU, ms/instance (lower is better){suffix}", ours.stow_cpu_ms, theirs.stow_cpu_ms),
            Row(f"  WADO server CPU, ms/instance (lower is better){suffix}", ours.wado_cpu_ms, theirs.wado_cpu_ms),
        ]
    return rows


def qido_at_scale(sizes: Sizes, database_url: str, tenant: Tenant, web: services.RunningService) -> list[Row]:
    """Load the index to `sizes.qido_instances`, then time the searches of two kinds of caller."""
    log(f"bulk-loading {sizes.qido_studies} studies, {sizes.qido_instances} instances with COPY")
    started = time.perf_counter()
    studies = bulk_load_index(superuser_url(database_url), tenant, sizes)
    log(f"  loaded in {time.perf_counter() - started:.1f} s")
    scale = f"{sizes.qido_instances / 1e6:g} M instances"
    rows = []
    for label, token in (("org radiologist", tenant.radiologist_tokens[0]), ("regional admin", tenant.regional_token)):
        latencies = bench_qido(platform_server(web, token), studies, sizes.qido_searches)
        every = [ms for samples in latencies.values() for ms in samples]
        for kind, samples in latencies.items():
            log(f"QIDO {label}, {kind}: p50 {percentile(samples, 0.5):.1f} ms, p95 {percentile(samples, 0.95):.1f} ms")
        slowest = max(latencies, key=lambda kind: percentile(latencies[kind], 0.95))
        rows += [
            Row(f"QIDO studies at {scale}, {label}, p50 ms", percentile(every, 0.5)),
            Row(f"QIDO studies at {scale}, {label}, p95 ms", percentile(every, 0.95), target=50, better="<="),
            Row(f"  slowest kind: {slowest}, p95 ms", percentile(latencies[slowest], 0.95)),
        ]
    return rows


def memory_during_big_stow(sizes: Sizes, home: Path, cleanup: contextlib.ExitStack, env: dict[str, str],
                           tenant: Tenant) -> list[Row]:
    """A fresh single-worker web tier, so that the one worker's RSS is the whole reading."""
    single = start_web(env, home / "gunicorn-single.log", workers=1)
    cleanup.callback(single.stop)
    log(f"STOW of {sizes.rss_slices} CT slices, chunked, to a single worker")
    reading = bench_stow_memory(platform_server(single, tenant.uploader_tokens[0]), single, sizes.rss_slices)
    single.stop()
    size = f"{reading.transfer.size / 1e9:.2f} GB"
    return [
        Row(f"STOW {size} chunked: worker RSS before, MB", reading.before_mb),
        Row(f"STOW {size} chunked: worker peak RSS (sampled), MB", reading.peak_sampled_mb),
        Row(f"STOW {size} chunked: worker peak RSS (VmHWM), MB", reading.peak_hwm_mb, target=300, better="<="),
        Row(f"STOW {size} chunked: MB/s (generated as sent)", reading.transfer.mb_per_s),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run of a minute or so")
    parser.add_argument("--s3", action="store_true", help="also STOW/WADO with objects on an S3 server (moto)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) at the end")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")  # pgserver's platformdirs, harmless
    load_at_start = os.getloadavg()
    home = Path(tempfile.mkdtemp(prefix="medai-bench-dicomweb-"))
    log(f"working in {home}")
    with contextlib.ExitStack() as cleanup:
        if not args.keep:
            cleanup.callback(shutil.rmtree, home, ignore_errors=True)
        postgres = services.start_postgres(home / "pg")
        cleanup.callback(postgres.stop)
        env = setup_django(home, postgres.url)
        from django.db import connections

        cleanup.callback(connections.close_all)
        tenant = create_tenants(organizations=5)
        web = start_web(env, home / "gunicorn.log", workers=2)
        cleanup.callback(web.stop)
        rows = compare_with_orthanc(sizes, home, cleanup, env, tenant, web, with_s3=args.s3)
        rows += qido_at_scale(sizes, postgres.url, tenant, web)
        web.stop()
        rows += memory_during_big_stow(sizes, home, cleanup, env, tenant)
    print_table(rows)
    print(f"\nSTOW: median of {sizes.stow_rounds} series. WADO: median of {sizes.wado_rounds} rounds, each retrieving "
          f"every study in turn (objects in the page cache on both sides). Server CPU: user + system time of the "
          f"server's processes (ours: gunicorn and PostgreSQL), median. {os.cpu_count()} CPUs shared by clients and "
          f"servers; load average {load_at_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.")


if __name__ == "__main__":
    main()
