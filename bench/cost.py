"""What a call costs on AWS and how fast it reaches the CRM, from a measured day through the local
runtime (the real template and handlers, in this process, against moto and fake CRMs on 127.0.0.1).

    make bench-cost                        # 500 calls (3-6 min on 2 cores)
    python bench/cost.py --calls 100       # smaller
    python bench/cost.py --realtime-only   # the realtime day only, without the batch account
    python bench/cost.py --help

The day: answered (one phone rings), group-rung (three phones ring, one answers), missed and outgoing
calls in the MIX below, RECORDED_SHARE of all calls with a recording of RECORDING_BYTES, one account
with two CRMs (MiniCRM and retailCRM) in realtime mode. Every billable request is counted where it
happens: Lambda invocations and their measured duration (wall clock of the handler here) and CPU
time, every AWS API call the handlers and the SQS event source make (DynamoDB units computed from
the actual item sizes), the log bytes the functions write, the custom metrics, the bytes that would
cross a NAT gateway with FixedEgress on. Multiplied by PRICES (a dated table), it prints the cost per
1,000 and per 1,000,000 calls by line item, the ratio to the protocol floor (the API requests the PBX
must make plus one S3 PUT per recording) and the three biggest items; then the memory per function
the measured durations support; then hang-up → CRM latency (realtime: measured per call, printed and
written to the JSON as soon as the realtime day ends; batch: the worst case by configuration, with the
drain's measured time).

Durations measured here are not Lambda's: the CPU part is scaled by the memory's share of a vCPU
(1,769 MB = one vCPU) and the rest (waiting on moto or a CRM) taken as is. A loaded machine inflates
both; the printout names the load.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0], and its delivery.py would shadow functions/delivery.py,
# the DeliveryFunction's handler module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
for _path in (ROOT / "layers" / "common" / "python", ROOT / "functions", ROOT / "tools", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

TEMPLATE = ROOT / "template.yaml"

# -- prices ------------------------------------------------------------------------------------
# us-east-1 list prices (USD) as published by AWS, checked 2025-06 (DynamoDB on-demand after the
# 2024-11-01 reduction). Free tiers ignored: they are per AWS account, not per call.
PRICES_AS_OF = "2025-06, us-east-1"
PRICES: dict[str, float] = {
    "apigw_http_request": 1.00 / 1e6,  # HTTP API, first 300 M/month, per request up to 512 KB
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second_arm64": 0.0000133334,
    "dynamodb_wru": 0.625 / 1e6,  # on-demand write request unit (1 KB)
    "dynamodb_rru": 0.125 / 1e6,  # on-demand read request unit (4 KB strongly consistent)
    "sqs_request": 0.40 / 1e6,  # standard queue, per 64 KB chunk
    "s3_put": 0.005 / 1e3,  # PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1e3,  # GET, HEAD
    "s3_gb_month": 0.023,  # S3 Standard, first 50 TB
    "internet_egress_gb": 0.09,  # data transfer out to the internet, first 10 TB/month
    "dynamodb_gb_month": 0.25,  # table storage, Standard table class (indexes included)
    "logs_ingested_gb": 0.50,  # CloudWatch Logs standard ingestion
    "logs_stored_gb_month": 0.03,
    "custom_metric_month": 0.30,  # first 10,000 metrics
    "xray_trace": 5.00 / 1e6,  # traces recorded
    "kms_request": 0.03 / 1e4,  # SecureString decrypts through the aws/ssm key
    "nat_gb": 0.045,  # NAT gateway data processing
    "nat_hour": 0.045,
    "public_ipv4_hour": 0.005,  # the NAT's Elastic IP
}
HOURS_PER_MONTH = 730
LAMBDA_VCPU_MB = 1769  # memory at which a function has one full vCPU
MEMORY_CHOICES = (128, 256, 384, 512, 768, 1024, 1769)
# The least memory offered to a function that imports boto3, pydantic and Powertools: headroom over
# its peak resident memory after a cold start (`make bench` prints it); 128 MB is the health check's.
MEMORY_FLOOR_MB = 256
LOG_RETENTION_MONTHS = 1  # LogRetentionDays default 30
# What an AWS API call from a Lambda in the same region takes (DynamoDB, SQS, S3 PUT of a small
# object): the modelled duration counts this per call instead of moto's time on this machine.
AWS_CALL_MS = 8.0
# Lambda's own lines per invocation (START, END, REPORT with the X-Ray trace id), as AWS writes them.
PLATFORM_LOG_BYTES = 90 + 60 + 260

# -- the floor ---------------------------------------------------------------------------------
# What a minimal correct bridge on API Gateway + Lambda + DynamoDB + S3 must pay per call: every
# webhook is one HTTP API request and one invocation of a minimal handler (it parses the form and
# writes one item under 1 KB: one WRU, FLOOR_INVOCATION_MS billed at FLOOR_MEMORY_MB), every recording
# one S3 PUT, every call one CRM request waited for by one invocation. Recording storage and playback
# egress depend on the owner's retention and listening, not on the bridge: they are separate lines,
# on both sides, and left out of the ratio.
FLOOR_MEMORY_MB = 128
FLOOR_INVOCATION_MS = 10
FLOOR_CRM_WAIT_MS = 200
PEER_CALL_MS = FLOOR_CRM_WAIT_MS  # a request to a CRM, PBX or recording server, as Lambda waits for it
# A scheduled run (drain, sweep, reconciliation, user sync) with nothing or little to do: billed at
# the function's configured memory for this long (the drain measured 0.4 s for 10 calls here).
SCHEDULED_RUN_MS = 300
# What a settle message costs when SQS hands it over after its delay (after the day here): its
# receive and delete, one invocation of SettleFunction that reads the call (consistent, under 4 KB)
# and finds it final.
SETTLE_RUN_MS = 2 * 8 + 5
# DynamoDB's per-item storage overhead (docs: "Item sizes and formats": 100 bytes per item and per
# index entry).
ITEM_OVERHEAD_BYTES = 100

# -- the day -----------------------------------------------------------------------------------
MIX = {"answered": 0.50, "group": 0.15, "missed": 0.20, "outgoing": 0.15}
RECORDED_SHARE = 0.70  # of all calls; only talked (not missed) calls have one
RECORDING_BYTES = 960_000  # two minutes of 64 kbit/s MP3
USERS = ("andy", "daria", "boris")
TOKEN = "bench-cost-token-0001"
MINI_KEY, RETAIL_KEY = "bench-minicrm-key-01", "bench-retailcrm-key-01"
ACCOUNT = "costday"
ACCOUNT_FILE = """\
account: {name}
timezone: Europe/Moscow
phone_region: RU
pbx:
  kind: cloudpbx
  crm_tokens: [{token}]
users:
  - {{pbx_user: andy, extension: "101", retailcrm_user_id: 1}}
  - {{pbx_user: daria, extension: "102", retailcrm_user_id: 2}}
  - {{pbx_user: boris, extension: "103", retailcrm_user_id: 3}}
crms:
  - {{kind: minicrm, base_url: "{mini}", api_key: {mini_key}, mode: {mode}, default_user_extension: "900"}}
  - {{kind: retailcrm, base_url: "{retail}", api_key: {retail_key}, mode: {mode},
      client_id: bench-retail-client-0001, default_user_id: 99}}
recordings:
  allow_hosts: ["{files_host}"]   # the benchmark's file server (plain http, by host:port): never on AWS
trusted_hosts: [{mini_host}, {retail_host}]   # the fake CRMs on loopback, plain http
"""


class CostError(RuntimeError):
    """The day could not be driven as planned (a webhook refused, a call never reached a CRM)."""


# -- DynamoDB item sizes (docs: "Item sizes and formats") ----------------------------------------


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0") or "0"
    return (len(digits) + 1) // 2 + 1 + (1 if text.startswith("-") else 0)


def value_size(value: Mapping[str, Any]) -> int:
    (kind, data), *_ = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return _number_size(str(data))
    if kind == "B":
        return len(data) if isinstance(data, bytes | bytearray) else len(str(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in data)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in data)
    if kind == "BS":
        return sum(len(b) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    return 1


def item_size(item: Mapping[str, Any] | None) -> int:
    return sum(len(k.encode()) + value_size(v) for k, v in (item or {}).items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


# -- counting ------------------------------------------------------------------------------------


@dataclass
class Invocation:
    function: str
    wall_ms: float
    cpu_ms: float  # the handler's thread and the pool threads it started
    aws_ms: float = 0.0  # spent in AWS API calls (moto here: slow under load, and not AWS's latency)
    aws_calls: int = 0
    peer_calls: int = 0  # HTTP requests to a CRM, a PBX or a recording server
    peer_ms: float = 0.0  # their time here (fake servers on loopback: far below a real peer's)


@dataclass
class Work:
    """What one invocation did so far, in its own thread and the pool threads it started."""

    cpu_ms: float = 0.0
    aws_ms: float = 0.0
    aws_calls: int = 0
    peer_calls: int = 0
    peer_ms: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **deltas: float) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


@dataclass
class Meter:
    """Everything billable seen while ``on``; thread-safe."""

    on: bool = False
    invocations: list[Invocation] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)  # service.operation
    wru: float = 0.0
    wru_by: dict[str, float] = field(default_factory=dict)  # function: operation item kind -> WRU
    rru: float = 0.0
    sqs_requests: int = 0
    sqs_idle_receives: int = 0
    s3_put: int = 0
    s3_get: int = 0
    s3_bytes: int = 0
    ssm_requests: int = 0
    vpc_aws_requests: int = 0  # SQS/SSM calls from functions in the VPC (through the NAT)
    log_bytes: int = 0
    log_lines: Counter[str] = field(default_factory=Counter)  # by level, "metric" for EMF
    metrics: set[str] = field(default_factory=set)  # distinct name + dimensions
    external_bytes: int = 0  # to and from CRMs and recording servers
    settle_messages: int = 0  # still delayed in the settle queue after the day: received later
    item_bytes: int = 0  # the Calls table's items of the day's account after it, with index entries
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **deltas: float) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


_local = threading.local()  # .function: the logical id of the invocation this thread runs


class CountingStdout(io.TextIOBase):
    """The functions' stdout (what CloudWatch Logs would ingest): counted, then dropped."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self._partial: dict[int, str] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self.meter.on:
            return len(text)
        key = threading.get_ident()
        buffered = self._partial.get(key, "") + text
        *lines, rest = buffered.split("\n")
        self._partial[key] = rest
        for line in lines:
            self._count(line)
        return len(text)

    def _count(self, line: str) -> None:
        meter = self.meter
        size = len(line.encode()) + 1
        level, names = "other", []
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                if "_aws" in record:
                    level = "metric"
                    for directive in record["_aws"].get("CloudWatchMetrics", []):
                        for dimensions in directive.get("Dimensions", [[]]):
                            dims = ",".join(f"{d}={record.get(d)}" for d in dimensions)
                            names += [f"{m['Name']}[{dims}]" for m in directive.get("Metrics", [])]
                else:
                    level = str(record.get("level", "other"))
        with meter.lock:
            meter.log_bytes += size
            meter.log_lines[level] += 1
            meter.metrics.update(names)


@dataclass(frozen=True)
class TableInfo:
    keys: tuple[str, ...]  # the table's key attributes
    # index name -> (its key attributes, projection type, the attributes INCLUDE adds)
    indexes: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]]


def _kind(item: Mapping[str, Any]) -> str:
    """What a written item is, for the breakdown: its sort key's or partition key's prefix."""

    def prefix(name: str) -> str:
        value = str(next(iter((item.get(name) or {"S": ""}).values())))
        return value.split("#", 1)[0] + ("#" if "#" in value else "")

    pk = prefix("pk")
    return (pk if pk != "CALL#" else prefix("sk")) or "other"


class AwsCalls:
    """Counts every AWS API call made in this process through botocore, by service and operation,
    and the DynamoDB request units of each from the item sizes (after the write, read back
    uncounted, for updates)."""

    def __init__(self, meter: Meter, vpc_functions: set[str]) -> None:
        self.meter = meter
        self.vpc_functions = vpc_functions
        self.tables: dict[str, TableInfo] = {}
        self._original: Callable[..., Any] | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from botocore.client import BaseClient

        # Not in botocore's stubs: the one method every API call of every client goes through.
        original = getattr(BaseClient, "_make_api_call")  # noqa: B009
        self._original = original
        counter = self

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            counting = counter.meter.on and not getattr(_local, "uncounted", False)
            with not_lambda_cpu():
                before = counter.before(client, operation, params) if counting else []
            started = time.perf_counter()
            try:
                result = original(client, operation, params)
            except Exception as error:
                if counting:
                    with not_lambda_cpu():
                        counter.refused(client, operation, params, error, before)
                raise
            finally:
                work = getattr(_local, "work", None)
                if work is not None and not getattr(_local, "uncounted", False):
                    work.add(aws_ms=(time.perf_counter() - started) * 1000, aws_calls=1)
            if counter.meter.on and not getattr(_local, "uncounted", False):
                with not_lambda_cpu():
                    counter.record(client, operation, params, result, before)
            return result

        setattr(BaseClient, "_make_api_call", counted)  # noqa: B010
        try:
            yield
        finally:
            setattr(BaseClient, "_make_api_call", original)  # noqa: B010

    def _uncounted(self, client: Any, operation: str, params: dict[str, Any]) -> Any:
        assert self._original is not None
        _local.uncounted = True
        try:
            return self._original(client, operation, params)
        finally:
            _local.uncounted = False

    def record(self, client: Any, operation: str, params: dict[str, Any], result: Any, before: list[Any]) -> None:
        service = client.meta.service_model.service_name
        function = getattr(_local, "function", None)
        thread = threading.current_thread().name
        if function is None and not thread.startswith("sqs-"):
            return  # the runtime's own work (a drain, a test hook): nothing AWS would bill us for
        meter = self.meter
        with meter.lock:
            meter.requests[f"{service}.{operation}"] += 1
        if service == "dynamodb":
            self._dynamodb(client, operation, params, result, before)
        elif service == "sqs":
            self._sqs(operation, params, result, function)
        elif service == "s3":
            # S3 bills GET and HEAD at the GET rate, every other request (PUT, POST, LIST, the
            # multipart ones) at the PUT rate.
            if operation not in ("GetObject", "HeadObject", "HeadBucket"):
                size = 0
                if operation in ("PutObject", "CompleteMultipartUpload"):  # the stored object's size
                    head = {"Bucket": params["Bucket"], "Key": params["Key"]}
                    size = int(self._uncounted(client, "HeadObject", head).get("ContentLength", 0))
                meter.add(s3_put=1, s3_bytes=size)
            else:
                meter.add(s3_get=1)
        elif service == "ssm":
            meter.add(ssm_requests=1, vpc_aws_requests=1 if function in self.vpc_functions else 0)

    def _sqs(self, operation: str, params: dict[str, Any], result: Any, function: str | None) -> None:
        meter = self.meter
        vpc = 1 if function in self.vpc_functions else 0
        if operation == "ReceiveMessage":
            if result.get("Messages"):
                meter.add(sqs_requests=1)
            else:
                meter.add(sqs_idle_receives=1)
            return
        if operation in ("SendMessage", "SendMessageBatch"):
            bodies = [params.get("MessageBody", "")] + [e.get("MessageBody", "") for e in params.get("Entries", [])]
            size = sum(len(str(b).encode()) for b in bodies)
            meter.add(sqs_requests=max(1, math.ceil(size / 65536)), vpc_aws_requests=vpc)
            return
        meter.add(sqs_requests=1, vpc_aws_requests=vpc)

    def _table(self, client: Any, name: str) -> TableInfo:
        if name not in self.tables:
            described = self._uncounted(client, "DescribeTable", {"TableName": name})["Table"]
            indexes = {}
            for index in described.get("GlobalSecondaryIndexes", []):
                keys = tuple(k["AttributeName"] for k in index["KeySchema"])
                projection = index["Projection"]
                included = tuple(projection.get("NonKeyAttributes", ()))
                indexes[index["IndexName"]] = (keys, projection["ProjectionType"], included)
            self.tables[name] = TableInfo(tuple(k["AttributeName"] for k in described["KeySchema"]), indexes)
        return self.tables[name]

    def _stored(self, client: Any, table: str, key: Mapping[str, Any]) -> dict[str, Any]:
        found = self._uncounted(client, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True})
        item: dict[str, Any] = found.get("Item") or {}
        return item

    def before(self, client: Any, operation: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The stored images a write is about to change (uncounted reads): DynamoDB bills an update
        by the larger of the item before and after, and an index by what the write changed in it."""
        if client.meta.service_model.service_name != "dynamodb":
            return []
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params.get("Key") or self._key_of(client, params["TableName"], params["Item"])
            return [self._stored(client, params["TableName"], key)]
        if operation == "TransactWriteItems":
            images = []
            for entry in params.get("TransactItems", []):
                (_, body), *_ = entry.items()
                key = body.get("Key") or self._key_of(client, body["TableName"], body["Item"])
                images.append(self._stored(client, body["TableName"], key))
            return images
        return []

    def refused(self, client: Any, operation: str, params: dict[str, Any], error: Exception, before: list[Any]) -> None:
        """A write refused for its condition is billed all the same ("Condition expressions": a
        failed conditional write consumes write units, by the size of the item it read)."""
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        if code != "ConditionalCheckFailedException" or operation not in ("PutItem", "UpdateItem", "DeleteItem"):
            return
        function = getattr(_local, "function", None)
        if function is None and not threading.current_thread().name.startswith("sqs-"):
            return  # the runtime's own work, as in record()
        units = float(write_units(item_size(before[0]) if before else 0))
        name = f"{function}: {operation} {_kind(params.get('Key') or params.get('Item') or {})} (refused)"
        with self.meter.lock:
            self.meter.wru_by[name] = self.meter.wru_by.get(name, 0.0) + units
        self.meter.add(wru=units)

    def _key_of(self, client: Any, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self._table(client, table).keys if name in item}

    def _write(
        self, client: Any, table: str, before: Mapping[str, Any], after: Mapping[str, Any], factor: int
    ) -> float:
        """Units of one write that turned ``before`` into ``after`` (empty: absent), index writes
        included ("Capacity unit consumption for writes", "Managing GSIs"): the table bills the larger
        image; an index bills nothing when the write changed neither its keys nor its projection, one
        write when it added, changed or removed the entry, two when it moved it to another key."""
        units = float(write_units(max(item_size(before), item_size(after))) * factor)
        info = self._table(client, table)
        for index, (keys, projection, included) in info.indexes.items():
            old = self._projected(info, keys, projection, included, before)
            new = self._projected(info, keys, projection, included, after)
            if old == new:
                continue
            moved = old is not None and new is not None and any(old[k] != new[k] for k in keys)
            index_units = (write_units(item_size(old)) if old is not None else 0) if moved else 0
            index_units += write_units(item_size(new if new is not None else old))
            units += index_units
            _local.index_units[index] = _local.index_units.get(index, 0.0) + index_units
        return units

    @staticmethod
    def _projected(
        info: TableInfo, keys: tuple[str, ...], projection: str, included: tuple[str, ...], item: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The index entry ``item`` has (None: none, the item lacks an index key)."""
        if not item or any(k not in item for k in keys):
            return None
        if projection == "ALL":
            return dict(item)
        return {k: item[k] for k in (*info.keys, *keys, *included) if k in item}

    def _dynamodb(self, client: Any, operation: str, params: dict[str, Any], result: Any, before: list[Any]) -> None:
        wru = rru = 0.0
        table = params.get("TableName", "")
        kinds: list[tuple[str, float]] = []
        _local.index_units = {}  # the index writes of this request, by index (from _write)
        if operation == "PutItem":
            wru = self._write(client, table, before[0], params["Item"], 1)
            kinds.append((_kind(params["Item"]), wru))
        elif operation in ("UpdateItem", "DeleteItem"):
            after = self._stored(client, table, params["Key"]) if operation == "UpdateItem" else {}
            wru = self._write(client, table, before[0], after, 1)
            kinds.append((_kind(params["Key"]), wru))
        elif operation == "GetItem":
            rru = read_units(item_size(result.get("Item")), bool(params.get("ConsistentRead")))
        elif operation in ("Query", "Scan"):
            size = sum(item_size(i) for i in result.get("Items", []))
            rru = read_units(size, bool(params.get("ConsistentRead")))
        elif operation == "BatchGetItem":
            for items in result.get("Responses", {}).values():
                rru += sum(read_units(item_size(i), False) for i in items) or 0.5
        elif operation == "BatchWriteItem":
            for name, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    put = request.get("PutRequest", {}).get("Item") or {}
                    units = self._write(client, name, {}, put, 1)
                    kinds.append((_kind(put), units))
                    wru += units
        elif operation == "TransactWriteItems":
            for entry, image in zip(params.get("TransactItems", []), before, strict=True):
                (kind, body), *_ = entry.items()
                name = body.get("TableName", "")
                if kind == "Put":
                    units = self._write(client, name, image, body["Item"], 2)
                elif kind == "Update":
                    units = self._write(client, name, image, self._stored(client, name, body["Key"]), 2)
                elif kind == "Delete":
                    units = self._write(client, name, image, {}, 2)
                else:  # ConditionCheck: 2 units per KB of the item read
                    units = 2.0 * write_units(item_size(image))
                kinds.append((f"{_kind(body.get('Item') or body['Key'])} ({kind}, in a transaction)", units))
                wru += units
        elif operation == "TransactGetItems":
            for response in result.get("Responses", []):
                rru += 2 * read_units(item_size(response.get("Item")), True)
        function = getattr(_local, "function", None) or threading.current_thread().name
        if len(kinds) == 1 and _local.index_units:  # one item written: its index writes shown apart
            kinds = [(kinds[0][0], kinds[0][1] - sum(_local.index_units.values()))]
            kinds += [(f"{kinds[0][0]} → index {name}", units) for name, units in _local.index_units.items()]
        with self.meter.lock:
            for kind, units in kinds:
                name = f"{function}: {operation} {kind}"
                self.meter.wru_by[name] = self.meter.wru_by.get(name, 0.0) + units
        self.meter.add(wru=wru, rru=rru)


@contextlib.contextmanager
def not_lambda_cpu() -> Iterator[None]:
    """CPU this thread spends here is the meter's or the emulator's, not the function's: taken off
    the invocation it runs in (the meter's own reads of item images, the local IAM check)."""
    work = getattr(_local, "work", None)
    started = time.thread_time()
    try:
        yield
    finally:
        if work is not None:
            work.add(cpu_ms=-(time.thread_time() - started) * 1000)


@contextlib.contextmanager
def emulator_checks_uncounted() -> Iterator[None]:
    """The local runtime checks each AWS call against the function's IAM policy (Lambda does not:
    AWS does, on its side): that CPU is not the function's."""
    from callbridge_local.iam import Enforcer

    original = Enforcer.check

    def check(self: Enforcer, *args: Any, **kwargs: Any) -> Any:
        with not_lambda_cpu():
            return original(self, *args, **kwargs)

    setattr(Enforcer, "check", check)  # noqa: B010
    try:
        yield
    finally:
        setattr(Enforcer, "check", original)  # noqa: B010


@contextlib.contextmanager
def timed_invocations(meter: Meter) -> Iterator[None]:
    """Every handler invocation of the local runtime, with its wall and CPU time (this thread's)."""
    from callbridge_local.handlers import LocalFunction

    original = LocalFunction.invoke

    def invoke(self: LocalFunction, event: Any) -> Any:
        previous = getattr(_local, "function", None), getattr(_local, "work", None)
        work = Work()
        _local.function, _local.work = self.logical_id, work
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(self, event)
        finally:
            wall_ms, cpu_ms = (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000
            work.add(cpu_ms=cpu_ms)
            measured = Invocation(
                self.logical_id, wall_ms, work.cpu_ms, work.aws_ms, work.aws_calls, work.peer_calls, work.peer_ms
            )
            _local.function, _local.work = previous
            if meter.on:
                with meter.lock:
                    meter.invocations.append(measured)

    # A handler's own worker threads (the delivery engine sends to each CRM in a pool) do its work:
    # what they call and the CPU they use are billed to it, as inside its Lambda invocation.
    submit = ThreadPoolExecutor.submit

    def submit_as_function(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        function, work = getattr(_local, "function", None), getattr(_local, "work", None)
        if function is None or work is None:
            return submit(self, fn, *args, **kwargs)

        def run(*a: Any, **k: Any) -> Any:
            previous = getattr(_local, "function", None), getattr(_local, "work", None)
            _local.function, _local.work = function, work
            cpu = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                work.add(cpu_ms=(time.thread_time() - cpu) * 1000)
                _local.function, _local.work = previous

        return submit(self, run, *args, **kwargs)

    # Every request to a peer (CRM, PBX, recording server) goes through httpcore's connection pool,
    # httpx's or the recording fetcher's own.
    import httpcore

    handle = httpcore.ConnectionPool.handle_request

    def timed_request(self: httpcore.ConnectionPool, request: httpcore.Request) -> httpcore.Response:
        work = getattr(_local, "work", None)
        started = time.perf_counter()
        try:
            return handle(self, request)
        finally:
            if work is not None:
                work.add(peer_calls=1, peer_ms=(time.perf_counter() - started) * 1000)

    LocalFunction.invoke = invoke  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = submit_as_function  # type: ignore[method-assign,assignment]
    httpcore.ConnectionPool.handle_request = timed_request  # type: ignore[method-assign]
    try:
        yield
    finally:
        LocalFunction.invoke = original  # type: ignore[method-assign]
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
        httpcore.ConnectionPool.handle_request = handle  # type: ignore[method-assign]


# -- fakes that stamp when each call arrived -------------------------------------------------------


@dataclass
class Arrivals:
    """When each call id first reached each CRM (monotonic seconds)."""

    at: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stamp(self, crm: str, call_ids: Sequence[str]) -> None:
        now = time.monotonic()
        with self.lock:
            for call_id in call_ids:
                self.at[crm].setdefault(call_id, now)


def stamping(fake: Any, crm: str, arrivals: Arrivals, meter: Meter, phone_to_call: dict[str, str]) -> Any:
    """Wraps a fake CRM's ``handle``: after it accepted a request, the calls in it are stamped."""
    original = fake.handle

    def handle(
        method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        status, answer, extra = original(method, path, query, headers, body)
        meter.add(external_bytes=len(body) + 600 + len(json.dumps(answer)))  # + request/response headers
        if status == 200:
            if crm == "retailcrm":
                from urllib.parse import parse_qs

                calls = json.loads(parse_qs(body.decode()).get("calls", ["[]"])[-1])
                arrivals.stamp(crm, [c["externalId"] for c in calls])
            else:
                records = json.loads(body).get("Data", [])
                arrivals.stamp(crm, [phone_to_call.get(r["Number"][-7:], "?") for r in records])
        return status, answer, extra

    fake.handle = handle
    return fake


# -- driving the day -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    call_id: str
    kind: str
    phone: str  # national digits as the PBX sends them
    recorded: bool

    @property
    def account(self) -> str:
        return self.call_id.rsplit("-", 1)[0]

    def webhooks(self, link: str) -> list[dict[str, str]]:
        """The Cloud PBX requests of this call, in order (docs/protocols/cloudpbx.md)."""
        n = int(self.call_id.rsplit("-", 1)[1])
        first = USERS[n % len(USERS)]
        base = {"crm_token": TOKEN, "callid": self.call_id, "phone": self.phone}

        def event(kind: str, user: str) -> dict[str, str]:
            return {"cmd": "event", "type": kind, "user": user, **base}

        def history(direction: str, status: str, user: str, duration: int) -> dict[str, str]:
            fields = {"cmd": "history", "type": direction, "status": status, "user": user, **base}
            fields["duration"] = str(duration)
            if self.recorded:
                fields["link"] = link
            return fields

        contact = {"cmd": "contact", **base}
        duration = 30 + n % 300
        if self.kind == "answered":
            return [
                contact,
                event("INCOMING", first),
                event("ACCEPTED", first),
                event("COMPLETED", first),
                history("in", "Success", first, duration),
            ]
        if self.kind == "group":
            answerer = USERS[(n + 1) % len(USERS)]
            ringing = [event("INCOMING", u) for u in USERS]
            return [
                contact,
                *ringing,
                event("ACCEPTED", answerer),
                event("COMPLETED", answerer),
                history("in", "Success", answerer, duration),
            ]
        if self.kind == "missed":
            return [
                contact,
                *[event("INCOMING", u) for u in USERS[:2]],
                *[event("CANCELLED", u) for u in USERS[:2]],
                history("in", "missed", first, 0),
            ]
        return [
            event("OUTGOING", first),
            event("ACCEPTED", first),
            event("COMPLETED", first),
            history("out", "Success", first, duration),
        ]


def plan_day(calls: int, seed: int = 7) -> list[PlannedCall]:
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=calls)
    talked = [i for i, k in enumerate(kinds) if k != "missed"]
    recorded = set(rng.sample(talked, min(len(talked), round(calls * RECORDED_SHARE))))
    return [PlannedCall(f"{ACCOUNT}-{i:06d}", kind, f"7916{i:07d}", i in recorded) for i, kind in enumerate(kinds)]


@dataclass
class DayResult:
    planned: list[PlannedCall]
    hangup_at: dict[str, float]
    api_requests: int
    wall_s: float


def drive_day(
    base_url: str, planned: list[PlannedCall], link: str, meter: Meter, *, rate: float, workers: int = 8
) -> DayResult:
    """The day's calls, call i starting i / `rate` seconds in (its webhooks back to back, as the PBX
    sends them): a paced day, so that hang-up → CRM is measured at a stated load, not at whatever an
    unpaced burst saturates."""
    import httpx

    hangup_at: dict[str, float] = {}
    lock = threading.Lock()
    form_headers = {"content-type": "application/x-www-form-urlencoded"}
    requests = 0

    with httpx.Client(base_url=base_url, timeout=60) as client:

        def one(index_call: tuple[int, PlannedCall]) -> None:
            nonlocal requests
            index, call = index_call
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
            hooks = call.webhooks(link)
            for position, fields in enumerate(hooks):
                if position == len(hooks) - 1:
                    with lock:
                        hangup_at[call.call_id] = time.monotonic()
                for _ in range(5):  # a PBX sends again after a 503 (the emulator's rare hiccup)
                    response = client.post(f"/v1/{call.account}/cloudpbx", data=fields, headers=form_headers)
                    with lock:
                        requests += 1
                    if response.status_code != 503:
                        break
                if response.status_code != 200:
                    raise CostError(f"{call.call_id} {fields['cmd']}: {response.status_code} {response.text[:200]}")

        started = time.monotonic()
        meter.on = True
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, enumerate(planned)))
    return DayResult(planned, hangup_at, requests, time.monotonic() - started)


def work_off(base_url: str) -> None:
    """Every queue's messages that are due now handled (the delayed settles stay delayed)."""
    import httpx

    drained = httpx.post(f"{base_url}/_local/queues/drain", params={"timeout": "120", "delayed": "0"}, timeout=130)
    if drained.status_code != 200:
        raise CostError(f"the queues did not drain: {drained.status_code} {drained.text[:200]}")


def wait_for_crms(arrivals: Arrivals, planned: list[PlannedCall], timeout: float) -> None:
    wanted = {c.call_id for c in planned}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with arrivals.lock:
            if all(wanted <= set(arrivals.at[crm]) for crm in ("minicrm", "retailcrm")):
                return
        time.sleep(0.2)
    with arrivals.lock:
        missing = {crm: len(wanted - set(arrivals.at[crm])) for crm in ("minicrm", "retailcrm")}
    raise CostError(f"calls not in the CRMs after {timeout:g} s: {missing}")


# -- the model -------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def lambda_ms(invocation: Invocation, memory_mb: int) -> float:
    """The duration Lambda would bill at ``memory_mb``, per started millisecond: the CPU time
    measured here scaled by the memory's share of a vCPU, AWS_CALL_MS per AWS API call and
    PEER_CALL_MS per request to a CRM, PBX or recording server (the floor's own figure for a CRM
    request), one after another even where the handler overlaps them (an upper bound). The rest of
    the wall time measured here is this machine's (moto, fakes on loopback, waiting for the GIL in
    one process that runs every function), not Lambda's."""
    cpu = invocation.cpu_ms * max(1.0, LAMBDA_VCPU_MB / memory_mb)
    return math.ceil(cpu + invocation.aws_calls * AWS_CALL_MS + invocation.peer_calls * PEER_CALL_MS)


def template_memory() -> dict[str, int]:
    from callbridge_local.template import load_template

    return {f.logical_id: f.memory_size for f in load_template(TEMPLATE).functions.values()}


def vpc_functions() -> set[str]:
    from callbridge_local import cfn_yaml

    raw = cfn_yaml.load(TEMPLATE)
    return {name for name, r in raw["Resources"].items() if "VpcConfig" in (r.get("Properties") or {})}


@dataclass
class Model:
    lines: dict[str, float]  # variable cost per call, by line item (USD), the owner's lines aside
    owner_lines: dict[str, float]  # per call, set by the owner's retention and playback
    fixed_monthly: dict[str, float]  # per month whatever the volume
    egress_lines: dict[str, float]  # extra per call with FixedEgress on
    floor: dict[str, float]  # per call, by term
    facts: dict[str, Any]

    @property
    def floor_per_call(self) -> float:
        return sum(self.floor.values())

    @property
    def ratio(self) -> float:
        """CallBridge's variable cost per call over the floor's, the owner's lines aside."""
        return sum(self.lines.values()) / self.floor_per_call


def cost_model(meter: Meter, day: DayResult, memory: Mapping[str, int], recordings: int) -> Model:
    calls = len(day.planned)
    p = PRICES
    by_function: dict[str, list[Invocation]] = defaultdict(list)
    for invocation in meter.invocations:
        by_function[invocation.function].append(invocation)
    gb_seconds = sum(lambda_ms(i, memory[i.function]) / 1000 * memory[i.function] / 1024 for i in meter.invocations)
    platform_bytes = PLATFORM_LOG_BYTES * len(meter.invocations)
    log_gb = (meter.log_bytes + platform_bytes) / 1e9
    retention, transition = _retention_days(), _template_number("RecordingsTransitionDays", 30)
    moved = f", Glacier IR after {transition:.0f}" if moves_to_glacier(int(retention), int(transition)) else ""
    tracing = template_defaults("Tracing")["Tracing"]
    lines = {
        "API Gateway requests": day.api_requests * p["apigw_http_request"],
        "Lambda requests": len(meter.invocations) * p["lambda_request"],
        "Lambda duration (GB-s)": gb_seconds * p["lambda_gb_second_arm64"],
        "DynamoDB writes (WRU)": meter.wru * p["dynamodb_wru"],
        "DynamoDB reads (RRU)": meter.rru * p["dynamodb_rru"],
        "SQS requests": meter.sqs_requests * p["sqs_request"],
        "S3 PUT": meter.s3_put * p["s3_put"],
        "S3 GET": meter.s3_get * p["s3_get"],
        "CloudWatch Logs ingested": log_gb * p["logs_ingested_gb"],
        "CloudWatch Logs stored": log_gb * p["logs_stored_gb_month"] * LOG_RETENTION_MONTHS,
        # With Tracing=Active a webhook's invocation starts a trace (HTTP APIs do not trace); the
        # queue-driven ones continue the trace of the message they got. Upper bound: Lambda records
        # the first request of each second and 5 % of the rest. PassThrough (the default) records none.
        f"X-Ray traces (Tracing={tracing})": (day.api_requests if tracing == "Active" else 0) * p["xray_trace"],
        "KMS (SSM SecureString reads)": meter.ssm_requests * p["kms_request"],
        "Settle messages after the day (SQS, SettleFunction)": meter.settle_messages
        * (
            2 * p["sqs_request"]
            + p["lambda_request"]
            + SETTLE_RUN_MS / 1000 * memory.get("SettleFunction", MEMORY_FLOOR_MB) / 1024 * p["lambda_gb_second_arm64"]
            + p["dynamodb_rru"]
        ),
    }
    per_call = {k: v / calls for k, v in lines.items()}
    # The owner's lines: as long as recordings and calls are kept, as often as recordings are played.
    call_months = _template_number("CallRetentionDays", 400) / 30
    owner = {
        f"DynamoDB storage ({call_months:.1f} months: CallRetentionDays, the TTL)": meter.item_bytes
        / 1e9
        * p["dynamodb_gb_month"]
        * call_months
        / calls,
        f"S3 storage ({retention:.0f} days{moved})": recording_lifetime_cost(
            meter.s3_bytes / 1e9, recordings, int(retention), int(transition)
        )
        / calls,
        "Playback egress (each recording played once)": recordings
        * RECORDING_BYTES
        / 1e9
        * p["internet_egress_gb"]
        / calls,
    }
    nat_bytes = meter.external_bytes + recordings * RECORDING_BYTES + meter.vpc_aws_requests * 2000
    egress = {"NAT data processed": nat_bytes / 1e9 * p["nat_gb"] / calls}
    # Idle long polls of the SQS event source mappings: AWS runs 5 pollers per queue, 20 s waits.
    queue_functions = _queue_functions()
    queues = len({i.function for i in meter.invocations if i.function in queue_functions}) or 4
    fixed = {
        "custom metrics (distinct name+dimensions)": len(meter.metrics) * p["custom_metric_month"],
        "SQS idle long polls (5 pollers × 20 s × queues)": queues * 5 * 3 * 60 * HOURS_PER_MONTH * p["sqs_request"],
        f"scheduled functions ({SCHEDULED_RUN_MS} ms a run)": scheduled_monthly(memory),
    }
    fixed_egress = {"NAT gateway + Elastic IP (one-az)": HOURS_PER_MONTH * (p["nat_hour"] + p["public_ipv4_hour"])}
    webhooks = sum(len(c.webhooks("x")) for c in day.planned)
    floor = floor_terms(webhooks / calls, recordings / calls)
    info_lines = meter.log_lines.get("INFO", 0)
    facts = {
        "calls": calls,
        "webhooks": webhooks,
        "api_requests": day.api_requests,
        "recordings": recordings,
        "invocations": len(meter.invocations),
        "invocations_by_function": {k: len(v) for k, v in sorted(by_function.items())},
        "gb_seconds": gb_seconds,
        "wru": meter.wru,
        "wru_by_operation": dict(sorted(meter.wru_by.items(), key=lambda kv: kv[1], reverse=True)),
        "rru": meter.rru,
        "sqs_requests": meter.sqs_requests,
        "sqs_idle_receives_local": meter.sqs_idle_receives,
        "s3_put": meter.s3_put,
        "s3_get": meter.s3_get,
        "s3_bytes": meter.s3_bytes,
        "log_bytes_functions": meter.log_bytes,
        "log_bytes_platform": platform_bytes,
        "log_lines": dict(meter.log_lines),
        "info_lines_per_call": info_lines / calls,
        "log_bytes_per_call": (meter.log_bytes + platform_bytes) / calls,
        "custom_metrics": sorted(meter.metrics),
        "aws_requests": dict(meter.requests.most_common()),
        "fixed_egress_monthly": fixed_egress,
        "nat_bytes": nat_bytes,
    }
    facts["item_bytes_per_call"] = meter.item_bytes / calls
    facts["settle_messages_after_day"] = meter.settle_messages
    return Model(per_call, owner, fixed, egress, floor, facts)


def floor_terms(webhooks: float, recordings: float) -> dict[str, float]:
    """The floor per call, term by term (see FLOOR_MEMORY_MB): the owner's lines are not in it."""
    p = PRICES
    gb_s = FLOOR_MEMORY_MB / 1024 * p["lambda_gb_second_arm64"]
    return {
        "API Gateway request per webhook": webhooks * p["apigw_http_request"],
        "Lambda request per webhook": webhooks * p["lambda_request"],
        f"Lambda duration per webhook ({FLOOR_INVOCATION_MS} ms at {FLOOR_MEMORY_MB} MB)": webhooks
        * FLOOR_INVOCATION_MS
        / 1000
        * gb_s,
        "DynamoDB write per webhook (1 WRU)": webhooks * p["dynamodb_wru"],
        "S3 PUT per recording": recordings * p["s3_put"],
        f"CRM request per call (one invocation waiting {FLOOR_CRM_WAIT_MS} ms)": p["lambda_request"]
        + FLOOR_CRM_WAIT_MS / 1000 * gb_s,
    }


def scheduled_monthly(memory: Mapping[str, int]) -> float:
    """Every schedule of the template at its default rate, each run SCHEDULED_RUN_MS at its
    function's memory: a month's runs whatever the volume."""
    from callbridge_local.drivers import rate_seconds as parse
    from callbridge_local.template import load_template

    template = load_template(TEMPLATE)
    defaults = {name: str(parameter.default) for name, parameter in template.parameters.items()}
    total = 0.0
    for function in template.functions.values():
        for rule in function.schedule_events:
            expression = rule.expression
            if isinstance(expression, Mapping) and "Ref" in expression:
                expression = defaults.get(str(expression["Ref"]), "")
            period = parse(str(expression))
            if not period:
                continue
            runs = HOURS_PER_MONTH * 3600 / period
            gb_s = SCHEDULED_RUN_MS / 1000 * memory.get(function.logical_id, MEMORY_FLOOR_MB) / 1024
            total += runs * (PRICES["lambda_request"] + gb_s * PRICES["lambda_gb_second_arm64"])
    return total


def _retention_days() -> float:
    return _template_number("RecordingRetentionDays", 365)


def _template_number(name: str, fallback: float) -> float:
    """A numeric template parameter's default."""
    from callbridge_local.template import load_template

    parameter = load_template(TEMPLATE).parameters.get(name)
    return float(parameter.default) if parameter is not None and parameter.default is not None else fallback


# -- recordings kept by retention tier (docs/cost.md, "Recordings") -----------------------------------
# The owner's storage line as a month's bill once the bucket holds a whole retention of recordings
# (it grows until then), for the tiers of core/retention.py. S3 Glacier Instant Retrieval, same date
# and region as PRICES: storage, retrieval of a played recording, lifecycle transition requests.
GLACIER_IR = {"gb_month": 0.004, "retrieval_gb": 0.03, "transition": 0.02 / 1e3}
RETENTION_TABLE_VOLUMES = (500, 5_000, 50_000)  # calls a day


def moves_to_glacier(retention_days: int, transition_days: int) -> bool:
    """Whether template.yaml's lifecycle moves a recording kept `retention_days` to Glacier IR."""
    from callbridge.core.retention import GLACIER_IR_MINIMUM_DAYS

    return transition_days > 0 and retention_days - transition_days >= GLACIER_IR_MINIMUM_DAYS


def recording_lifetime_cost(gb: float, recordings: int, retention_days: int, transition_days: int) -> float:
    """Dollars to keep `gb` of recordings (`recordings` files) for their whole retention: in Standard,
    then in Glacier IR where the lifecycle moves them (with a transition request each)."""
    in_glacier = retention_days - transition_days if moves_to_glacier(retention_days, transition_days) else 0
    standard = (retention_days - in_glacier) / 30 * PRICES["s3_gb_month"]
    glacier = in_glacier / 30 * GLACIER_IR["gb_month"]
    return gb * (standard + glacier) + (recordings * GLACIER_IR["transition"] if in_glacier else 0.0)


def recording_storage_month(calls_per_day: float, retention_days: int, transition_days: int) -> float:
    """Dollars a month for the recordings of the last `retention_days` days, moved to Glacier IR after
    `transition_days` (0: never) where template.yaml moves them (a stay there of its 90-day minimum at
    least), with the transition requests of a month's new recordings."""
    moves = moves_to_glacier(retention_days, transition_days)
    in_glacier = retention_days - transition_days if moves else 0
    recordings_per_day = calls_per_day * RECORDED_SHARE
    gb_per_day = recordings_per_day * RECORDING_BYTES / 1e9
    storage = gb_per_day * ((retention_days - in_glacier) * PRICES["s3_gb_month"] + in_glacier * GLACIER_IR["gb_month"])
    transitions = recordings_per_day * HOURS_PER_MONTH / 24 * GLACIER_IR["transition"] if moves else 0.0
    return storage + transitions


def render_retention_table(transition_days: int = 30) -> str:
    """The monthly recordings bill per retention tier and volume, all in Standard and with the transition."""
    from callbridge.core.retention import TIERS

    head = " | ".join(
        f"{v:,}/day: Standard | {v:,}/day: Glacier IR after {transition_days} d" for v in RETENTION_TABLE_VOLUMES
    )
    lines = [f"| retention | {head} |", "|---" * (1 + 2 * len(RETENTION_TABLE_VOLUMES)) + "|"]
    for days in TIERS:
        cells = [
            f"${recording_storage_month(v, days, t):,.2f}"
            for v in RETENTION_TABLE_VOLUMES
            for t in (0, transition_days)
        ]
        lines.append(f"| {days} days | {' | '.join(cells)} |")
    played = RECORDING_BYTES / 1e9 * GLACIER_IR["retrieval_gb"]
    lines.append(f"playing a recording from Glacier IR: ${played:.7f} retrieval ({RECORDING_BYTES / 1e6:.2f} MB)")
    return "\n".join(lines)


def _queue_functions() -> set[str]:
    from callbridge_local.template import load_template

    return {f.logical_id for f in load_template(TEMPLATE).functions.values() if f.sqs_events}


def memory_advice(meter: Meter, configured: Mapping[str, int], budget_ms: float) -> list[dict[str, Any]]:
    """Per function: the configured memory's cost per 1M invocations, and the cheapest setting of
    MEMORY_CHOICES (not under MEMORY_FLOOR_MB) whose modelled p99 keeps `contact` within budget."""
    by_function: dict[str, list[Invocation]] = defaultdict(list)
    for invocation in meter.invocations:
        by_function[invocation.function].append(invocation)
    rows = []
    for name, invocations in sorted(by_function.items()):

        def cost(memory: int, invocations: list[Invocation] = invocations) -> float:
            seconds = sum(lambda_ms(i, memory) for i in invocations) / 1000 / len(invocations)
            return seconds * memory / 1024 * PRICES["lambda_gb_second_arm64"] * 1e6

        def p99(memory: int, invocations: list[Invocation] = invocations) -> float:
            return percentile([lambda_ms(i, memory) for i in invocations], 99)

        floor = min(MEMORY_FLOOR_MB, configured[name])
        candidates = [m for m in MEMORY_CHOICES if m >= floor]
        latency_bound = name in ("ContactFunction", "CloudPbxFunction")
        fitting = [m for m in candidates if not latency_bound or p99(m) <= budget_ms] or [max(candidates)]
        best = min(fitting, key=lambda m: (cost(m), m))
        rows.append(
            {
                "function": name,
                "invocations": len(invocations),
                "cpu_ms_mean": sum(i.cpu_ms for i in invocations) / len(invocations),
                "wall_ms_mean": sum(i.wall_ms for i in invocations) / len(invocations),
                "aws_calls_mean": sum(i.aws_calls for i in invocations) / len(invocations),
                "peer_calls_mean": sum(i.peer_calls for i in invocations) / len(invocations),
                "configured_mb": configured[name],
                "cost_per_1m_configured": cost(configured[name]),
                "p99_ms_configured": p99(configured[name]),
                "cheapest_mb": best,
                "cost_per_1m_cheapest": cost(best),
                "p99_ms_cheapest": p99(best),
            }
        )
    return rows


# -- batch mode --------------------------------------------------------------------------------------


def rate_seconds(expression: str) -> float:
    from callbridge_local.drivers import rate_seconds as parse

    period = parse(expression)
    if period is None:
        raise CostError(f"DeliverySchedule {expression!r} is not a rate(): no worst case by configuration")
    return float(period)


def template_defaults(*names: str) -> dict[str, str]:
    from callbridge_local.template import load_template

    parameters = load_template(TEMPLATE).parameters
    return {n: str(parameters[n].default) for n in names}


# -- report ------------------------------------------------------------------------------------------


def money(value: float) -> str:
    return f"${value:,.4f}" if value < 10 else f"${value:,.2f}"


def render(model: Model, advice: list[dict[str, Any]], latency: dict[str, Any], machine: str) -> str:
    facts = model.facts
    out = [
        f"CallBridge cost model: {facts['calls']} calls through the local runtime ({machine})",
        f"  day: {', '.join(f'{k} {v:.0%}' for k, v in MIX.items())}; {RECORDED_SHARE:.0%} with a recording of "
        f"{RECORDING_BYTES / 1e6:.2f} MB; two CRMs (MiniCRM, retailCRM), realtime; prices {PRICES_AS_OF}",
        "",
        f"{'line item':<55} {'per 1,000 calls':>16} {'per 1,000,000 calls':>20} {'share':>6}",
    ]
    total = sum(model.lines.values())
    for name, per_call in sorted(model.lines.items(), key=lambda kv: kv[1], reverse=True):
        out.append(f"{name:<55} {money(per_call * 1e3):>16} {money(per_call * 1e6):>20} {per_call / total:>6.1%}")
    out.append(f"{'total (variable), the owner lines aside':<55} {money(total * 1e3):>16} {money(total * 1e6):>20}")
    out.append("the owner's lines (storage for as long as the owner keeps recordings and calls; playback):")
    for name, per_call in model.owner_lines.items():
        out.append(f"  {name:<53} {money(per_call * 1e3):>16} {money(per_call * 1e6):>20}")
    owner = sum(model.owner_lines.values())
    total += owner
    out.append(f"{'total (variable)':<55} {money(total * 1e3):>16} {money(total * 1e6):>20}")
    fixed = sum(model.fixed_monthly.values())
    for name, monthly in model.fixed_monthly.items():
        out.append(f"  + per month, any volume: {name}: {money(monthly)}")
    out.append(f"{'total, 1,000,000 calls in one month':<55} {'':>16} {money(total * 1e6 + fixed):>20}")
    egress_per_call = sum(model.egress_lines.values())
    egress_fixed = sum(facts["fixed_egress_monthly"].values())
    out.append(
        f"  with FixedEgress=one-az: + NAT data {money(egress_per_call * 1e6)} per 1M calls "
        f"({facts['nat_bytes'] / facts['calls'] / 1e6:.2f} MB per call) + {money(egress_fixed)} per month "
        "(NAT gateway hours and its IPv4 address; two-az doubles it)"
    )
    out += [
        "",
        f"Floor: a minimal correct bridge on API Gateway + Lambda + DynamoDB + S3, per 1M calls "
        f"({facts['webhooks'] / facts['calls']:.2f} webhooks and {facts['recordings'] / facts['calls']:.2f} "
        "recordings per call; the owner's lines aside):",
        *(f"  {name:<53} {money(per_call * 1e6):>20}" for name, per_call in model.floor.items()),
        f"  {'floor':<53} {money(model.floor_per_call * 1e6):>20}",
        f"CallBridge is {model.ratio:.2f}× the floor, the owner's lines aside "
        f"({(total) / (model.floor_per_call + owner):.2f}× with them on both sides)",
        "Top three line items: "
        + "; ".join(
            f"{name} ({per_call / total:.0%})"
            for name, per_call in sorted(
                {**model.lines, **model.owner_lines}.items(), key=lambda kv: kv[1], reverse=True
            )[:3]
        ),
        "",
        f"Per call: {facts['invocations'] / facts['calls']:.2f} Lambda invocations, "
        f"{facts['gb_seconds'] / facts['calls'] * 1000:.1f} GB-ms, {facts['wru'] / facts['calls']:.1f} WRU, "
        f"{facts['rru'] / facts['calls']:.1f} RRU, {facts['sqs_requests'] / facts['calls']:.2f} SQS requests, "
        f"{facts['log_bytes_per_call']:.0f} log bytes, {facts['item_bytes_per_call']:.0f} bytes kept in DynamoDB, "
        f"{facts['settle_messages_after_day'] / facts['calls']:.2f} settle messages after the day",
        "DynamoDB write units per call by function and item (index writes included; the top 8): "
        + "; ".join(f"{k} {v / facts['calls']:.2f}" for k, v in list(facts["wru_by_operation"].items())[:8]),
        f"Log lines per call: {facts['info_lines_per_call']:.2f} INFO; all by level: "
        + ", ".join(f"{k} {v / facts['calls']:.2f}" for k, v in sorted(facts["log_lines"].items())),
        f"Invocations: {', '.join(f'{k} {v}' for k, v in facts['invocations_by_function'].items())}",
        f"Custom metrics: {len(facts['custom_metrics'])} distinct",
        "",
        f"Memory per function (measured CPU scaled to the memory's vCPU share + {AWS_CALL_MS:g} ms per AWS call + "
        f"{PEER_CALL_MS:g} ms per peer request; Lambda duration cost per 1M invocations; contact held to "
        "ContactBudgetMs at p99):",
        f"  {'function':<28} {'n':>5} {'cpu ms':>7} {'wall ms':>8} {'AWS calls':>9} {'peer calls':>10} {'configured':>18} "
        f"{'cheapest fitting':>22}",
    ]
    for row in advice:
        out.append(
            f"  {row['function']:<28} {row['invocations']:>5} {row['cpu_ms_mean']:>7.1f} {row['wall_ms_mean']:>8.1f} "
            f"{row['aws_calls_mean']:>9.1f} {row['peer_calls_mean']:>10.1f} "
            f"{row['configured_mb']:>5} MB {money(row['cost_per_1m_configured']):>10} "
            f"{row['cheapest_mb']:>5} MB {money(row['cost_per_1m_cheapest']):>10} p99 {row['p99_ms_cheapest']:.0f} ms"
        )
    out += [
        "",
        render_realtime(latency["realtime"], latency["batching_window_s"], latency["batching_window_waited_locally"]),
    ]
    batch = latency["batch"]
    if batch is None:
        out.append("Hang-up → CRM, batch: not measured (--realtime-only, or the batch phase failed)")
    else:
        out.append(
            f"Hang-up → CRM, batch, worst case by configuration: DeliverySchedule {batch['schedule']} "
            f"({batch['period_s']:.0f} s) + the drain's run ({batch['drain_s']:.2f} s measured for "
            f"{batch['calls']} calls) = {batch['worst_s']:.0f} s"
        )
    return "\n".join(out)


REALTIME_GOAL_S = 3.0  # hang-up → CRM p99 of a realtime call (docs/delivery.md)


def render_realtime(rt: Mapping[str, Any], window_s: float, windows_waited: bool) -> str:
    reached = ", ".join(f"{crm} {count}" for crm, count in rt["reached"].items())
    if not window_s:
        window = "  the DeliveryFunction has no batching window: a call goes as soon as a poller has it"
    elif windows_waited:
        window = f"  the DeliveryFunction's {window_s:g} s batching window is in these figures (waited out as on AWS)"
    else:
        window = (
            f"  on AWS add up to {window_s:g} s: the DeliveryFunction's batching window, "
            "which this local runtime does not wait out"
        )
    return "\n".join(
        [
            f"Hang-up → CRM, realtime (last webhook sent → the CRM has the call; {rt['n']} calls × 2 CRMs, "
            f"paced at {rt.get('rate', 0):g} calls/s; reached: {reached}; load {rt['load_at_end']} at the end):",
            f"  all: p50 {rt['p50']:.2f} s, p99 {rt['p99']:.2f} s, max {rt['max']:.2f} s "
            f"(goal p99 ≤ {REALTIME_GOAL_S:g} s: {'met' if rt['p99'] <= REALTIME_GOAL_S else 'NOT met'}; "
            f"the day's pace held: {rt['n'] / rt['day_wall_s']:.1f} calls/s)",
            f"  without recording p50 {rt['unrecorded_p50']:.2f} s / p99 {rt['unrecorded_p99']:.2f} s; "
            f"with recording p50 {rt['recorded_p50']:.2f} s / p99 {rt['recorded_p99']:.2f} s",
            window,
        ]
    )


def delivery_batching_window() -> float:
    """The DeliveryFunction's MaximumBatchingWindowInSeconds as template.yaml declares it."""
    from callbridge_local import cfn_yaml

    events = cfn_yaml.load(TEMPLATE)["Resources"]["DeliveryFunction"]["Properties"].get("Events", {})
    windows = [
        float(e["Properties"].get("MaximumBatchingWindowInSeconds", 0))
        for e in events.values()
        if e.get("Type") == "SQS"
    ]
    return max(windows, default=0.0)


def runtime_waits_batching_windows() -> bool:
    """Whether the local runtime waits out the mappings' batching windows as Lambda does. It has
    since it runs the event-source mappings' concurrency (its config then caps the window); before,
    a batch was what was visible at once. The benchmark runs against both to compare them."""
    import dataclasses

    from callbridge_local.runtime import RuntimeConfig

    return any(f.name == "max_batching_window" for f in dataclasses.fields(RuntimeConfig))


# -- main --------------------------------------------------------------------------------------------


def write_accounts(directory: Path, mini: str, retail: str, files: str, name: str, mode: str) -> None:
    """An account file whose CRMs are ``mini`` and ``retail`` and whose recordings come from
    ``files`` (URLs of the fakes on loopback, trusted by host:port: a bare host would be ports 443
    and 80 only, and the recordings would be refused)."""
    text = ACCOUNT_FILE.format(
        name=name,
        token=TOKEN,
        mini=mini,
        retail=retail,
        mini_key=MINI_KEY,
        retail_key=RETAIL_KEY,
        mode=mode,
        mini_host=urlsplit(mini).netloc,
        retail_host=urlsplit(retail).netloc,
        files_host=urlsplit(files).netloc,
    )
    (directory / f"{name}.yaml").write_text(text, encoding="utf-8")


def run(args: argparse.Namespace, machine: str) -> dict[str, Any]:
    from tests.fakes.crm_server import serve
    from tests.fakes.minicrm import FakeMiniCrm
    from tests.fakes.retailcrm import FakeRetailCrm
    from tests.integration.recording_server import RecordingServer, Reply

    from callbridge_local.runtime import LocalRuntime, RuntimeConfig

    meter = Meter()
    arrivals, batch_arrivals = Arrivals(), Arrivals()
    planned = plan_day(args.calls)
    phone_to_call = {c.phone[-7:]: c.call_id for c in planned}
    batch_planned = [
        PlannedCall(c.call_id.replace(ACCOUNT, "costbatch"), c.kind, c.phone, c.recorded)
        for c in plan_day(args.batch_calls, seed=11)
    ]
    batch_phones = {c.phone[-7:]: c.call_id for c in batch_planned}
    memory = template_memory()
    budget_ms = float(template_defaults("ContactBudgetMs")["ContactBudgetMs"])
    window_s = delivery_batching_window()
    windows_waited = runtime_waits_batching_windows()
    saved_environ, saved_stdout = dict(os.environ), sys.stdout
    batch: float | None = None
    batch_error: str | None = None
    files = RecordingServer().start()
    try:
        files.route("/rec.mp3", Reply(200, b"ID3" + random.Random(4).randbytes(RECORDING_BYTES - 3)))
        link = files.url("/rec.mp3")
        with (
            tempfile.TemporaryDirectory(prefix="callbridge-cost-") as scratch,
            serve(stamping(FakeMiniCrm(MINI_KEY), "minicrm", arrivals, meter, phone_to_call)) as mini,
            serve(stamping(FakeRetailCrm(RETAIL_KEY), "retailcrm", arrivals, meter, phone_to_call)) as retail,
            serve(stamping(FakeMiniCrm(MINI_KEY), "minicrm", batch_arrivals, Meter(), batch_phones)) as mini_b,
            serve(stamping(FakeRetailCrm(RETAIL_KEY), "retailcrm", batch_arrivals, Meter(), batch_phones)) as retail_b,
            AwsCalls(meter, vpc_functions()).installed(),
            emulator_checks_uncounted(),
            timed_invocations(meter),
        ):
            accounts = Path(scratch)
            write_accounts(accounts, mini, retail, link, ACCOUNT, "realtime")
            write_accounts(accounts, mini_b, retail_b, link, "costbatch", "batch")
            sys.stdout = CountingStdout(meter)  # the functions' log lines, as CloudWatch would get them
            config = RuntimeConfig(template_path=TEMPLATE, port=0, accounts_dir=accounts, schedules=False)
            runtime = LocalRuntime(config, out=io.StringIO())
            runtime.start()
            try:
                print(f"  local runtime up at {runtime.base_url}; driving {args.calls} calls", file=sys.stderr)
                day = drive_day(runtime.base_url, planned, link, meter, rate=args.rate)
                try:
                    wait_for_crms(arrivals, planned, timeout=args.timeout)
                    # The deliveries' own bookkeeping after the CRM answered (marked delivered) is
                    # part of the day's bill: worked off before the meter stops.
                    work_off(runtime.base_url)
                finally:
                    # The realtime figures as soon as the phase ends (or gave up): nothing after it
                    # (the batch phase) can lose them.
                    meter.on = False
                    realtime = realtime_latency(arrivals, day, planned)
                    after_the_day(meter, ACCOUNT)
                    realtime["load_at_end"] = load_average()
                    realtime["rate"] = args.rate
                    print(render_realtime(realtime, window_s, windows_waited), file=saved_stdout, flush=True)
                    write_json(args.json, {"machine": machine, "complete": False, "latency": {"realtime": realtime}})
                if args.realtime_only:
                    print(f"  day driven in {day.wall_s:.0f} s; batch phase skipped", file=sys.stderr)
                else:
                    print(
                        f"  day driven in {day.wall_s:.0f} s; batch account, {args.batch_calls} calls", file=sys.stderr
                    )
                    try:
                        batch = _batch_phase(runtime.base_url, batch_planned, link, batch_arrivals, args.rate)
                    except CostError as error:  # the realtime day's figures still stand
                        batch_error = str(error)
            finally:
                meter.on = False
                runtime.stop()
                sys.stdout = saved_stdout
    finally:
        sys.stdout = saved_stdout
        files.stop()
        os.environ.clear()
        os.environ.update(saved_environ)
    recordings = sum(1 for c in planned if c.recorded)
    model = cost_model(meter, day, memory, recordings)
    advice = memory_advice(meter, memory, budget_ms)
    latency: dict[str, Any] = {
        "realtime": realtime,
        "batching_window_s": window_s,
        "batching_window_waited_locally": windows_waited,
        "batch": None,
    }
    if batch is not None:
        defaults = template_defaults("DeliverySchedule")
        period = rate_seconds(defaults["DeliverySchedule"])
        latency["batch"] = {
            "schedule": defaults["DeliverySchedule"],
            "period_s": period,
            "drain_s": batch,
            "calls": len(batch_planned),
            "worst_s": period + batch,
        }
    return {"model": model, "advice": advice, "latency": latency, "batch_error": batch_error}


def after_the_day(meter: Meter, account: str) -> None:
    """What the day leaves behind, read uncounted: the bytes its account's items keep in the Calls
    table (with their index entries), and the settle messages SQS still holds back (each answered
    call queues one for HistoryQuietSeconds; they arrive after the day and find the call final)."""
    from callbridge.infra import aws
    from callbridge.infra.settings import get_settings

    settings = get_settings()
    client = aws.dynamodb()
    described = client.describe_table(TableName=settings.calls_table)["Table"]
    indexes = [
        (next(k["AttributeName"] for k in i["KeySchema"] if k["KeyType"] == "HASH"), i["Projection"]["ProjectionType"])
        for i in described.get("GlobalSecondaryIndexes", [])
    ]
    stored = 0
    pages = client.get_paginator("scan").paginate(TableName=settings.calls_table)
    for page in pages:
        for item in page.get("Items", []):
            if account not in str(item.get("pk", {}).get("S", "")):
                continue
            size = item_size(item)
            stored += size + ITEM_OVERHEAD_BYTES
            for partition, projection in indexes:
                if partition in item:
                    stored += (size if projection == "ALL" else 64) + ITEM_OVERHEAD_BYTES
    attributes = aws.sqs().get_queue_attributes(
        QueueUrl=settings.settle_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    waiting = sum(int(v) for v in attributes.values())
    meter.add(item_bytes=stored, settle_messages=waiting)


def realtime_latency(arrivals: Arrivals, day: DayResult, planned: Sequence[PlannedCall]) -> dict[str, Any]:
    """Hang-up → CRM of the realtime day: per call and CRM, from the call's last webhook to its
    arrival; only the calls that arrived count (``reached`` says how many, per CRM)."""
    delays: list[float] = []
    recorded_delays: list[float] = []
    unrecorded_delays: list[float] = []
    recorded_ids = {c.call_id for c in planned if c.recorded}
    reached: dict[str, int] = {}
    with arrivals.lock:
        for crm in ("minicrm", "retailcrm"):
            stamped = {c: t for c, t in arrivals.at[crm].items() if c in day.hangup_at}
            reached[crm] = len(stamped)
            for call_id, arrived in stamped.items():
                delay = arrived - day.hangup_at[call_id]
                delays.append(delay)
                (recorded_delays if call_id in recorded_ids else unrecorded_delays).append(delay)
    return {
        "n": len(day.hangup_at),
        "reached": reached,
        "p50": percentile(delays, 50),
        "p99": percentile(delays, 99),
        "max": max(delays, default=math.nan),
        "recorded_p50": percentile(recorded_delays, 50),
        "recorded_p99": percentile(recorded_delays, 99),
        "unrecorded_p50": percentile(unrecorded_delays, 50),
        "unrecorded_p99": percentile(unrecorded_delays, 99),
        "day_wall_s": day.wall_s,
    }


def _batch_phase(base_url: str, planned: list[PlannedCall], link: str, arrivals: Arrivals, rate: float) -> float:
    """A batch-mode account's calls, its queues (recordings) worked off, then one scheduled drain:
    the drain's duration is what a call waits beyond the schedule's period at worst."""
    import httpx

    drive_day(base_url, planned, link, Meter(), rate=rate)
    with httpx.Client(base_url=base_url, timeout=300) as client:
        # What is due now (delayed=0): every answered call also queued its settle, which SQS holds
        # back HistoryQuietSeconds (15 minutes) in case its history never comes. Here every call's
        # history came, so those settles find the call final and change nothing; waiting for them
        # would outlast any timeout. They are the product's, so the template's quiet time stays.
        drained = client.post("/_local/queues/drain", params={"timeout": "240", "delayed": "0"})
        if drained.status_code != 200:
            raise CostError(f"queues not drained: {drained.text[:300]}")
        started = time.monotonic()
        response = client.post("/_local/schedules/DeliveryDrainFunction")
        elapsed = time.monotonic() - started
        if response.status_code != 200:
            raise CostError(f"drain failed: {response.text[:300]}")
    wait_for_crms(arrivals, planned, timeout=30)
    return elapsed


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="calls of the realtime day (default 500)")
    parser.add_argument("--batch-calls", type=int, default=100, help="calls of the batch account (default 100)")
    parser.add_argument(
        "--realtime-only", action="store_true", help="skip the batch account's phase (its calls and the drain)"
    )
    parser.add_argument(
        "--rate", type=float, default=2.0, help="calls started per second, paced (default 2: a busy office's hour)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the CRMs (default 300)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "cost-latest.json")
    parser.add_argument(
        "--template", type=Path, default=TEMPLATE, help="a variant of template.yaml beside it (e.g. other MemorySize)"
    )
    parser.add_argument(
        "--retention", action="store_true", help="print the recordings bill by retention tier, nothing else"
    )
    args = parser.parse_args(argv)
    if args.retention:
        print(render_retention_table())
        return 0
    globals()["TEMPLATE"] = args.template.resolve()
    machine = f"{os.cpu_count()} CPUs, load {load_average()} at start"
    try:
        result = run(args, machine)
    except CostError as error:
        print(f"cost benchmark failed: {error}", file=sys.stderr)
        return 1
    machine += f", {load_average()} at end"
    print()
    print(render(result["model"], result["advice"], result["latency"], machine))
    model: Model = result["model"]
    write_json(
        args.json,
        {
            "machine": machine,
            "complete": result["batch_error"] is None,
            "prices_as_of": PRICES_AS_OF,
            "per_call": model.lines,
            "owner_per_call": model.owner_lines,
            "fixed_monthly": model.fixed_monthly,
            "egress_per_call": model.egress_lines,
            "floor_per_call": model.floor,
            "floor_total_per_call": model.floor_per_call,
            "ratio_owner_lines_aside": model.ratio,
            "facts": model.facts,
            "memory": result["advice"],
            "latency": result["latency"],
            "batch_error": result["batch_error"],
        },
    )
    print(f"\nwritten {args.json}")
    if result["batch_error"] is not None:
        print(f"cost benchmark failed in the batch phase: {result['batch_error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
