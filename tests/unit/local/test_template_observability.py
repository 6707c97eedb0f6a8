"""template.yaml's dashboard and alarms against the code's metrics: the dashboard body is
valid JSON once CloudFormation has substituted it, every Facegate metric the template
names exists in ``facegate.observability.METRICS`` with exactly the dimensions the code
emits (Powertools adds ``service``), every vendor is covered, and every alarm notifies
the AlarmTopicArn parameter's topic when one is given, and no one otherwise."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from facegate.observability import (
    COOLDOWN_OPENED,
    METRICS,
    RESULTS_LOG_WRITE_FAILED,
    VENDOR_ATTEMPTS,
    VENDOR_FAILURES,
)
from facegate.vendors import vendor_ids
from facegate_local.template import NO_VALUE, Resolver, Template

ROOT = Path(__file__).resolve().parents[3]
COMMERCIAL = set(vendor_ids()) - {"local"}  # the built-in engine has no outage to alarm on
TOPIC = "arn:aws:sns:us-east-1:123456789012:facegate-alarms"
QUEUES = {"ItemDLQ": "facegate-dev-ItemDLQ-abc", "ManifestDLQ": "facegate-dev-ManifestDLQ-def"}


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


def resolver(template: Template, **parameters: str) -> Resolver:
    r = Resolver(template, parameters=parameters)
    for logical, name in QUEUES.items():
        r.set_physical(logical, f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}", QueueName=name)
    return r


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    found = template.of_type("AWS::CloudWatch::Alarm")
    assert found, "template.yaml declares no alarms"
    return {name: resource["Properties"] for name, resource in found.items()}


def alarm_metrics(props: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric an alarm reads: its own, or those of its metric-math query."""
    if "MetricName" in props:
        return [{k: props[k] for k in ("Namespace", "MetricName", "Dimensions")}]
    return [q["MetricStat"]["Metric"] for q in props["Metrics"] if "MetricStat" in q]


def check_facegate_metric(name: str, dimensions: dict[str, str], where: str) -> None:
    assert name in METRICS, f"{where}: {name} is not a metric the code emits"
    assert set(dimensions) == set(METRICS[name]), f"{where}: {name} is emitted with {METRICS[name]}"
    assert dimensions["service"] == "facegate", where
    if "vendor" in dimensions:
        assert dimensions["vendor"] in COMMERCIAL, where


# --- the dashboard ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard(template) -> dict[str, Any]:
    (resource,) = template.of_type("AWS::CloudWatch::Dashboard").values()
    body = resource["Properties"]["DashboardBody"]
    assert set(body) == {"Fn::Sub"}
    text = resolver(template).resolve(body)
    assert "${" not in text
    return json.loads(text)


def dashboard_metrics(dashboard) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, name, dimensions) of every metric line of every widget."""
    out = []
    for widget in dashboard["widgets"]:
        for line in widget["properties"]["metrics"]:
            fields = [f for f in line if not isinstance(f, dict)]
            if fields:
                namespace, name, *pairs = fields
                out.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return out


def dashboard_searches(dashboard) -> list[tuple[set[str], str]]:
    """(dimension names, metric name) of every SEARCH expression over Facegate metrics."""
    out = []
    for widget in dashboard["widgets"]:
        for line in widget["properties"]["metrics"]:
            for f in line:
                if isinstance(f, dict) and "expression" in f:
                    m = re.fullmatch(
                        r"SEARCH\('\{Facegate,([\w,]+)\} MetricName=\"(\w+)\"', '\w+', \d+\)", f["expression"]
                    )
                    assert m, f["expression"]
                    out.append((set(m.group(1).split(",")), m.group(2)))
    return out


def test_the_dashboard_body_is_json_and_lays_its_widgets_on_the_grid(dashboard):
    widgets = dashboard["widgets"]
    assert len(widgets) >= 10
    for w in widgets:
        assert w["x"] + w["width"] <= 24
        assert w["properties"]["region"] == "us-east-1"
        assert w["properties"]["metrics"]
    cells = [(w["x"], w["y"]) for w in widgets]
    assert len(cells) == len(set(cells)), "two widgets in one place"


def test_the_dashboards_facegate_metrics_are_the_codes(dashboard):
    seen = set()
    for namespace, name, dims in dashboard_metrics(dashboard):
        if namespace == "Facegate":
            check_facegate_metric(name, dims, f"dashboard {name}")
            seen.add(name)
    for dims, name in dashboard_searches(dashboard):
        assert name in METRICS and dims == set(METRICS[name]), name
        seen.add(name)
    assert seen == set(METRICS), "a metric the code emits is missing from the dashboard"


def test_the_dashboard_shows_every_vendor_and_every_function(dashboard, template):
    per_vendor: dict[str, set[str]] = {}
    for namespace, name, dims in dashboard_metrics(dashboard):
        if namespace == "Facegate" and "vendor" in dims:
            per_vendor.setdefault(name, set()).add(dims["vendor"])
    assert per_vendor and all(vendors == COMMERCIAL for vendors in per_vendor.values()), per_vendor
    r = resolver(template)
    # A function that exists only under a condition (OpenApiFunction: PublishOpenApi) cannot be
    # named by an unconditional dashboard; every other function is on it.
    functions = {
        r.resolve({"Ref": f})
        for f, resource in template.of_type("AWS::Serverless::Function").items()
        if "Condition" not in resource
    }
    for metric in ("Errors", "Throttles", "Duration"):
        shown = {
            d["FunctionName"] for ns, name, d in dashboard_metrics(dashboard) if (ns, name) == ("AWS/Lambda", metric)
        }
        assert shown == functions, metric
    api_name = r.resolve(template.resources["FacegateApi"]["Properties"]["Name"])
    api = [d for ns, _, d in dashboard_metrics(dashboard) if ns == "AWS/ApiGateway"]
    assert api and all(d == {"ApiName": api_name, "Stage": "dev"} for d in api)


# --- the alarms ---------------------------------------------------------------------------


def test_every_alarm_on_a_facegate_metric_names_a_metric_the_code_emits(template):
    r = resolver(template)
    for name, props in alarms(template).items():
        for metric in alarm_metrics(props):
            if metric["Namespace"] == "Facegate":
                dims = {d["Name"]: r.resolve(d["Value"]) for d in metric["Dimensions"]}
                check_facegate_metric(metric["MetricName"], dims, name)


def test_each_vendor_has_an_error_rate_alarm_and_every_cooldown_opening_alarms(template):
    error_rate: list[str] = []
    cooldown: set[str] = set()
    for props in alarms(template).values():
        metrics = alarm_metrics(props)
        names = {m["MetricName"] for m in metrics}
        vendors = {d["Value"] for m in metrics for d in m.get("Dimensions", []) if d["Name"] == "vendor"}
        if names == {VENDOR_FAILURES, VENDOR_ATTEMPTS}:
            assert len(vendors) == 1
            error_rate.append(vendors.pop())
        if names == {COOLDOWN_OPENED}:
            cooldown |= vendors
    assert sorted(error_rate) == sorted(COMMERCIAL)  # one each
    assert cooldown == COMMERCIAL


def test_the_operational_alarms_exist(template):
    r = resolver(template)
    read = {
        (m["Namespace"], m["MetricName"], *(str(r.resolve(d["Value"])) for d in m.get("Dimensions", [])))
        for props in alarms(template).values()
        for m in alarm_metrics(props)
    }
    assert ("Facegate", RESULTS_LOG_WRITE_FAILED, "facegate") in read
    for queue in QUEUES.values():
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue) in read
    for metric in ("5XXError", "Count", "Latency"):
        assert ("AWS/ApiGateway", metric, "facegate-dev", "dev") in read


def test_every_alarm_notifies_the_topic_when_one_is_given(template):
    with_topic, without = resolver(template, AlarmTopicArn=TOPIC), resolver(template)
    for name, props in alarms(template).items():
        for key in ("AlarmActions", "OKActions"):
            assert with_topic.resolve(props.get(key)) == [TOPIC], f"{name} {key}"
            assert without.resolve(props.get(key)) is NO_VALUE, f"{name} {key}"


def test_metric_math_ids_are_what_cloudwatch_accepts(template):
    for name, props in alarms(template).items():
        ids = [q["Id"] for q in props.get("Metrics", [])]
        assert all(re.fullmatch(r"[a-z][a-zA-Z0-9_]*", i) for i in ids), name
        assert sum(1 for q in props.get("Metrics", []) if q.get("ReturnData", True)) == (1 if ids else 0), name
