"""FixedEgress in template.yaml: which functions get a VpcConfig in each mode, the VPC with its NAT
gateways, Elastic IPs and gateway endpoints, the EgressIps output, and what `accounts apply` tells
the operator. The template is evaluated with the local runtime's own resolver, which so proves that
`make run` copes with the new intrinsics and conditions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from callbridge.core.config import AccountConfig
from callbridge_cli.commands.accounts import egress_lines
from callbridge_cli.target import Target
from callbridge_local import cfn_yaml
from callbridge_local.intrinsics import NO_VALUE, PhysicalResource, Resolver, parameter_values
from callbridge_local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
TEMPLATE = load_template(TEMPLATE_PATH)
RAW: dict[str, Any] = cfn_yaml.load(TEMPLATE_PATH)
RESOURCES: dict[str, dict[str, Any]] = RAW["Resources"]
FUNCTIONS = sorted(k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function")

# Functions that call a CRM or a PBX over the internet: a fixed egress puts them in the VPC.
IN_VPC = [
    "CcrmPollFunction",  # ccrm.pl call history
    "CloudPbxReconcileFunction",  # the Cloud PBX call history (history command)
    "DeliveryDrainFunction",  # MiniCRM, retailCRM
    "DeliveryFunction",  # MiniCRM, retailCRM (calls)
    "LiveCardFunction",  # the CRMs' call events
    "MakeCallFunction",  # the account's PBX (Cloud PBX, telediscount)
    "RecordingFetchFunction",  # the PBXs' recording links
    "TelediscountReconcileFunction",  # telediscount get_calls
    "UserSyncFunction",  # the Cloud PBX users
    "ZadarmaReconcileFunction",  # Zadarma statistics
]
# Functions that stay outside in every mode. They call no one (they store and queue), except
# CloudPbxFunction, ContactFunction and PbxWebhookFunction (Zadarma's call start), whose retailCRM
# routing lookup is optional and bounded by the contact budget: they answer the ringing phone and
# must not depend on a NAT's AZ.
OUTSIDE = [
    "CallHistoryFunction",  # reads the Calls table and SSM only
    "CallSettleFunction",
    "CloudPbxFunction",
    "ConsoleApiFunction",  # reads and queues: a redelivery goes out through DeliveryFunction
    "ConsoleFunction",  # static files
    "ContactFunction",
    "EventFunction",
    "HealthFunction",
    "HistoryFunction",
    "PbxWebhookFunction",  # stores and queues (telediscount webhooks)
    "RecordingsFunction",
    "RingingSweepFunction",
    "UserStatusFunction",
]
MODES = ["off", "one-az", "two-az", "own-subnets"]
OWN = {"EgressSubnetIds": "subnet-0aaa,subnet-0bbb", "EgressSecurityGroupIds": "sg-0ccc"}
REGION = "eu-central-1"


def stack(mode: str) -> Resolver:
    """The template as CloudFormation would see it with FixedEgress=mode: every resource whose
    condition holds is registered with a placeholder physical id (its logical id)."""
    overrides = {"FixedEgress": mode, **(OWN if mode == "own-subnets" else {})}
    resolver = Resolver(
        TEMPLATE, parameter_values(TEMPLATE, overrides), stack_name="cb", region=REGION, account_id="111122223333"
    )
    for logical_id, resource in TEMPLATE.resources.items():
        if resource.condition is None or resolver.condition(resource.condition):
            attributes = {"PublicIp": f"ip-of-{logical_id}", "AllocationId": f"eipalloc-{logical_id}"}
            resolver.register(logical_id, PhysicalResource(logical_id, attributes))
    return resolver


def created(resolver: Resolver) -> set[str]:
    return set(resolver.resources)


def vpc_config(resolver: Resolver, function: str) -> Any:
    return resolver.resolve(RESOURCES[function]["Properties"].get("VpcConfig", {"Ref": "AWS::NoValue"}))


def ec2_resources() -> set[str]:
    return {k for k, v in RESOURCES.items() if v["Type"].startswith("AWS::EC2::")}


def test_every_function_is_placed_on_purpose():
    assert sorted(IN_VPC + OUTSIDE) == FUNCTIONS, "put a new function in IN_VPC or OUTSIDE"


def test_the_option_is_off_by_default():
    parameter = RAW["Parameters"]["FixedEgress"]
    # quoted in the template: YAML 1.1 would read a bare off as false
    assert parameter["Default"] == "off"
    assert parameter["AllowedValues"] == MODES


@pytest.mark.parametrize("mode", MODES)
def test_functions_that_call_no_one_never_get_a_vpc_config(mode: str):
    resolver = stack(mode)
    for function in OUTSIDE:
        assert "VpcConfig" not in RESOURCES[function]["Properties"], function
        assert vpc_config(resolver, function) is NO_VALUE


def test_off_puts_no_function_in_a_vpc_and_creates_no_network():
    resolver = stack("off")
    for function in IN_VPC:
        assert vpc_config(resolver, function) is NO_VALUE, function
    assert not created(resolver) & ec2_resources()
    assert not resolver.condition("EgressNat")


@pytest.mark.parametrize(
    ("mode", "subnets"),
    [("one-az", ["EgressPrivateSubnetA"]), ("two-az", ["EgressPrivateSubnetA", "EgressPrivateSubnetB"])],
)
def test_nat_modes_put_the_callers_in_the_private_subnets(mode: str, subnets: list[str]):
    resolver = stack(mode)
    for function in IN_VPC:
        assert vpc_config(resolver, function) == {"SubnetIds": subnets, "SecurityGroupIds": ["EgressSecurityGroup"]}


def test_own_subnets_use_the_operators_subnets_and_create_no_network():
    resolver = stack("own-subnets")
    for function in IN_VPC:
        assert vpc_config(resolver, function) == {
            "SubnetIds": ["subnet-0aaa", "subnet-0bbb"],
            "SecurityGroupIds": ["sg-0ccc"],
        }
    assert not created(resolver) & ec2_resources()
    assert "EgressIps" not in outputs(resolver)


def test_own_subnets_without_subnets_is_refused_before_the_deploy():
    rule = RAW["Rules"]["OwnSubnetsAreNamed"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "FixedEgress"}, "own-subnets"]}
    named = {a["Assert"]["Fn::Not"][0]["Fn::EachMemberEquals"][0]["Ref"] for a in rule["Assertions"]}
    assert named == {"EgressSubnetIds", "EgressSecurityGroupIds"}
    # and should it come through, the functions stay where they were
    resolver = Resolver(
        TEMPLATE,
        parameter_values(TEMPLATE, {"FixedEgress": "own-subnets"}),
        stack_name="cb",
        region=REGION,
        account_id="111122223333",
    )
    assert not resolver.condition("EgressOwnSubnets")


@pytest.mark.parametrize("mode", MODES)
def test_network_interface_rights_only_with_a_fixed_egress(mode: str):
    """SAM adds AWSLambdaVPCAccessExecutionRole to every function with a VpcConfig, resolved or
    not: with the option off, those functions carry a Deny of creating network interfaces."""
    resolver = stack(mode)
    for function in IN_VPC + OUTSIDE:
        # only the conditional ones: the rest name queues whose attributes are not faked here
        policies = [resolver.resolve(p) for p in RESOURCES[function]["Properties"].get("Policies", []) if "Fn::If" in p]
        denies = [
            s
            for p in policies
            if isinstance(p, dict)
            for s in p.get("Statement", [])
            if s.get("Sid") == "NoNetworkInterfacesWithoutFixedEgress"
        ]
        if function in IN_VPC and mode == "off":
            assert len(denies) == 1, function
            assert denies[0]["Effect"] == "Deny"
            assert "ec2:CreateNetworkInterface" in denies[0]["Action"]
        else:
            assert not denies, function


EGRESS_ONE_AZ = {
    "EgressVpc",
    "EgressInternetGateway",
    "EgressGatewayAttachment",
    "EgressPublicRouteTable",
    "EgressPublicRoute",
    "EgressPublicSubnetA",
    "EgressPublicSubnetARouteTable",
    "EgressNatIpA",
    "EgressNatGatewayA",
    "EgressPrivateSubnetA",
    "EgressPrivateRouteTableA",
    "EgressPrivateRouteA",
    "EgressPrivateSubnetARouteTable",
    "EgressDynamoDbEndpoint",
    "EgressS3Endpoint",
    "EgressSecurityGroup",
}
EGRESS_SECOND_AZ = {
    "EgressPublicSubnetB",
    "EgressPublicSubnetBRouteTable",
    "EgressNatIpB",
    "EgressNatGatewayB",
    "EgressPrivateSubnetB",
    "EgressPrivateRouteTableB",
    "EgressPrivateRouteB",
    "EgressPrivateSubnetBRouteTable",
}


def test_the_network_of_each_mode():
    assert ec2_resources() == EGRESS_ONE_AZ | EGRESS_SECOND_AZ
    assert created(stack("one-az")) & ec2_resources() == EGRESS_ONE_AZ
    assert created(stack("two-az")) & ec2_resources() == EGRESS_ONE_AZ | EGRESS_SECOND_AZ


@pytest.mark.parametrize("mode", ["one-az", "two-az"])
def test_each_private_subnet_leaves_through_the_nat_of_its_own_az(mode: str):
    resolver = stack(mode)
    zones = ["A", "B"] if mode == "two-az" else ["A"]
    seen_azs = set()
    for zone in zones:
        private = resolver.resolve(RESOURCES[f"EgressPrivateSubnet{zone}"]["Properties"])
        public = resolver.resolve(RESOURCES[f"EgressPublicSubnet{zone}"]["Properties"])
        assert private["AvailabilityZone"] == public["AvailabilityZone"]
        seen_azs.add(private["AvailabilityZone"])
        route = resolver.resolve(RESOURCES[f"EgressPrivateRoute{zone}"]["Properties"])
        assert route == {
            "RouteTableId": f"EgressPrivateRouteTable{zone}",
            "DestinationCidrBlock": "0.0.0.0/0",
            "NatGatewayId": f"EgressNatGateway{zone}",
        }
        nat = resolver.resolve(RESOURCES[f"EgressNatGateway{zone}"]["Properties"])
        assert nat["SubnetId"] == f"EgressPublicSubnet{zone}"
        assert nat["AllocationId"] == f"eipalloc-EgressNatIp{zone}"
        assert resolver.resolve(RESOURCES[f"EgressNatIp{zone}"]["Properties"])["Domain"] == "vpc"
    assert len(seen_azs) == len(zones)
    public_route = resolver.resolve(RESOURCES["EgressPublicRoute"]["Properties"])
    assert public_route["GatewayId"] == "EgressInternetGateway"
    assert public_route["DestinationCidrBlock"] == "0.0.0.0/0"


@pytest.mark.parametrize("mode", ["one-az", "two-az"])
def test_dynamodb_and_s3_bypass_the_nat_through_gateway_endpoints(mode: str):
    resolver = stack(mode)
    private_tables = sorted(k for k in created(resolver) if k.startswith("EgressPrivateRouteTable"))
    services = {}
    for logical_id in created(resolver):
        if RESOURCES.get(logical_id, {}).get("Type") == "AWS::EC2::VPCEndpoint":
            props = resolver.resolve(RESOURCES[logical_id]["Properties"])
            assert props["VpcEndpointType"] == "Gateway"
            assert props["VpcId"] == "EgressVpc"
            assert sorted(props["RouteTableIds"]) == private_tables
            services[props["ServiceName"]] = logical_id
    assert set(services) == {f"com.amazonaws.{REGION}.dynamodb", f"com.amazonaws.{REGION}.s3"}


def outputs(resolver: Resolver) -> dict[str, Any]:
    found = {}
    for name, output in RAW["Outputs"].items():
        if "Condition" in output and not resolver.condition(output["Condition"]):
            continue
        found[name] = resolver.resolve(output["Value"])
    return found


@pytest.mark.parametrize(
    ("mode", "ips"),
    [
        ("off", None),
        ("one-az", "ip-of-EgressNatIpA"),
        ("two-az", "ip-of-EgressNatIpA,ip-of-EgressNatIpB"),
        ("own-subnets", None),
    ],
)
def test_the_elastic_ips_are_a_stack_output_when_the_stack_owns_them(mode: str, ips: str | None):
    assert outputs(stack(mode)).get("EgressIps") == ips


def test_the_security_group_lets_nothing_in():
    props = RESOURCES["EgressSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in props
    ports = {(rule["FromPort"], rule["ToPort"]) for rule in props["SecurityGroupEgress"]}
    assert ports == {(80, 80), (443, 443), (1024, 65535)}


def test_the_local_runtime_provisions_a_stack_with_a_fixed_egress_and_ignores_the_network():
    from callbridge_local.testing import moto_server, provisioned

    with moto_server() as endpoint:
        env = provisioned(endpoint, TEMPLATE_PATH, params={"FixedEgress": "two-az"}, stack_name="cb-egress")
    # tables, queues and the bucket exist; the VPC, NATs and endpoints are not emulated (no EC2)
    assert env["CALLS_TABLE"] and env["DELIVERY_QUEUE_URL"] and env["RECORDINGS_BUCKET"]


def _cfn_lint() -> str | None:
    local = ROOT / ".tools" / "sam" / "bin" / "cfn-lint"
    return str(local) if local.exists() else shutil.which("cfn-lint")


def test_cfn_lint_passes_with_the_option_on(tmp_path: Path):
    """`sam validate --lint` (tools/test.sh) lints the default, FixedEgress=off; this lints a copy
    whose default is two-az (cfn-lint's --parameters does not reach a SAM template). own-subnets
    adds no resource, and its VpcConfig branch is the operator's ids."""
    cfn_lint = _cfn_lint()
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (make test puts .tools/sam/bin on PATH)")
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    default = '    Default: "off"\n    AllowedValues: ["off", one-az, two-az, own-subnets]\n'
    assert text.count(default) == 1
    copy = tmp_path / "template.yaml"
    copy.write_text(text.replace(default, default.replace('"off"', "two-az", 1)), encoding="utf-8")
    run = subprocess.run([cfn_lint, str(copy)], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, f"cfn-lint, FixedEgress=two-az:\n{run.stdout}{run.stderr}"


# --- `callbridge accounts apply`: what to send MiniCRM support ---------------------------------


def account(*crms: dict[str, Any]) -> AccountConfig:
    return AccountConfig.model_validate(
        {
            "account": "acme",
            "phone_region": "HU",
            "pbx": {"kind": "cloudpbx", "crm_tokens": ["c" * 24]},
            "crms": list(crms),
        }
    )


MINICRM_ACCOUNT = account({"kind": "minicrm", "api_key": "k" * 24})
RETAILCRM_ACCOUNT = account(
    {"kind": "retailcrm", "base_url": "https://acme.retailcrm.ru", "api_key": "k" * 24, "client_id": "i" * 24}
)


def _stack_target(outputs: dict[str, str]) -> Target:
    return Target(kind="stack", label="stack cb", base_url="https://api.example.com", outputs=outputs)


def test_apply_names_the_ips_to_send_minicrm_support():
    lines = egress_lines(MINICRM_ACCOUNT, _stack_target({"EgressIps": "203.0.113.10,203.0.113.11"}))
    assert len(lines) == 1
    assert "MiniCRM support" in lines[0] and "EgressIps" in lines[0]
    assert lines[0].endswith("203.0.113.10, 203.0.113.11")


def test_apply_warns_when_a_minicrm_stack_has_no_fixed_egress():
    (line,) = egress_lines(MINICRM_ACCOUNT, _stack_target({"ApiUrl": "https://api.example.com"}))
    assert "FixedEgress=one-az or two-az" in line


def test_apply_says_nothing_of_egress_locally_or_without_minicrm():
    local = Target(kind="local", label="local runtime", base_url="http://127.0.0.1:3000")
    assert egress_lines(MINICRM_ACCOUNT, local) == []
    assert egress_lines(RETAILCRM_ACCOUNT, _stack_target({"EgressIps": "203.0.113.10"})) == []


def test_apply_gives_minicrm_its_recording_url_or_says_why_it_cannot_download():
    from callbridge.features.admin import cabinet_lines

    def minicrm_lines(config: AccountConfig) -> list[str]:
        return [line for line in cabinet_lines(config, "https://api.example.com") if "MiniCRM" in line]

    (missing,) = minicrm_lines(MINICRM_ACCOUNT)  # no recordings.basic_auth
    assert "cannot download recordings" in missing and "recordings.basic_auth" in missing
    with_auth = AccountConfig.model_validate(
        {
            "account": "acme",
            "phone_region": "HU",
            "pbx": {"kind": "cloudpbx", "crm_tokens": ["c" * 24]},
            "crms": [{"kind": "minicrm", "api_key": "k" * 24}],
            "recordings": {"basic_auth": {"username": "minicrm", "password": "p" * 16}},
        }
    )
    (template,) = minicrm_lines(with_auth)
    assert template.endswith("https://api.example.com/v1/acme/recordings?Rec={%RefereceId%}")
    assert minicrm_lines(RETAILCRM_ACCOUNT) == []
