#!/usr/bin/env python3
"""Strict validation of rendered manifests against the Kubernetes API schemas, run by
deploy/check.sh with the Python of its kubernetes-validate environment.

Usage: kubernetes_schemas.py --kubernetes-version V [--kubernetes-version V]... RENDERED_YAML...

Every document of every file is validated for every version, as `kubernetes-validate --strict`
does it: a field the API does not know is an error, as a wrong type is. The prometheus-operator
kinds (ServiceMonitor, PodMonitor, PrometheusRule) are custom resources, which the Kubernetes
schemas do not cover; kubernetes-validate only warns about a kind it has no schema for, so
here they are listed as not validated, and any other document without a schema (a misspelt
apiVersion, an API version the cluster no longer serves) is a failure. The output names what
was validated and what was not.
"""

import argparse
import sys

import kubernetes_validate
import yaml

CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", kind) for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule")
}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubernetes-version", action="append", required=True, dest="versions")
    parser.add_argument("rendered", nargs="+")
    args = parser.parse_args(argv)

    problems = []
    seen = set()
    passed = set()
    not_validated = set()
    for path in args.rendered:
        with open(path, encoding="utf-8") as handle:
            documents = [document for document in yaml.safe_load_all(handle) if document]
        if not documents:
            problems.append(f"{path}: no documents")
        for document in documents:
            kind = document.get("kind")
            name = f"{kind}/{document.get('metadata', {}).get('name')}"
            seen.add(kind)
            for version in args.versions:
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                    passed.add(kind)
                except kubernetes_validate.ValidationError as error:
                    field = ".".join(str(item) for item in error.path) or "(document)"
                    problems.append(f"{path}: {name} against Kubernetes {version}: {field}: {error.message}")
                except kubernetes_validate.SchemaNotFoundError as error:
                    if (document.get("apiVersion"), kind) in CUSTOM_RESOURCES:
                        not_validated.add(kind)
                    else:
                        problems.append(f"{path}: {name}: {error.message}")

    versions = " and ".join(args.versions)
    print(f"kubernetes-validate {kubernetes_validate.__version__}, strict, Kubernetes {versions}, "
          f"renderings: {len(args.rendered)}")
    print(f"validated, passed: {', '.join(sorted(passed)) or 'nothing'}")
    print(f"not validated (custom resources, no schema in the Kubernetes API): {', '.join(sorted(not_validated)) or 'none'}")
    if "DaemonSet" not in seen:
        problems.append("the renderings hold no DaemonSet")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
