"""Static checks of the Kubernetes manifests (infra/k8s); no cluster runs on these machines.

Each variant (infra/k8s/flink, infra/k8s/embedded) is assembled as kustomize assembles it (its
resources and generated ConfigMaps) and checked: every document has what its kind requires (the
standard kinds against Kubernetes' own JSON schemas when ``kubernetes-validate`` is installed, and a
required-fields check per kind in any case; the FlinkDeployment against the operator's CRD fields),
each variant runs exactly one join, the images are the ones infra/docker-compose.yml builds from
their Dockerfiles, the containers' arguments parse with their entry points' own parsers, every
``${VAR}`` the mounted configs read is set by the container's environment and every variable set is
read, the mounted configs validate and differ from the shipped ones only by their secrets, and the
ports agree with the configs' defaults, the probes, the scrape annotations and the images.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
VARIANTS = ("flink", "embedded")
K8S_VERSION = "1.30"
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
# what the k8s configs may change in the shipped ones: Kafka over SASL and the secrets
SECURITY_PATHS = {
    "trainer": {"sidecar.kafka.sasl_mechanism", "sidecar.kafka.sasl_username", "sidecar.kafka.sasl_password",
                "sidecar.kafka.security_protocol", "sidecar.redis.password"},
    "sample-join": {"kafka.security.protocol", "kafka.security.sasl_mechanism", "kafka.security.sasl_username",
                    "kafka.security.sasl_password", "redis.password"},
}
SHIPPED = {"trainer": ROOT / "infra" / "trainer.yaml", "sample-join": ROOT / "infra" / "sample_join.yaml"}
# FlinkDeployment (flink.apache.org/v1beta1): the fields of the operator's CRD this project may use
FLINK_SPEC_KEYS = {"flinkConfiguration", "flinkVersion", "image", "imagePullPolicy", "ingress", "job", "jobManager",
                   "logConfiguration", "mode", "podTemplate", "restartNonce", "serviceAccount", "taskManager"}
FLINK_JOB_KEYS = {"allowNonRestoredState", "args", "autoscalerResetNonce", "checkpointTriggerNonce", "entryClass",
                  "initialSavepointPath", "jarURI", "parallelism", "savepointRedeployNonce",
                  "savepointTriggerNonce", "state", "upgradeMode"}
FLINK_RESOURCE_KEYS = {"cpu", "memory", "ephemeralStorage"}
PYTHON_DRIVER_OPTIONS = {"-pyclientexec", "-pyexec", "-pyfs", "-pyreq", "-pyarch", "-pypath"}


# -- assembling a variant as kustomize does ------------------------------------------------------------
def _kustomization(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return data


def _assemble(directory: Path, read: set[Path] | None = None) -> list[dict[str, Any]]:
    """The documents of a kustomization: its resources (files, or directories with their own
    kustomization) and its generated ConfigMaps (data: file name -> text); ``read`` collects the files."""
    read = set() if read is None else read
    read.add((directory / "kustomization.yaml").resolve())
    kustomization = _kustomization(directory)
    assert kustomization["kind"] == "Kustomization", directory
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        assert path.exists(), f"{directory}: resource {resource} is missing"
        if path.is_dir():
            docs.extend(_assemble(path, read))
        else:
            read.add(path)
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for entry in generator["files"]:
            key, _, name = entry.rpartition("=")
            file = directory / name
            assert file.is_file() and file.resolve().is_relative_to(directory.resolve()), entry
            read.add(file.resolve())
            data[key or file.name] = file.read_text()
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    return docs


# Every file shipped in infra/k8s, by its path: what `kubectl apply -k infra/k8s/<variant>` reads (the
# example Secret is applied by hand, and read by the environment checks below).
SHIPPED_MANIFESTS = {
    "flink": {
        "infra/k8s/flink/kustomization.yaml",
        "infra/k8s/flink/flink-deployment.yaml",
        "infra/k8s/base/kustomization.yaml",
        "infra/k8s/base/services.yaml",
        "infra/k8s/base/trainer.yaml",
        "infra/k8s/base/config/trainer.yaml",
    },
    "embedded": {
        "infra/k8s/embedded/kustomization.yaml",
        "infra/k8s/embedded/sample-join.yaml",
        "infra/k8s/embedded/config/sample-join.yaml",
        "infra/k8s/base/kustomization.yaml",
        "infra/k8s/base/services.yaml",
        "infra/k8s/base/trainer.yaml",
        "infra/k8s/base/config/trainer.yaml",
    },
}
EXAMPLE_SECRET = "infra/k8s/base/secret.example.yaml"


def test_each_variant_reads_exactly_the_shipped_files_and_none_is_left_out() -> None:
    """A manifest added to infra/k8s but to no kustomization (or one dropped) fails here."""
    for name in VARIANTS:
        read: set[Path] = set()
        _assemble(K8S / name, read)
        assert {p.relative_to(ROOT).as_posix() for p in read} == SHIPPED_MANIFESTS[name], name
    shipped = {p.relative_to(ROOT).as_posix() for p in K8S.rglob("*.yaml")}
    assert shipped == set().union(*SHIPPED_MANIFESTS.values()) | {EXAMPLE_SECRET}
    secret = yaml.safe_load((ROOT / EXAMPLE_SECRET).read_text())
    assert secret["kind"] == "Secret" and set(secret["stringData"]) == {"redis-password", "kafka-sasl-password"}


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, _assemble(K8S / request.param)


def _of(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = _of(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _workloads(docs: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Deployment name -> (pod spec, its one container)."""
    out = {}
    for d in _of(docs, "Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert len(pod["containers"]) == 1, d["metadata"]["name"]
        out[d["metadata"]["name"]] = (pod, pod["containers"][0])
    return out


def _services() -> dict[str, str]:
    data: dict[str, str] = _one(_assemble(K8S / "base"), "ConfigMap", "odl-loop-services")["data"]
    return data


def _secret_keys() -> dict[str, set[str]]:
    secret = yaml.safe_load((ROOT / EXAMPLE_SECRET).read_text())
    return {secret["metadata"]["name"]: set(secret["stringData"])}


def _environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as it will be: values, ConfigMap keys resolved, secrets stand-ins."""
    services, secrets = _services(), _secret_keys()
    env = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        source = entry["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            assert ref["name"] == "odl-loop-services" and ref["key"] in services, entry
            env[entry["name"]] = services[ref["key"]]
        else:
            ref = source["secretKeyRef"]
            assert ref["key"] in secrets.get(ref["name"], set()), f"{entry}: not in secret.example.yaml"
            env[entry["name"]] = f"<secret {ref['key']}>"
    return env


# -- each kind has what it requires ---------------------------------------------------------------------
def _check_required(doc: dict[str, Any]) -> None:
    kind, name = doc["kind"], doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    if kind == "Deployment":
        spec = doc["spec"]
        assert doc["apiVersion"] == "apps/v1"
        selector = spec["selector"]["matchLabels"]
        assert selector and selector.items() <= spec["template"]["metadata"]["labels"].items(), name
        for c in spec["template"]["spec"]["containers"]:
            assert c["name"] and c["image"], name
    elif kind == "PersistentVolumeClaim":
        assert doc["apiVersion"] == "v1" and doc["spec"]["accessModes"], name
        assert re.fullmatch(r"\d+[GMT]i", doc["spec"]["resources"]["requests"]["storage"]), name
    elif kind == "ConfigMap":
        assert doc["apiVersion"] == "v1" and doc["data"], name
        assert all(isinstance(v, str) for v in doc["data"].values()), name
    elif kind == "FlinkDeployment":
        _check_flink_deployment(doc)
    else:
        raise AssertionError(f"unexpected kind {kind} ({name})")


def _check_flink_deployment(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "flink.apache.org/v1beta1"
    spec = doc["spec"]
    assert set(spec) <= FLINK_SPEC_KEYS, set(spec) - FLINK_SPEC_KEYS
    for key in ("image", "flinkVersion", "serviceAccount", "jobManager", "taskManager", "job"):
        assert spec[key], key
    assert re.fullmatch(r"v[12]_\d+", spec["flinkVersion"])
    assert all(isinstance(v, str) for v in spec["flinkConfiguration"].values()), "Flink settings are strings"
    for part in ("jobManager", "taskManager"):
        resource = spec[part]["resource"]
        assert set(resource) <= FLINK_RESOURCE_KEYS and resource["memory"] and resource["cpu"] > 0, part
    job = spec["job"]
    assert set(job) <= FLINK_JOB_KEYS, set(job) - FLINK_JOB_KEYS
    assert job["upgradeMode"] in {"stateless", "savepoint", "last-state"} and job["state"] in {"running", "suspended"}
    assert isinstance(job["parallelism"], int) and job["parallelism"] >= 1
    assert all(isinstance(a, str) for a in job["args"])
    containers = spec["podTemplate"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["flink-main-container"]  # the name the operator merges into
    if job["upgradeMode"] == "last-state":
        assert spec["flinkConfiguration"]["high-availability.type"] == "kubernetes", "last-state needs HA"


def test_each_variant_assembles_and_each_document_has_what_its_kind_requires(
    variant: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = variant
    assert docs
    for doc in docs:
        _check_required(doc)
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"{name}: a name repeats"
    assert not _of(docs, "Secret"), "no secret is applied from the repository"


def test_standard_kinds_match_kubernetes_schemas(variant: tuple[str, list[dict[str, Any]]]) -> None:
    validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (the schemas, offline)")
    for doc in variant[1]:
        if doc["kind"] != "FlinkDeployment":
            validate.validate(doc, K8S_VERSION, strict=True)
    validate.validate(yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text()), K8S_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
@pytest.mark.parametrize("name", VARIANTS)
def test_kustomize_builds_the_same_documents(name: str) -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S / name)], capture_output=True, text=True,
                              check=True, timeout=60).stdout
    # a generated ConfigMap's name ends with the hash of its content
    built = sorted((d["kind"], re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]) if d["kind"] == "ConfigMap"
                    else d["metadata"]["name"]) for d in yaml.safe_load_all(rendered) if d)
    ours = sorted((d["kind"], d["metadata"]["name"]) for d in _assemble(K8S / name))
    assert built == ours


def test_each_variant_runs_exactly_one_join() -> None:
    base = _assemble(K8S / "base")
    assert not _of(base, "FlinkDeployment") and "sample-join" not in _workloads(base)
    flink, embedded = _assemble(K8S / "flink"), _assemble(K8S / "embedded")
    assert len(_of(flink, "FlinkDeployment")) == 1 and "sample-join" not in _workloads(flink)
    assert not _of(embedded, "FlinkDeployment") and "sample-join" in _workloads(embedded)
    assert "trainer" in _workloads(flink) and "trainer" in _workloads(embedded)


# -- images and entry points -------------------------------------------------------------------------
def _compose_images() -> dict[str, Path]:
    """Image name -> its Dockerfile, as infra/docker-compose.yml builds them."""
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    out = {}
    for service in compose["services"].values():
        if "build" in service:
            build = service["build"]
            out[service["image"]] = (ROOT / "infra" / build["context"] / build["dockerfile"]).resolve()
    return out


def _entrypoint(dockerfile: Path) -> list[str]:
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile.read_text(), re.M)
    assert match, f"{dockerfile} has no exec-form ENTRYPOINT"
    entry: list[str] = json.loads(match.group(1))
    return entry


def _parse_module_args(module: str, args: list[str]) -> Any:
    """Parse ``python -m module args`` with the module's own parser (what the container will run)."""
    if module == "trainer":
        from trainer.__main__ import build_parser
    elif module == "jobs.sample_join":
        from jobs.sample_join import build_parser
    elif module == "jobs.runtime.flink.job":
        from jobs.runtime.flink.job import build_parser
    else:
        raise AssertionError(f"unknown entry module {module}")
    return build_parser().parse_args(args)


def test_images_are_built_from_their_dockerfiles_and_the_arguments_parse(
    variant: tuple[str, list[dict[str, Any]]],
) -> None:
    images = _compose_images()
    for name, (pod, container) in _workloads(variant[1]).items():
        dockerfile = images[container["image"]]
        entry = _entrypoint(dockerfile)
        assert "command" not in container, name
        assert entry[:2] == ["python", "-m"], entry
        args = _parse_module_args(entry[2], container["args"])
        config = Path(args.config)
        # the config is the ConfigMap's file, mounted where the argument says
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(config.parent))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        configmap = _one(variant[1], "ConfigMap", volume["configMap"]["name"])
        assert config.name in configmap["data"], (name, config)
        uid = re.search(r"useradd --uid (\d+)", dockerfile.read_text())
        security = pod["securityContext"]
        assert uid and security["runAsUser"] == int(uid.group(1)) and security["runAsNonRoot"], name


def _flink(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _of(docs, "FlinkDeployment")[0]


def test_the_flink_deployment_starts_the_job_as_the_image_has_it() -> None:
    docs = _assemble(K8S / "flink")
    spec = _flink(docs)["spec"]
    dockerfile = _compose_images()[spec["image"]]
    text = dockerfile.read_text()
    flink_version = re.search(r"ARG FLINK_IMAGE=flink:(\d+)\.(\d+)\.(\d+)", text)
    assert flink_version, "infra/flink/Dockerfile names its Flink image"
    major, minor, patch = flink_version.groups()
    assert spec["flinkVersion"] == f"v{major}_{minor}"
    job = spec["job"]
    assert job["jarURI"] == f"local:///opt/flink/opt/flink-python-{major}.{minor}.{patch}.jar"
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    # PythonDriver's own options, then -pym MODULE, then the module's arguments
    args, options = list(job["args"]), {}
    while args[0] != "-pym":
        assert args[0] in PYTHON_DRIVER_OPTIONS, args[0]
        options[args[0]] = args[1]
        args = args[2:]
    module, program = args[1], args[2:]
    parsed = _parse_module_args(module, program)
    assert module == "jobs.runtime.flink.job"
    assert re.search(rf"^COPY infra/flink/sample-join.yaml {re.escape(str(parsed.config))}$", text, re.M)
    assert re.search(rf"^COPY jobs {re.escape(options['-pyfs'])}/jobs$", text, re.M), "-pyfs: the project's folder"
    venv_python = options["-pyexec"]
    assert options["-pyclientexec"] == venv_python and f"-m venv {Path(venv_python).parents[1]};" in text
    # what the image's own config sets and the operator does not read: the same values
    shipped = _flat(yaml.safe_load((ROOT / "infra" / "flink" / "config.yaml").read_text()))
    config = spec["flinkConfiguration"]
    for key in ("python.execution-mode", "python.executable", "python.client.executable", "python.pythonpath",
                "state.backend.type", "env.java.opts.all", "restart-strategy.type"):
        assert config[key] == str(shipped[key]), key
    assert config["python.executable"] == venv_python


# -- environment, configs, ports ------------------------------------------------------------------------
def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flat(value, path))
        else:
            out[path] = value
    return out


def _mounted_configs(docs: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, str]]]:
    """Workload -> (the text of the config it reads, its environment)."""
    out = {}
    for name, (pod, container) in _workloads(docs).items():
        config = Path(container["args"][container["args"].index("--config") + 1])
        volume = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == str(config.parent))
        configmap = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == volume)
        out[name] = (_one(docs, "ConfigMap", configmap)["data"][config.name], _environment(container))
    if _of(docs, "FlinkDeployment"):  # the image's config, infra/flink/sample-join.yaml
        container = _flink(docs)["spec"]["podTemplate"]["spec"]["containers"][0]
        out["flink"] = ((ROOT / "infra" / "flink" / "sample-join.yaml").read_text(), _environment(container))
    return out


def test_the_environment_sets_exactly_what_the_configs_read(variant: tuple[str, list[dict[str, Any]]]) -> None:
    for name, (text, env) in _mounted_configs(variant[1]).items():
        read = {m.group(1): m.group(2) is None for m in ENV_VAR.finditer(text)}  # var -> required
        required = {v for v, needed in read.items() if needed}
        assert required <= set(env), f"{name}: {sorted(required - set(env))} have no default and are not set"
        assert set(env) <= set(read), f"{name}: sets {sorted(set(env) - set(read))}, which its config never reads"


def test_the_mounted_configs_validate_and_differ_from_the_shipped_only_by_security(
    variant: tuple[str, list[dict[str, Any]]],
) -> None:
    from common.config import expand_env, validate_config
    from jobs.config import SampleJoinConfig
    from trainer.config import TrainerConfig

    models: dict[str, type[TrainerConfig] | type[SampleJoinConfig]] = {
        "trainer": TrainerConfig, "sample-join": SampleJoinConfig, "flink": SampleJoinConfig}
    for name, (text, env) in _mounted_configs(variant[1]).items():
        data = yaml.safe_load(expand_env(text, env))
        validate_config(data, models[name], source=f"{variant[0]}: {name}'s config")
        if name in SHIPPED:
            shipped = _flat(yaml.safe_load(expand_env(SHIPPED[name].read_text(), env)))
            ours = _flat(data)
            changed = {k for k in shipped.keys() | ours.keys() if shipped.get(k) != ours.get(k)}
            extra = changed - SECURITY_PATHS[name]
            assert not extra, f"{name}: differs from {SHIPPED[name].name} in {sorted(extra)}"


def test_the_ports_agree(variant: tuple[str, list[dict[str, Any]]]) -> None:
    from common.config import expand_env

    defaults = {"trainer": ("sidecar", "metrics_port"), "sample-join": ("metrics", "port")}
    images = _compose_images()
    for name, (_pod, container) in _workloads(variant[1]).items():
        env = _environment(container)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        shipped: Any = yaml.safe_load(expand_env(SHIPPED[name].read_text(), {}))
        for key in defaults[name]:
            shipped = shipped[key]
        assert ports["metrics"] == int(env["METRICS_PORT"]) == int(shipped), name
        assert env["METRICS_HOST"] == "0.0.0.0", f"{name}: probes come from outside the container"
        assert re.search(rf"^EXPOSE {ports['metrics']}$", images[container["image"]].read_text(), re.M), name
        template = next(d for d in _of(variant[1], "Deployment", name))["spec"]["template"]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"]), name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            check = container[probe]["httpGet"]
            assert check["path"] == "/metrics" and check["port"] in ports, (name, probe)
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == name  # the scrape job's name
    for flink in _of(variant[1], "FlinkDeployment"):
        spec = flink["spec"]
        port = spec["flinkConfiguration"]["metrics.reporter.prom.port"]
        template = spec["podTemplate"]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == port
        assert {"name": "metrics", "containerPort": int(port)} in template["spec"]["containers"][0]["ports"]
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "flink"
        env = _environment(template["spec"]["containers"][0])
        assert int(env["SAMPLE_JOIN_PARALLELISM"]) == spec["job"]["parallelism"], "the job sets its own parallelism"
        scrape = yaml.safe_load((ROOT / "infra" / "monitoring" / "prometheus.yml").read_text())
        flink_targets = next(c for c in scrape["scrape_configs"] if c["job_name"] == "flink")["static_configs"]
        assert all(t.endswith(f":{port}") for s in flink_targets for t in s["targets"])


def test_the_trainer_keeps_its_model_dir_on_its_volume(variant: tuple[str, list[dict[str, Any]]]) -> None:
    docs = variant[1]
    deployment = _one(docs, "Deployment", "trainer")
    pod, container = _workloads(docs)["trainer"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    model_dir = Path(_environment(container)["MODEL_DIR"])
    mount = next(m for m in container["volumeMounts"] if model_dir.is_relative_to(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    _one(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    assert pod["terminationGracePeriodSeconds"] >= 30
