"""Checks the Helm chart without a Kubernetes cluster, with Helm's own SDK (helm-python-sdk):
lint (strict), values schema (good and bad values), render with the defaults and with every
feature on, validate every rendered manifest against the Kubernetes OpenAPI schemas
(kubernetes-validate), and compare the renders with the golden files in golden/.

Usage: python chart.py [--update]    (--update rewrites the golden files)
       python chart.py render VALUES.yaml [--set-json JSON]   (prints the manifests as JSON)
"""

import json
import sys
from pathlib import Path

import helm_python
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "telex"
KUBE_VERSION = "1.33.0"
RELEASE = dict(name="telex", namespace="chat", is_install=True)
# Custom resources (cert-manager, Prometheus Operator): not in the Kubernetes schemas; checked
# here for the fields their controllers require.
CUSTOM = {
    ("cert-manager.io/v1", "Certificate"): ["secretName", "issuerRef", "dnsNames"],
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["selector", "endpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["groups"],
}
BAD_VALUES = [
    {"replicas": "three"},
    {"replicas": 0},
    {"podAntiAffinity": "maybe"},
    {"raft": {"shards": 0, "replicas": 3}},
    {"service": {"type": "Ingress", "ports": {"grpc": 7400, "xmpp": 5222, "xmppTls": 5223, "http": 7480}}},
    {"bootstrapTenant": "Not A Domain"},
    {"certManager": {"enabled": True, "issuerRef": {"name": ""}}},
    {"unknownKey": 1},
    {"admin": {"enabled": True, "token": "too-short"}},
]


def render(values):
    chart = helm_python.Chart.load(str(CHART))
    chart.validate_schema(values)
    out = chart.render(values, **RELEASE)
    docs = []
    for path in sorted(out):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(out[path]):
            if doc:
                docs.append((path, doc))
    return docs


def validate(path, doc, failures):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CUSTOM:
        missing = [f for f in CUSTOM[key] if f not in (doc.get("spec") or {})]
        if missing:
            failures.append(f"{path}: {key[1]} lacks spec.{', spec.'.join(missing)}")
        return
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        failures.append(f"{path}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
    except Exception as e:  # noqa: BLE001 - an unknown kind is a failure too
        failures.append(f"{path}: {doc.get('kind')}: {e}")


def as_text(docs):
    return "".join(f"# {p}\n---\n{yaml.safe_dump(d, sort_keys=True)}" for p, d in docs)


def main(update):
    failures = []
    helm_python.disable_logging()
    report = helm_python.lint(str(CHART), strict=True, kube_version=f"v{KUBE_VERSION}")
    for m in report.get("messages", []):
        if m["severity"] >= 2:
            failures.append(f"lint: {m['path']}: {m['error']}")
    failures += [f"lint: {e}" for e in report.get("errors", [])]
    full_values = yaml.safe_load((HERE / "values-full.yaml").read_text())
    report = helm_python.lint(str(CHART), full_values, strict=True, kube_version=f"v{KUBE_VERSION}")
    failures += [f"lint (full): {m['path']}: {m['error']}" for m in report.get("messages", []) if m["severity"] >= 2]

    for bad in BAD_VALUES:
        try:
            helm_python.Chart.load(str(CHART)).validate_schema(bad)
            failures.append(f"schema accepted bad values {bad}")
        except helm_python.HelmError:
            pass

    counts = {}
    for name, values in [("default", {}), ("full", full_values)]:
        docs = render(values)
        counts[name] = len(docs)
        for path, doc in docs:
            validate(path, doc, failures)
        golden = HERE / "golden" / f"{name}.yaml"
        text = as_text(docs)
        if update:
            golden.write_text(text)
        elif not golden.exists() or golden.read_text() != text:
            failures.append(f"render ({name}) differs from {golden.relative_to(HERE.parent)}: "
                            "rerun with --update if the change is intended")
        kinds = sorted({d["kind"] for _, d in docs})
        print(f"rendered {name}: {len(docs)} manifests ({', '.join(kinds)})")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"chart ok: lint strict, {len(BAD_VALUES)} bad values refused, "
          f"{counts['default']} + {counts['full']} manifests valid for Kubernetes {KUBE_VERSION}, golden renders match")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "render":
        values = yaml.safe_load(Path(sys.argv[2]).read_text()) or {}
        if len(sys.argv) >= 5 and sys.argv[3] == "--set-json":
            values.update(json.loads(sys.argv[4]))
        print(json.dumps([d for _, d in render(values)]))
    else:
        main("--update" in sys.argv)
