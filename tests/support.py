"""Shared test helpers: Cloud PBX request bodies and API Gateway HTTP API events."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

DEMO_ACCOUNT = "demo"
DEMO_TOKEN = "demo-crm-token-0001"


def form(**fields: Any) -> str:
    return urlencode({k: v for k, v in fields.items() if v is not None})


def http_event(
    path: str, body: str, *, content_type: str = "application/x-www-form-urlencoded", account: str = DEMO_ACCOUNT
) -> dict[str, Any]:
    """A minimal HTTP API (payload 2.0) event, as API Gateway hands it to the handler."""
    return {
        "version": "2.0",
        "routeKey": f"POST {path.replace(account, '{account}', 1)}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": content_type, "host": "api.example.com"},
        "pathParameters": {"account": account},
        "requestContext": {
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "pbx",
            },
            "requestId": "req",
            "stage": "$default",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def seed_history(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "cmd": "history",
        "type": "in",
        "status": "Success",
        "phone": "79101234567",
        "user": "andy",
        "duration": "124",
        "link": "https://link/file.mp3",
        "crm_token": DEMO_TOKEN,
        "callid": "B10D0EB124F4E64AF4EA-1511",
    }
    fields.update(overrides)
    return fields


def seed_event(type_: str, user: str = "andy", **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "cmd": "event",
        "type": type_,
        "phone": "79101234567",
        "user": user,
        "crm_token": DEMO_TOKEN,
        "callid": "B10D0EB124F4E64AF4EA-1511",
    }
    fields.update(overrides)
    return fields


def seed_contact(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "cmd": "contact",
        "phone": "79101234567",
        "crm_token": DEMO_TOKEN,
        "callid": "B10D0EB124F4E64AF4EA-1511",
    }
    fields.update(overrides)
    return fields


def call_ids(bridge: Any, account: str) -> list[str]:
    """The ids of every final call of an account in a local runtime (the ByAccount index holds
    final calls only: one item per call)."""
    paginator = bridge.client("dynamodb").get_paginator("query")
    pages = paginator.paginate(
        TableName=bridge.env["CALLS_TABLE"],
        IndexName="ByAccount",
        KeyConditionExpression="gsi1pk = :a",
        ExpressionAttributeValues={":a": {"S": account}},
        ProjectionExpression="call_id",
    )
    return [item["call_id"]["S"] for page in pages for item in page["Items"]]


# -- Trusting local fakes ----------------------------------------------------------------------
# An account may send requests (and keys) only to https on public addresses; a fake on
# http://127.0.0.1:<port> must be trusted by the account file, host:port by host:port
# (`trusted_hosts`, docs/accounts.md). These helpers add exactly the fakes' host:ports.
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def host_port(url: str) -> str:
    """The "host:port" of a URL, as trusted_hosts names it ("[::1]:8080" for IPv6)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _local_urls(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [url for item in value.values() for url in _local_urls(item)]
    if isinstance(value, list):
        return [url for item in value for url in _local_urls(item)]
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return [value] if urlsplit(value).hostname in _LOCAL_HOSTS else []
    return []


def trusting_fakes(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (an account file as a dict) with the host:port of every loopback URL of its `pbx` and
    `crms` added to `trusted_hosts`: what a test's account needs to reach its fakes."""
    found = [host_port(url) for url in _local_urls([config.get("pbx"), config.get("crms")])]
    trusted = list(dict.fromkeys([*config.get("trusted_hosts", []), *found]))
    return {**config, "trusted_hosts": trusted} if trusted else config


def trusting_fakes_yaml(text: str) -> str:
    """An account file's text with its fakes trusted (trusting_fakes); comments are not kept."""
    import yaml

    dumped: str = yaml.safe_dump(trusting_fakes(yaml.safe_load(text)), allow_unicode=True, sort_keys=False)
    return dumped


def trusted_hosts_yaml(*urls: str) -> str:
    """A `trusted_hosts:` line of an account file trusting the host:port of each URL."""
    return "trusted_hosts: " + json.dumps(list(dict.fromkeys(host_port(url) for url in urls)))
