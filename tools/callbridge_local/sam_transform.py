"""template.yaml as AWS deploys it: the SAM transform, done by AWS's own translator.

CloudFormation runs the `AWS::Serverless-2016-10-31` transform before it creates anything; the SAM CLI
and the AWS service use the same library for it, `aws-sam-translator`. Running it here gives the
CloudFormation template a stack would get: Globals merged, implicit resources (roles, permissions, the
HTTP API's OpenAPI body, event-source mappings, schedule rules), policy templates expanded into IAM
statements. The checks in tests/local/test_transformed_template.py and the local runtime stand on
that output, not on a reading of SAM of our own.

Local code locations are not S3 objects: each `CodeUri`/`ContentUri` that names a folder is replaced
by `s3://<LOCAL_CODE_BUCKET>/<folder>` before the transform, so a Lambda function's `Code.S3Key` in the
output names the folder its code comes from (`local_code_path`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from callbridge_local import cfn_yaml

LOCAL_CODE_BUCKET = "callbridge-local-code"
DEFAULT_REGION = "us-east-1"

_CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


def _no_managed_policy_names() -> dict[str, str]:
    """The translator asks IAM for AWS managed policy ARNs only when `Policies` names one by its bare
    name. The template names none (it uses policy templates, statements and ARNs), and the transform
    runs offline: a bare name is then passed through unresolved, and cfn-lint refuses it (E3031)."""
    return {}


def stub_code_locations(sam_template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the template whose local `CodeUri`/`ContentUri` folders are S3 URIs the translator
    accepts (it refuses a local path, which `sam build`/`sam package` would have uploaded)."""
    template = copy.deepcopy(dict(sam_template))
    # Globals.Function.CodeUri (merged into each function by the transform) is one more such place.
    places = [
        (resource.get("Type", ""), resource.get("Properties"))
        for resource in (template.get("Resources") or {}).values()
    ]
    places.append(("AWS::Serverless::Function", (template.get("Globals") or {}).get("Function")))
    for kind, properties in places:
        prop = _CODE_PROPERTIES.get(kind)
        value = properties.get(prop) if prop and isinstance(properties, dict) else None
        if prop and isinstance(properties, dict) and isinstance(value, str) and not value.startswith("s3://"):
            properties[prop] = f"s3://{LOCAL_CODE_BUCKET}/{_key_of(value)}"
    return template


def transform(
    sam_template: Mapping[str, Any],
    parameter_values: Mapping[str, Any] | None = None,
    *,
    region: str = DEFAULT_REGION,
) -> dict[str, Any]:
    """The CloudFormation template CloudFormation would deploy for this SAM template.

    Conditions stay in the output as CloudFormation keeps them (the translator resolves parameters
    only where SAM needs a value at transform time), so one output covers every parameter value that
    does not change the transform itself.
    """
    # Imported here: the translator and boto3 take a second to import, and a runtime whose transform
    # comes from the cache (transform_cache.py) only needs local_code_path below.
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    session = boto3.session.Session(region_name=region)
    translator = Translator(None, Parser(), boto_session=session)
    result: dict[str, Any] = translator.translate(
        stub_code_locations(sam_template),
        parameter_values=_as_cloudformation_passes(sam_template, parameter_values or {}),
        get_managed_policy_map=_no_managed_policy_names,
    )
    # The translator counts what it did for AWS's own telemetry; its publisher here is a no-op, and
    # publishing spares a warning for every transform.
    translator.metrics.publish()
    return result


def _as_cloudformation_passes(sam_template: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter values as CloudFormation hands them to the transform: a CommaDelimitedList as a
    list. The translator inlines some parameters (a CorsConfiguration's AllowOrigins); given the text
    "a,b" it would write one origin "a,b" where the deployed stack gets two."""
    passed = dict(values)
    for name, spec in (sam_template.get("Parameters") or {}).items():
        if not isinstance(spec, dict) or spec.get("Type") != "CommaDelimitedList":
            continue
        value = passed.get(name, spec.get("Default"))
        if isinstance(value, str):
            passed[name] = [item.strip() for item in value.split(",")]
    return passed


def transform_file(
    path: Path, parameter_values: Mapping[str, Any] | None = None, *, region: str = DEFAULT_REGION
) -> dict[str, Any]:
    return transform(cfn_yaml.load(path), parameter_values, region=region)


# The translator reads an S3 URI's key without its leading slashes, so an absolute folder (a template
# written elsewhere that names our code by absolute path, as bench/benchmark.py does) is marked.
_ABSOLUTE = "_absolute_"


def _key_of(folder: str) -> str:
    return f"{_ABSOLUTE}{folder}" if folder.startswith("/") else folder


def local_code_path(code: Mapping[str, Any]) -> str | None:
    """The folder a transformed function's `Code` (or a layer's `Content`) came from, relative to
    the template, or None if it is not one of ours."""
    if code.get("S3Bucket") != LOCAL_CODE_BUCKET:
        return None
    key = code.get("S3Key")
    if not isinstance(key, str):
        return None
    return key.removeprefix(_ABSOLUTE) if key.startswith(_ABSOLUTE + "/") else key
