#!/usr/bin/env python3
"""Queries a live Prometheus that scrapes conntrack_exporter; used by deploy/e2e.sh.

  e2e_prometheus.py wait URL SCRAPES TIMEOUT
      Wait until Prometheus has scraped the "conntrack-exporter" job
      successfully SCRAPES times in a row, or fail after TIMEOUT seconds.
  e2e_prometheus.py verify URL EXPECTATIONS_JSON DASHBOARD RULES...
      Evaluate every PromQL expression of the dashboard and rule files
      (an empty result is fine, an error is not), check that every rule is
      healthy, that every metric they reference exists, and that the
      expectations hold: a JSON list of {"query", "min"} where the query's
      value (one series) must be at least min.
"""

import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from promql_exprs import dashboard_expressions, rule_expressions  # noqa: E402

JOB = "conntrack-exporter"
# Metric names in an expression: the exporter's (conntrack_*), the critical
# host recording rule's, and Prometheus' own up and scrape_* series.
METRIC_PATTERN = re.compile(r"\b((?:conntrack_|up\b|scrape_)[a-zA-Z0-9_:]*)")


def api(base, path, **params):
    url = f"{base}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        # Prometheus answers bad queries with 400 and a JSON error body.
        return json.load(error)


def instant(base, query):
    return api(base, "query", query=query)


def wait(base, scrapes, timeout):
    deadline = time.monotonic() + timeout
    query = f'sum_over_time(up{{job="{JOB}"}}[1m])'
    last = None
    while time.monotonic() < deadline:
        try:
            answer = instant(base, query)
            result = answer.get("data", {}).get("result", [])
            last = result
            if result and float(result[0]["value"][1]) >= scrapes:
                print(f"{scrapes} successful scrapes of job {JOB}")
                return 0
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            last = error
        time.sleep(1)
    print(f"Prometheus did not record {scrapes} successful scrapes in {timeout}s; last answer: {last}", file=sys.stderr)
    targets = api(base, "targets")
    print(json.dumps(targets, indent=1)[:4000], file=sys.stderr)
    return 1


def verify(base, expectations_path, dashboard, rule_files):
    problems = []

    expressions = dashboard_expressions(dashboard)
    for path in rule_files:
        expressions += rule_expressions(path)
    referenced = set()
    for source, expr in expressions:
        answer = instant(base, expr)
        if answer.get("status") != "success":
            problems.append(f"{source}: {answer.get('errorType')}: {answer.get('error')}\n  {expr}")
        referenced.update(METRIC_PATTERN.findall(expr))
    print(f"{len(expressions)} expressions evaluated")

    # Every rule of the loaded rule files must evaluate without error.
    rules = api(base, "rules").get("data", {}).get("groups", [])
    rule_count = 0
    for group in rules:
        for rule in group.get("rules", []):
            rule_count += 1
            if rule.get("health") != "ok":
                problems.append(f"rule {rule.get('name')} in {group.get('name')}: health {rule.get('health')}: {rule.get('lastError')}")
    if rule_count == 0:
        problems.append("Prometheus loaded no rules")
    print(f"{rule_count} rules healthy" if rule_count else "no rules")

    # The names the dashboard and the alerts use must be the exporter's.
    existing = set(api(base, "label/__name__/values").get("data", []))
    missing = sorted(referenced - existing)
    if missing:
        problems.append(f"metrics used by the dashboard or alerts but absent from Prometheus: {missing}")
    print(f"{len(referenced)} referenced metric names checked")

    with open(expectations_path, encoding="utf-8") as handle:
        expectations = json.load(handle)
    for expectation in expectations:
        answer = instant(base, expectation["query"])
        result = answer.get("data", {}).get("result", [])
        if answer.get("status") != "success" or not result:
            problems.append(f"no data for {expectation['query']} ({answer.get('error', 'empty result')})")
            continue
        value = float(result[0]["value"][1])
        if value < expectation["min"]:
            problems.append(f"{expectation['query']} = {value}, expected at least {expectation['min']}")
        else:
            print(f"{expectation['query']} = {value:g}")

    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    if len(argv) == 4 and argv[0] == "wait":
        return wait(argv[1], int(argv[2]), float(argv[3]))
    if len(argv) >= 4 and argv[0] == "verify":
        return verify(argv[1], argv[2], argv[3], argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
