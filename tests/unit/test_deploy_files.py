"""compose.yaml and deploy/kubernetes agree with the code they run: every command is one the
image's entry point knows, every `<NAME>_FILE` names a secret setting and a file the container
is given, probes ask the health-only listener, and a pod is given longer to stop than the
service takes to drain."""
import pathlib
import re

import yaml

from carpet_common.entrypoint import SERVE, TASKS
from carpet_common.server import SHUTDOWN_GRACE_S
from carpet_common.settings import FILE_SETTINGS

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMMANDS = {*SERVE, *TASKS, "healthcheck"}


def compose():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_the_images_commands_with_secrets_from_files():
    document = compose()
    made = set(re.findall(r"^keep (\w+) ", (ROOT / "deploy/compose/make-secrets.sh").read_text(),
                          re.MULTILINE))
    declared = {name: spec["file"] for name, spec in document["secrets"].items()}
    assert declared == {name: f"./deploy/compose/secrets/{name}" for name in declared}
    # Every file the script makes is given to a container, but the token an internal backend
    # of the shop's own (`web`) presents from outside.
    assert made - set(declared) == {"web_token"} and set(declared) <= made
    ours = {name: service for name, service in document["services"].items()
            if service.get("image") == "localhost/carpet:dev"}
    assert set(ours) == {"migrate", "credit", "render", "gateway"}
    assert {name: service["command"][0] for name, service in ours.items()} == {
        "migrate": "setup", "credit": "credit", "render": "render", "gateway": "gateway"}
    assert all(service["command"][0] in COMMANDS for service in ours.values())
    assert (ours["credit"]["deploy"]["replicas"], ours["render"]["deploy"]["replicas"]) == (2, 2)
    for name, service in ours.items():
        given = set(service["secrets"])
        for variable, path in service["environment"].items():
            if variable.endswith("_FILE"):
                assert variable.removesuffix("_FILE") in FILE_SETTINGS, variable
                assert path.removeprefix("/run/secrets/") in given, (name, variable)
        assert service["read_only"] is True
        if name != "migrate":
            port = service["environment"]["HEALTH_ADDR"].rsplit(":", 1)[1]
            assert service["healthcheck"]["test"][-2:] == ["healthcheck", f"127.0.0.1:{port}"]


def kubernetes_base():
    documents = []
    for path in sorted((ROOT / "deploy/kubernetes/base").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [document for document in yaml.safe_load_all(path.read_text())]
    return documents


def test_kubernetes_pods_run_the_images_commands_and_read_their_mounted_secrets():
    documents = kubernetes_base()
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert sorted(d["metadata"]["name"] for d in deployments) == [
        "carpet-credit", "carpet-gateway", "carpet-render"]
    pods = [d["spec"]["template"]["spec"] for d in deployments] + [
        d["spec"]["template"]["spec"] for d in documents if d["kind"] == "Job"]
    for pod in pods:
        container = pod["containers"][0]
        assert container["args"][0] in COMMANDS
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounted = {}  # file path -> where it comes from
        for volume in pod["volumes"]:
            mount = next((m["mountPath"] for m in container["volumeMounts"]
                          if m["name"] == volume["name"]), None)
            sources = volume.get("projected", {}).get("sources", []) or (
                [{"secret": volume["secret"]}] if "secret" in volume else [])
            for source in sources:
                for item in source["secret"].get("items", []):
                    secret = source["secret"]
                    mounted[f"{mount}/{item['path']}"] = secret.get("name") or secret["secretName"]
        env = {variable["name"]: variable["value"] for variable in container["env"]}
        for variable, path in env.items():
            if variable.endswith("_FILE"):
                assert variable.removesuffix("_FILE") in FILE_SETTINGS, variable
                assert path in mounted, (container["name"], variable)
        if container["args"][0] in SERVE:
            health_port = int(env["HEALTH_ADDR"].rsplit(":", 1)[1])
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == health_port
            drain = container["lifecycle"]["preStop"]["sleep"]["seconds"] + SHUTDOWN_GRACE_S
            assert pod["terminationGracePeriodSeconds"] > drain
            assert "TLS_CLIENT_CA" in env  # mTLS between the services


def test_every_service_has_a_budget_an_autoscaler_and_a_service():
    documents = kubernetes_base()
    for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        assert sorted(d["metadata"]["name"] for d in documents if d["kind"] == kind) == [
            "carpet-credit", "carpet-gateway", "carpet-render"], kind
    headless = {d["metadata"]["name"] for d in documents
                if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"}
    assert headless == {"carpet-credit", "carpet-render"}
    policies = {d["metadata"]["name"]: d["spec"] for d in documents
                if d["kind"] == "NetworkPolicy"}
    assert policies["carpet-deny-by-default"] == {"podSelector": {},
                                                  "policyTypes": ["Ingress", "Egress"]}
    # From anywhere: the gateway's ports only.
    open_to_all = [name for name, spec in policies.items()
                   for rule in spec.get("ingress", []) if "from" not in rule]
    assert open_to_all == ["carpet-gateway-from-anywhere"]
