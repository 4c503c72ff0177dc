"""Contacts: import a CSV (name, phones, responsible) into the caller directory, export it."""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from callbridge_cli import context
from callbridge_cli.errors import CliError
from callbridge_cli.render import table

BATCH = 25  # DynamoDB BatchWriteItem's limit (store.contacts.BATCH_LIMIT)
WRITERS = 8
PHONE_SEPARATORS = (";", ",", "|", "\n")
SHOWN_PROBLEMS = 50


@click.group(name="contacts")
def group() -> None:
    """Contacts: import a CSV (name, phones, responsible) into the caller directory, export it."""


@dataclass
class ImportReport:
    rows: int = 0
    contacts: int = 0
    phones: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)


def _split_phones(raw: str) -> list[str]:
    for separator in PHONE_SEPARATORS[1:]:
        raw = raw.replace(separator, PHONE_SEPARATORS[0])
    return [p.strip() for p in raw.split(PHONE_SEPARATORS[0]) if p.strip()]


def _rows(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    fields = {(f or "").strip().lower() for f in reader.fieldnames or ()}
    if "name" not in fields or not fields & {"phones", "phone"}:
        raise CliError("the CSV needs a header with the columns name, phones (or phone) and optionally responsible")
    for row in reader:
        yield reader.line_num, {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}


def parse_contacts(text: str, account: str, region: str) -> tuple[dict[str, dict[str, Any]], ImportReport]:
    """Contact items by phone (a phone listed twice keeps its last row) and what could not be read."""
    from callbridge.core.phones import normalize

    report = ImportReport()
    items: dict[str, dict[str, Any]] = {}
    for line, row in _rows(text):
        report.rows += 1
        name = row.get("name", "")
        raw_phones = _split_phones(row.get("phones") or row.get("phone") or "")
        if not name:
            report.problems.append((line, "no name"))
            continue
        phones: list[str] = []
        for raw in raw_phones:
            e164 = normalize(raw, region).e164
            if e164 is None:
                report.problems.append((line, f"phone not understood: {raw!r} (other phones of the row kept)"))
            elif e164 not in phones:
                phones.append(e164)
        if not phones:
            if not raw_phones:
                report.problems.append((line, "no phone"))
            continue
        contact_id = hashlib.sha256("|".join(sorted(phones)).encode()).hexdigest()[:16]
        for phone in phones:
            items[phone] = {
                "account": account,
                "phone": phone,
                "contact_id": contact_id,
                "name": name,
                "responsible": row.get("responsible") or None,
                "phones": phones,
            }
        report.contacts += 1
    report.phones = len(items)
    return items, report


def _write_batch(batch: list[dict[str, Any]]) -> int:
    from callbridge.store.contacts import put_contact_items

    unprocessed = put_contact_items(batch)
    if unprocessed:
        raise CliError(
            f"DynamoDB kept {unprocessed} contacts unprocessed after 8 tries; import again (it is idempotent)"
        )
    return len(batch)


@group.command("import")
@click.argument("csv_file", metavar="CSV", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@context.account_option()
@click.option("--strict", is_flag=True, help="Exit with code 1 when any row could not be read.")
@click.pass_context
def import_contacts(ctx: click.Context, csv_file: str, account: str | None, strict: bool) -> None:
    """Import CSV (columns name, phones, responsible) into the account's caller directory.

    Phones in any format (+7 910 123-45-67, 8 (495) 123-45-67, ...), several per cell separated by
    ';' or ','; numbers without a country code use the account's phone_region. Importing again
    updates the same contacts. Rows that cannot be read are listed at the end.
    """
    from callbridge.core.accounts import UnknownAccount, get_account

    account_id = context.resolve_account(ctx, account)
    try:
        region = get_account(account_id).phone_region
    except UnknownAccount:
        raise CliError(f"no account {account_id!r}") from None
    text = sys.stdin.read() if csv_file == "-" else Path(csv_file).read_text(encoding="utf-8-sig")
    items, report = parse_contacts(text, account_id, region)

    values = list(items.values())
    batches = [values[i : i + BATCH] for i in range(0, len(values), BATCH)]
    with (
        Progress(
            TextColumn("importing contacts"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=context.err,
        ) as progress,
        ThreadPoolExecutor(WRITERS) as pool,
    ):
        task = progress.add_task("import", total=len(values))
        for written in pool.map(_write_batch, batches):
            progress.advance(task, written)

    context.out.print(
        f"{report.rows} rows read: {report.contacts} contacts with {report.phones} phones stored in account "
        f"{account_id}, {len(report.problems)} problems"
    )
    if report.problems:
        table(
            "rows not (fully) imported",
            ["line", "problem"],
            [[str(line), problem] for line, problem in report.problems[:SHOWN_PROBLEMS]],
        )
        if len(report.problems) > SHOWN_PROBLEMS:
            context.out.print(f"… and {len(report.problems) - SHOWN_PROBLEMS} more")
        if strict:
            ctx.exit(1)


@group.command("export")
@context.account_option()
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write (default stdout).")
@click.pass_context
def export_contacts(ctx: click.Context, account: str | None, output: str | None) -> None:
    """Write the account's caller directory as CSV (name, phones, responsible): `contacts import` reads it back."""
    from callbridge.store.contacts import list_contacts

    account_id = context.resolve_account(ctx, account)
    contacts: dict[str, dict[str, Any]] = {}
    for item in list_contacts(account_id):
        contacts.setdefault(str(item.get("contact_id") or item["phone"]), item)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "phones", "responsible"])
    for item in sorted(contacts.values(), key=lambda i: (str(i.get("name") or ""), str(i["phone"]))):
        writer.writerow(
            [item.get("name") or "", ";".join(item.get("phones") or [item["phone"]]), item.get("responsible") or ""]
        )
    if output:
        Path(output).write_text(buffer.getvalue(), encoding="utf-8")
        context.err.print(f"{len(contacts)} contacts written to {output}")
    else:
        sys.stdout.write(buffer.getvalue())
