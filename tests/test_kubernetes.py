"""docker/kubernetes/: every manifest is valid against the Kubernetes API schemas (offline, with
kubernetes-validate's bundled schemas), and says what hpsearch needs: an Indexed Job of workers
with one GPU each, commands that hpsearch's own parser accepts, the Secret and ConfigMap named
where they are used, a ClusterIP dashboard, and enough PostgreSQL connections.

The manifests are checked here, never applied to a cluster."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from invoke import hpsearch
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from hpsearch import cli, errors, registry, storage
from hpsearch.study import open_study, state_counts

MANIFESTS = Path(__file__).resolve().parent.parent / "docker" / "kubernetes"
# The oldest Kubernetes release where everything the manifests use is GA (podFailurePolicy and
# elastic Indexed Jobs: 1.31), and the newest whose schemas kubernetes-validate 1.37.0 bundles.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
KUSTOMIZATION = "kustomization.yaml"
NOT_IN_KUSTOMIZATION = {"secret.yaml"}  # applying it would overwrite the real password (see the file)
HPSEARCH_IMAGE = "hpsearch"
SUPERUSER_RESERVED = 3  # PostgreSQL's superuser_reserved_connections default


# --- reading the manifests ------------------------------------------------------------------


def _files() -> list[Path]:
    return sorted(MANIFESTS.glob("*.yaml")) + sorted(MANIFESTS.glob("*.yml"))


def _documents() -> list[tuple[str, dict]]:
    """(file name, document) for every Kubernetes object under docker/kubernetes/."""
    docs = []
    for path in _files():
        if path.name == KUSTOMIZATION:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def _one(kind: str, name: str) -> dict:
    found = [d for _, d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} under {MANIFESTS}, found {len(found)}"
    return found[0]


def _of_kind(kind: str) -> list[dict]:
    return [d for _, d in _documents() if d["kind"] == kind]


def _pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def _workloads() -> list[dict]:
    return [d for _, d in _documents() if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def _containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _container(pod: dict, name: str) -> dict:
    (found,) = [c for c in _containers(pod) if c["name"] == name]
    return found


def _secret() -> dict:
    (secret,) = _of_kind("Secret")
    return secret


def _config_maps() -> dict[str, dict]:
    return {c["metadata"]["name"]: c["data"] for c in _of_kind("ConfigMap")}


# --- Kubernetes' $(VAR) expansion of env values, command and args ----------------------------

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def _expand(text: str, env: dict[str, str]) -> str:
    """As the kubelet does it: $(NAME) becomes NAME's value where the container defines NAME (else
    it stays as written), and $$ becomes $."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(substitute, text)


def _references(text: str) -> list[str]:
    """The $(NAME) references that Kubernetes expands ($$(...) is an escaped literal)."""
    return [m.group(1) for m in _REFERENCE.finditer(text) if m.group(0) != "$$"]


def _env(container: dict, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The container's environment as the kubelet builds it, values from the ConfigMaps and the
    Secret in this folder; ``overrides`` replace ConfigMap values (as editing config.yaml would)."""
    maps, secret = _config_maps(), _secret()
    env: dict[str, str] = {}
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            value = maps[ref["name"]][ref["key"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = secret["stringData"][ref["key"]]
        else:
            value = _expand(var["value"], env)
        env[var["name"]] = (overrides or {}).get(var["name"], value)
    return env


def _argv(container: dict, overrides: dict[str, str] | None = None) -> list[str]:
    env = _env(container, overrides)
    return [_expand(word, env) for word in [*container.get("command", []), *container.get("args", [])]]


def _hpsearch_argv(container: dict, overrides: dict[str, str] | None = None) -> list[str]:
    """The arguments after ``hpsearch`` that the container runs: its command is ``hpsearch``, or
    ``sh -c SCRIPT NAME hpsearch ...`` where SCRIPT runs "$@"."""
    argv = _argv(container, overrides)
    if argv[:2] == ["sh", "-c"]:
        assert '"$@"' in argv[2], f"{container['name']}: the script does not run its arguments: {argv[2]!r}"
        argv = argv[4:]
    assert argv[:1] == ["hpsearch"], f"{container['name']} runs {argv[:1]}, not hpsearch"
    return argv[1:]


def _parse(argv: list[str]) -> argparse.Namespace:
    """``hpsearch ARGV`` as hpsearch's own parser reads it, each option spelled out in full: argparse
    would take a renamed flag's old name for an abbreviation of a longer new one (--artifacts of
    --artifacts-dir)."""
    parser = cli.build_parser()
    try:
        args = parser.parse_args(argv)
    except errors.UsageError as exc:
        raise AssertionError(f"hpsearch {' '.join(argv)}: {exc}") from None
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = commands.choices[args.command]._option_string_actions
    unknown = [w for w in argv if w.startswith("-") and w.split("=")[0] not in options]
    assert not unknown, f"hpsearch {args.command} has no option {unknown[0]!r} (only an abbreviation of one)"
    return args


def _is_hpsearch(container: dict) -> bool:
    return container["image"].split("/")[-1].split(":")[0] == HPSEARCH_IMAGE


# --- the schemas ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubernetes_validate():
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install -e '.[dev]'): the manifests' schema check is skipped",
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(kubernetes_validate, version):
    docs = _documents()
    assert len(docs) >= 9, f"only {len(docs)} objects under {MANIFESTS}"
    failures = []
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except Exception as exc:  # ValidationError, SchemaNotFoundError (an unknown kind or apiVersion)
            failures.append(f"{name}: {doc['kind']} {doc['metadata'].get('name')}: {type(exc).__name__}: {exc}")
    assert not failures, f"against Kubernetes {version}:\n" + "\n\n".join(failures)


def test_the_schema_check_is_strict(kubernetes_validate):
    """A misspelled field fails (strict schemas reject unknown fields), so the check above is no formality."""
    job = _one("Job", "hpsearch-workers")
    typo = {**job, "spec": {**job["spec"], "paralelism": 4}}
    with pytest.raises(kubernetes_validate.ValidationError, match="paralelism"):
        kubernetes_validate.validate(typo, KUBERNETES_VERSIONS[0], strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret():
    kustomization = yaml.safe_load((MANIFESTS / KUSTOMIZATION).read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    expected = {p.name for p in _files()} - {KUSTOMIZATION} - NOT_IN_KUSTOMIZATION
    assert set(listed) == expected
    assert [i["name"] for i in kustomization["images"]] == [HPSEARCH_IMAGE]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: kustomize rendering not checked")
def test_kubectl_kustomize_renders_the_folder():
    done = subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered) == sorted(
        (d["kind"], d["metadata"]["name"]) for name, d in _documents() if name not in NOT_IN_KUSTOMIZATION
    )


# --- what the manifests say ---------------------------------------------------------------------


def test_the_workers_are_an_indexed_job_with_one_gpu_each():
    job = _one("Job", "hpsearch-workers")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] >= 1
    # Every worker runs until the study holds --trials: all indexes end together, so completions
    # is the number of workers (and an elastic Indexed Job scales both together).
    assert spec["completions"] == spec["parallelism"]
    pod = _pod_spec(job)
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    worker = _container(pod, "worker")
    assert str(worker["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    args = _parse(_hpsearch_argv(worker))
    assert args.command == "run"
    assert args.jobs == 1  # one GPU, one worker process
    assert args.seed is None  # a shared seed would make every pod propose the same trials
    mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
    assert args.artifacts in mounts and not mounts[args.artifacts].get("readOnly", False)
    claim = _claim(pod, mounts[args.artifacts]["name"])
    assert "ReadWriteMany" in claim["spec"]["accessModes"]


def test_bad_input_fails_the_jobs_at_once():
    """Exit 2 is hpsearch's bad-input status: the Jobs fail on it instead of retrying."""
    for name in ("hpsearch-workers", "hpsearch-study-creator"):
        job = _one("Job", name)
        rules = job["spec"]["podFailurePolicy"]["rules"]
        (fail,) = [r for r in rules if r["action"] == "FailJob"]
        assert fail["onExitCodes"] == {
            "containerName": fail["onExitCodes"]["containerName"],
            "operator": "In",
            "values": [errors.EXIT_USAGE],
        }
        assert _is_hpsearch(_container(_pod_spec(job), fail["onExitCodes"]["containerName"]))


def _claim(pod: dict, volume_name: str) -> dict:
    (volume,) = [v for v in pod["volumes"] if v["name"] == volume_name]
    return _one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


def test_every_hpsearch_command_is_one_that_hpsearch_accepts():
    seen = {}
    for workload in _workloads():
        for container in _containers(_pod_spec(workload)):
            if not _is_hpsearch(container):
                continue
            env = _env(container)
            for word in [*container.get("command", []), *container.get("args", [])]:
                undefined = [r for r in _references(word) if r not in env]
                assert not undefined, f"{container['name']}: $({undefined[0]}) is not in its env: {word!r}"
            args = _parse(_hpsearch_argv(container))
            assert container["imagePullPolicy"] == "IfNotPresent"
            seen[container["name"]] = args
            if getattr(args, "study", None):
                registry.get(args.study)  # a registered study (raises UsageError if not)
    assert {name: args.command for name, args in seen.items()} == {
        "study-creator": "create",
        "wait-for-study": "show",
        "worker": "run",
        "dashboard": "dashboard",
    }
    assert seen["wait-for-study"].study == seen["worker"].study == seen["study-creator"].study


def test_the_secret_config_map_and_claims_are_named_where_used_and_the_password_is_in_no_argv():
    secret = _secret()
    name = secret["metadata"]["name"]
    maps = _config_maps()
    postgres = _container(_pod_spec(_one("StatefulSet", "postgres")), "postgres")
    service = _one("Service", "postgres")
    used = 0
    for workload in _workloads():
        pod = _pod_spec(workload)
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                _claim(pod, volume["name"])  # a claim defined here
        for container in _containers(pod):
            for var in container.get("env", []):
                source = var.get("valueFrom", {})
                if "secretKeyRef" in source:
                    used += 1
                    assert source["secretKeyRef"]["name"] == name
                    assert source["secretKeyRef"]["key"] in secret["stringData"]
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["key"] in maps[ref["name"]], f"{container['name']}: no {ref} in config.yaml"
            if not _is_hpsearch(container):
                continue
            # hpsearch reads $HPSEARCH_STORAGE itself: no --storage, so the password is in no argv.
            argv = _hpsearch_argv(container)
            assert "--storage" not in argv
            assert secret["stringData"]["password"] not in " ".join(argv)
            url = make_url(_env(container)["HPSEARCH_STORAGE"])
            assert url.drivername == "postgresql+psycopg"
            assert url.password == secret["stringData"]["password"]
            assert url.host == service["metadata"]["name"]
            assert url.port == service["spec"]["ports"][0]["port"]
            pg_env = _env(postgres)
            assert (url.username, url.database) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])
    assert used >= 5


def test_the_dashboard_is_a_cluster_ip_service_on_all_of_the_pods_addresses():
    service = _one("Service", "hpsearch-dashboard")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    deployment = _one("Deployment", "hpsearch-dashboard")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    container = _container(_pod_spec(deployment), "dashboard")
    args = _parse(_hpsearch_argv(container))
    assert args.command == "dashboard"
    assert args.host == "0.0.0.0"  # the Service reaches the pod's address, not its loopback
    (port,) = container["ports"]
    (service_port,) = service["spec"]["ports"]
    assert port["containerPort"] == args.port
    assert service_port["targetPort"] in (port["name"], args.port)


def test_postgresql_accepts_the_connections_of_every_worker_and_the_dashboard():
    workers = _one("Job", "hpsearch-workers")["spec"]["parallelism"]
    args = _container(_pod_spec(_one("StatefulSet", "postgres")), "postgres")["args"]
    (setting,) = [a for a in args if a.startswith("max_connections=")]
    max_connections = int(setting.split("=")[1])
    # Workers, the dashboard and the study creator each hold up to POOL_SIZE connections.
    needed = storage.POOL_SIZE * (workers + 2) + SUPERUSER_RESERVED
    assert needed <= max_connections


def test_the_study_creators_command_creates_the_study_and_trains_nothing(tmp_path, monkeypatch, fashion_root):
    """The creator's and the worker's wait command, as the pods run them, on an SQLite file in
    place of PostgreSQL (the synthetic Fashion-MNIST as /data)."""
    creator = _container(_pod_spec(_one("Job", "hpsearch-study-creator")), "study-creator")
    waiter = _container(_pod_spec(_one("Job", "hpsearch-workers")), "wait-for-study")
    study = _config_maps()["hpsearch-study"]["STUDY"]
    if registry.get(study).dataset != "fashion_mnist":  # no synthetic data for it here: the stand-in study
        study = str(Path(__file__).with_name("bookkeeping_study.py"))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(fashion_root))
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", str(tmp_path / "artifacts"))
    wait = [*_hpsearch_argv(waiter, {"STUDY": study}), "--storage", url]
    assert hpsearch(wait[0], *wait[1:]) == errors.EXIT_USAGE  # no study yet: the wait goes on
    create = [*_hpsearch_argv(creator, {"STUDY": study}), "--storage", url]
    assert hpsearch(create[0], *create[1:]) == 0
    assert hpsearch(wait[0], *wait[1:]) == 0  # the workers start
    spec = registry.get(study)
    counts = state_counts(open_study(spec, url, spec.name))
    assert counts == {TrialState.WAITING: 1}  # the baseline queued, nothing trained
