"""House conventions of template.yaml, enforced: logs kept for a bounded time, async sources with a
dead-letter queue, least privilege, and every function built by functions/Makefile."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from callbridge_local import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE: dict[str, Any] = cfn_yaml.load(ROOT / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
FUNCTIONS = sorted(k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function")
MAKE_TARGETS = set(re.findall(r"^build-(\w+):", (ROOT / "functions" / "Makefile").read_text(), re.MULTILINE))


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_there_are_functions_to_check():
    assert {"ContactFunction", "CloudPbxFunction", "RecordingFetchFunction"} <= set(FUNCTIONS)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_a_log_group_with_retention(function: str):
    group = RESOURCES.get(f"{function}LogGroup")
    assert group is not None, f"add {function}LogGroup (AWS::Logs::LogGroup)"
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_is_built_by_the_makefile(function: str):
    assert RESOURCES[function].get("Metadata", {}).get("BuildMethod") == "makefile"
    assert function in MAKE_TARGETS, f"add build-{function}: to functions/Makefile"


def _sqs_sources() -> list[tuple[str, str]]:
    found = []
    for function in FUNCTIONS:
        for name, event in (RESOURCES[function]["Properties"].get("Events") or {}).items():
            if event["Type"] == "SQS":
                queue = event["Properties"]["Queue"]
                assert "Fn::GetAtt" in queue, f"{function}.{name}: reference the queue with !GetAtt Queue.Arn"
                found.append((f"{function}.{name}", queue["Fn::GetAtt"][0]))
    return found


def test_every_queue_driven_function_has_a_dead_letter_queue():
    sources = _sqs_sources()
    assert sources
    for source, queue in sources:
        redrive = RESOURCES[queue]["Properties"].get("RedrivePolicy")
        assert redrive, f"{source}: queue {queue} has no RedrivePolicy"
        target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert RESOURCES[target]["Type"] == "AWS::SQS::Queue"
        assert redrive["maxReceiveCount"]


def test_no_iam_action_has_a_wildcard():
    offenders = []
    for logical_id, resource in RESOURCES.items():
        for node in _walk(resource.get("Properties", {})):
            if isinstance(node, dict) and "Action" in node and "Effect" in node:
                if node["Effect"] != "Allow":
                    continue  # a Deny of everything (e.g. insecure transport) is the safe direction
                actions = node["Action"] if isinstance(node["Action"], list) else [node["Action"]]
                offenders += [f"{logical_id}: {a}" for a in actions if "*" in str(a)]
    assert not offenders


def test_alarms_notify_the_topic_and_outputs_cover_the_cli():
    alarms = [k for k, v in RESOURCES.items() if v["Type"] == "AWS::CloudWatch::Alarm"]
    assert {
        "CallSettleDLQAlarm",
        "RecordingFetchDLQAlarm",
        "ParkedDeliveriesAlarm",
        "ContactLatencyAlarm",
        "Api5xxAlarm",
    } <= set(alarms)
    for alarm in alarms:
        assert {"Ref": "AlarmTopic"} in RESOURCES[alarm]["Properties"]["AlarmActions"]
    from callbridge_cli.target import OPTIONAL_STACK_OUTPUTS, STACK_OUTPUTS

    assert set(STACK_OUTPUTS) | set(OPTIONAL_STACK_OUTPUTS) | {"ApiUrl"} <= set(TEMPLATE["Outputs"])


def _setting(function: str, name: str, default: int) -> int:
    value = RESOURCES[function]["Properties"].get(name, TEMPLATE["Globals"]["Function"].get(name, default))
    return int(value)


def test_queue_visibility_covers_six_function_timeouts_plus_the_batching_window():
    """AWS's advice for SQS event sources: a message must not reappear while a batch that holds it
    may still run, or two workers process it."""
    for function, resource in RESOURCES.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for name, event in (resource["Properties"].get("Events") or {}).items():
            if event["Type"] != "SQS":
                continue
            queue = RESOURCES[event["Properties"]["Queue"]["Fn::GetAtt"][0]]["Properties"]
            window = int(event["Properties"].get("MaximumBatchingWindowInSeconds", 0))
            needed = 6 * _setting(function, "Timeout", 3) + window
            assert int(queue["VisibilityTimeout"]) >= needed, f"{function}.{name}: VisibilityTimeout < {needed}"


def test_every_dead_letter_queue_alarms_and_shows_on_the_dashboard():
    body = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    queues = {k for k, v in RESOURCES.items() if v["Type"] == "AWS::SQS::Queue" and "DLQ" in k}
    queues.add("ScheduledRunFailures")
    for queue in sorted(queues):
        alarm = RESOURCES.get(f"{queue}Alarm")
        assert alarm is not None, f"add {queue}Alarm"
        assert alarm["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}
        assert f"${{{queue}.QueueName}}" in body, f"{queue} is not on the dashboard"
        assert f"${{{queue}Alarm.Arn}}" in body, f"{queue}Alarm is not on the dashboard"


def test_scheduled_functions_keep_failed_runs_and_alarm_on_errors():
    scheduled = sorted(
        k
        for k, v in RESOURCES.items()
        if v["Type"] == "AWS::Serverless::Function"
        and any(e["Type"] == "Schedule" for e in (v["Properties"].get("Events") or {}).values())
    )
    assert scheduled
    errors = {
        str(m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"])
        for m in RESOURCES["ScheduledErrorsAlarm"]["Properties"]["Metrics"]
        if "MetricStat" in m
    }
    for function in scheduled:
        failure = RESOURCES[function]["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["ScheduledRunFailures", "Arn"]}}, function
        assert function in errors, f"{function} is missing from ScheduledErrorsAlarm"


def test_the_api_is_throttled_and_contact_can_have_reserved_concurrency():
    settings = RESOURCES["HttpApi"]["Properties"]["DefaultRouteSettings"]
    assert settings == {
        "ThrottlingRateLimit": {"Ref": "ApiRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiBurstLimit"},
    }
    for function in ("CloudPbxFunction", "ContactFunction"):
        reserved = RESOURCES[function]["Properties"]["ReservedConcurrentExecutions"]
        assert reserved == {
            "Fn::If": ["HasContactReserve", {"Ref": "ContactReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
        }


def test_only_the_functions_that_apply_accounts_or_sync_users_may_write_the_accounts_table():
    """The Accounts table holds every account's token digests: a public endpoint (user status,
    authenticated by a CRM's clientId only) must not be able to write it."""
    writers = set()
    for function in FUNCTIONS:
        for policy in RESOURCES[function]["Properties"].get("Policies") or []:
            if not isinstance(policy, dict):
                continue
            for name, value in policy.items():
                if name in ("DynamoDBCrudPolicy", "DynamoDBWritePolicy") and value == {
                    "TableName": {"Ref": "AccountsTable"}
                }:
                    writers.add(function)
    assert "UserStatusFunction" not in writers
    assert writers <= {"UserSyncFunction", "CcrmPollFunction"}, writers


def test_every_table_that_holds_calls_contacts_or_accounts_is_deletion_protected_by_default():
    """A stack deletion must not take the calls with it unless the operator said so
    (TableDeletionProtection, "true" by default; docs/deploy.md, "Deleting a stack")."""
    assert TEMPLATE["Parameters"]["TableDeletionProtection"]["Default"] == "true"
    tables = {k for k, v in RESOURCES.items() if v["Type"] == "AWS::DynamoDB::Table"}
    kept = {"AccountsTable", "ContactsTable", "CallsTable"}
    assert kept <= tables
    for table in kept:
        protection = RESOURCES[table]["Properties"].get("DeletionProtectionEnabled")
        assert protection == {"Ref": "TableDeletionProtection"}, table
    # The routing cache is rebuilt from the CRM on demand: nothing in it to protect.
    assert tables - kept == {"RoutingCacheTable"}
