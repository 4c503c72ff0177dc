"""CallBridge local runtime: plays the AWS cloud of template.yaml on one machine.

It starts an in-process moto server, provisions the template's tables, queues and bucket in it,
and serves the template's HTTP API routes, SQS event sources and schedules by calling the unchanged
Lambda handlers in this process. ``python -m callbridge_local --help``.

Development tooling, not installed with the product: ``make run`` and the tests find it on
PYTHONPATH (tools/). What it emulates and why: docs/decisions/local-runtime.md.
"""

from __future__ import annotations

DEFAULT_STACK_NAME = "callbridge-local"
DEFAULT_REGION = "us-east-1"
# moto's default account: ARNs we build must match the ones moto builds for the same resources.
DEFAULT_ACCOUNT_ID = "123456789012"

__all__ = ["DEFAULT_ACCOUNT_ID", "DEFAULT_REGION", "DEFAULT_STACK_NAME"]
