"""Each function's role from the transformed template, evaluated on real calls to a moto server
(tools/callbridge_local/iam.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from callbridge_local import iam
from callbridge_local.iam_actions import CallSite, Request, requests_for
from callbridge_local.provision import AwsTarget, ProvisionedStack, provision
from callbridge_local.sam_transform import transform_file
from callbridge_local.template import load_template
from tests.local.conftest import TEMPLATE

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    return transform_file(TEMPLATE)


@pytest.fixture(scope="module")
def stack(moto_endpoint: str) -> ProvisionedStack:
    # One stack for the module (provisioning the whole template takes seconds); items the tests
    # write have keys of their own.
    return provision(load_template(TEMPLATE), AwsTarget(moto_endpoint), stack_name=f"iam{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def roles(transformed: dict[str, Any], stack: ProvisionedStack) -> dict[str, iam.FunctionRole]:
    names = {f.logical_id: stack.physical_name(f.logical_id) for f in stack.functions}
    return iam.function_roles(transformed, stack.resolver, names)


@pytest.fixture
def enforcer(roles: dict[str, iam.FunctionRole]) -> Iterator[iam.Enforcer]:
    enforcer = iam.Enforcer(roles, ACCOUNT)
    iam.install(enforcer)
    try:
        yield enforcer
    finally:
        iam.uninstall()


def table_arn(stack: ProvisionedStack, table: str) -> str:
    return f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{stack.physical_name(table)}"


def test_roles_are_the_transformed_templates_with_names_resolved(
    roles: dict[str, iam.FunctionRole], stack: ProvisionedStack
) -> None:
    event = roles["EventFunction"]
    assert event.role == "EventFunctionRole"
    assert event.principal(ACCOUNT) == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/{stack.stack_name}-EventFunctionRole/{stack.stack_name}-EventFunction"
    )
    crud = next(s for s in event.statements if s.policy == "EventFunctionRolePolicy0")
    assert crud.resources == [table_arn(stack, "CallsTable"), table_arn(stack, "CallsTable") + "/index/*"]
    assert "dynamodb:PutItem" in crud.actions
    # The managed policies SAM attaches, with AWS's documents.
    assert {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess"} <= {s.policy for s in event.statements}
    # !GetAtt CallsTable.Arn in a statement of the template's own.
    make_call = next(s for s in roles["MakeCallFunction"].statements if s.document.get("Sid") == "CrmCallIds")
    assert make_call.resources == [table_arn(stack, "CallsTable")]
    # Every function of the stack has its role.
    assert set(roles) == {f.logical_id for f in stack.functions}


def test_allow_implicit_deny_and_explicit_deny(roles: dict[str, iam.FunctionRole], stack: ProvisionedStack) -> None:
    event = roles["EventFunction"]
    assert event.evaluate(Request("dynamodb:PutItem", table_arn(stack, "CallsTable"))).allowed
    assert event.evaluate(Request("DynamoDB:putitem", table_arn(stack, "CallsTable"))).allowed  # case-insensitive
    assert not event.evaluate(Request("dynamodb:PutItem", table_arn(stack, "AccountsTable"))).allowed
    assert event.evaluate(Request("dynamodb:GetItem", table_arn(stack, "AccountsTable"))).allowed
    # FixedEgress=off: the Deny beats AWSLambdaVPCAccessExecutionRole's Allow of the same action.
    fetch = roles["RecordingFetchFunction"]
    decision = fetch.evaluate(Request("ec2:CreateNetworkInterface", "*"))
    assert not decision.allowed and decision.explicit_deny
    assert decision.statements[0].document["Sid"] == "NoNetworkInterfacesWithoutFixedEgress"
    assert fetch.evaluate(Request("ec2:DescribeNetworkInterfaces", "*")).allowed


def test_calls_in_a_function_are_checked_whenever_the_client_was_made(
    roles: dict[str, iam.FunctionRole], stack: ProvisionedStack
) -> None:
    dynamodb = stack.target.client("dynamodb")  # created before the check is installed
    calls, accounts = stack.physical_name("CallsTable"), stack.physical_name("AccountsTable")
    item = {"pk": {"S": "CALL#t#1"}, "sk": {"S": "CALL"}}
    enforcer = iam.Enforcer(roles, ACCOUNT)
    iam.install(enforcer)
    try:
        with iam.acting_as("EventFunction"):
            dynamodb.put_item(TableName=calls, Item=item)
            with pytest.raises(ClientError) as denied:
                dynamodb.put_item(TableName=accounts, Item=item)
        # Outside a function: the deployer's own calls (provisioning, account files) pass.
        dynamodb.put_item(TableName=accounts, Item=item)
    finally:
        iam.uninstall()
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert error["Message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{stack.stack_name}-EventFunctionRole/"
        f"{stack.stack_name}-EventFunction is not authorized to perform: dynamodb:PutItem on resource: "
        f"{table_arn(stack, 'AccountsTable')} because no identity-based policy allows the dynamodb:PutItem action"
    )
    assert denied.value.operation_name == "PutItem"
    assert dynamodb.get_item(TableName=calls, Key=item)["Item"] == item  # the allowed write happened
    assert enforcer.denied == [
        {"function": "EventFunction", "action": "dynamodb:PutItem", "resource": table_arn(stack, "AccountsTable")}
    ]


def test_a_transaction_needs_every_items_action(enforcer: iam.Enforcer, stack: ProvisionedStack) -> None:
    dynamodb = stack.target.client("dynamodb")
    calls, cache = stack.physical_name("CallsTable"), stack.physical_name("RoutingCacheTable")
    key = {"pk": {"S": "CALL#t#2"}, "sk": {"S": "CALL"}}
    items = [{"Put": {"TableName": calls, "Item": key}}, {"Put": {"TableName": cache, "Item": key}}]
    with iam.acting_as("EventFunction"), pytest.raises(ClientError, match=r"dynamodb:PutItem on resource: .*Cache"):
        dynamodb.transact_write_items(TransactItems=items)
    assert "Item" not in dynamodb.get_item(TableName=calls, Key=key)  # nothing was sent
    with iam.acting_as("ContactFunction"), pytest.raises(ClientError, match=r"PutItem on resource: .*CallsTable"):
        dynamodb.transact_write_items(TransactItems=items)


def test_pool_threads_carry_the_function(enforcer: iam.Enforcer, stack: ProvisionedStack) -> None:
    dynamodb = stack.target.client("dynamodb")
    accounts = stack.physical_name("AccountsTable")

    def write(n: int) -> None:
        dynamodb.put_item(TableName=accounts, Item={"pk": {"S": f"A#{n}"}, "sk": {"S": "CONFIG"}})

    with iam.acting_as("HistoryFunction"), ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(write, n) for n in range(2)]
        for future in futures:
            with pytest.raises(ClientError, match="HistoryFunction is not authorized"):
                future.result()
    with ThreadPoolExecutor(1) as pool:  # no function: the runtime's own pools are not checked
        pool.submit(write, 3).result()


def test_a_bound_client_acts_as_its_function(enforcer: iam.Enforcer, stack: ProvisionedStack) -> None:
    sqs = stack.target.client("sqs")
    iam.bind_client(sqs, "DeliveryFunction")  # its event source's poller
    delivery, fetch = str(stack.resources["DeliveryQueue"].ref), str(stack.resources["RecordingFetchQueue"].ref)
    sqs.receive_message(QueueUrl=delivery, WaitTimeSeconds=0)
    with pytest.raises(ClientError) as denied:
        sqs.send_message(QueueUrl=fetch, MessageBody="{}")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "sqs:SendMessage on resource: arn:aws:sqs:us-east-1:" in denied.value.response["Error"]["Message"]


def test_the_report_lists_what_no_call_used(enforcer: iam.Enforcer, stack: ProvisionedStack) -> None:
    dynamodb = stack.target.client("dynamodb")
    with iam.acting_as("ContactFunction"):
        dynamodb.get_item(
            TableName=stack.physical_name("ContactsTable"), Key={"account": {"S": "x"}, "phone": {"S": "y"}}
        )
    first = enforcer.report()
    used = [s for s in first["statements"] if s["used"]]
    assert [(s["function"], s["policy"], [u["action"] for u in s["used"]]) for s in used] == [
        ("ContactFunction", "ContactFunctionRolePolicy1", ["dynamodb:GetItem"])
    ]
    with iam.acting_as("ContactFunction"):
        dynamodb.query(
            TableName=stack.physical_name("ContactsTable"),
            KeyConditionExpression="account = :p",
            ExpressionAttributeValues={":p": {"S": "x"}},
        )
    merged = iam.unexercised([first, enforcer.report()])
    contacts = next(s for s in merged["partly_used"] if s["policy"] == "ContactFunctionRolePolicy1")
    assert contacts["unused_actions"] == ["dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:DescribeTable"]
    assert contacts["unused_resources"] == [table_arn(stack, "ContactsTable") + "/index/*"]
    never = {(s["function"], s["policy"]) for s in merged["never_used"]}
    assert ("ContactFunction", "ContactFunctionRolePolicy0") in never
    assert ("ContactFunction", "ContactFunctionRolePolicy1") not in never
    assert all(s["Effect"] == "Deny" for s in merged["deny_statements"])


def test_statements_the_evaluator_would_misread_are_refused(stack: ProvisionedStack) -> None:
    def template(statement: dict[str, Any]) -> dict[str, Any]:
        document = {"Statement": [statement]}
        return {
            "Resources": {
                "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["FnRole", "Arn"]}}},
                "FnRole": {
                    "Type": "AWS::IAM::Role",
                    "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": document}]},
                },
            }
        }

    base = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    assert iam.function_roles(template(base), stack.resolver, {"Fn": "fn"})["Fn"].statements[0].document == base
    for statement, complaint in (
        ({**base, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}, "Condition is not evaluated"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "x"}, "NotResource is not evaluated"),
        ({**base, "Resource": "arn:aws:s3:::b/?"}, "'?' and policy variables"),
    ):
        with pytest.raises(iam.PolicyError, match=complaint):
            iam.function_roles(template(statement), stack.resolver, {"Fn": "fn"})


# What an account's secrets are, by the call that reads each (infra/secrets.py; docs/tenancy.md).
SECRET_READS = {
    "everything": ("GetParametersByPath", "Path", ""),
    "crm": ("GetParametersByPath", "Path", "/crm"),
    "crm/*": ("GetParameter", "Name", "/crm/b24/oauth/tokens"),
    "pbx": ("GetParametersByPath", "Path", "/pbx"),
    "pbx_token": ("GetParameter", "Name", "/pbx_token"),
    "recordings_signing_key": ("GetParameter", "Name", "/recordings_signing_key"),
    "api_key": ("GetParameter", "Name", "/api_key"),
    "crm_token": ("GetParameter", "Name", "/crm_token"),
    "recordings_password": ("GetParameter", "Name", "/recordings_password"),
}


def test_each_function_may_read_only_its_part_of_an_accounts_secrets(
    roles: dict[str, iam.FunctionRole], stack: ProvisionedStack
) -> None:
    """Evaluated as IAM does, on the roles of the transformed template: which of an account's
    secrets each function may read. Only four may read every secret of every account (the console's
    API as the call history's: the API keys, and the names of the secrets its settings screen lists)."""
    path = f"/callbridge/{stack.stack_name}/accounts/acme"
    site = CallSite("us-east-1", ACCOUNT)
    may: dict[str, set[str]] = {}
    for function, role in roles.items():
        for part, (operation, key, below) in SECRET_READS.items():
            (request,) = requests_for("ssm", operation, {key: path + below}, site)
            if role.evaluate(request).allowed:
                may.setdefault(function, set()).add(part)
    everything = {f for f, parts in may.items() if "everything" in parts}
    assert everything == {"RecordingsFunction", "CallHistoryFunction", "ConsoleApiFunction", "MakeCallFunction"}
    assert not {"HistoryFunction", "EventFunction", "CallSettleFunction", "HealthFunction", "ConsoleFunction"} & set(
        may
    )
    assert may["ContactFunction"] == may["CloudPbxFunction"] == {"crm", "crm/*"}
    assert may["DeliveryFunction"] == {"crm", "crm/*", "recordings_signing_key"}
    assert may["CcrmPollFunction"] == may["TelediscountReconcileFunction"] == {"pbx"}
    assert may["CloudPbxReconcileFunction"] == {"pbx_token"}
    keys = {"api_key", "crm_token", "recordings_password"}
    assert {f for f, parts in may.items() if parts & keys} == everything  # the keys callers present
