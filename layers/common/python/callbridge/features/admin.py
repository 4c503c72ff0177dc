"""Operator actions shared by the local runtime and the CLI: applying account config files."""

from __future__ import annotations

import contextlib
import hashlib
import secrets as token_source
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, SecretStr

from callbridge import registry
from callbridge.core.accounts import clear_account_cache, token_digest
from callbridge.core.config import ACCOUNT_FILE_SUFFIXES, AccountConfig, load_account_file
from callbridge.core.phones import country_code, normalize
from callbridge.crm.base import SetupLines
from callbridge.infra import aws, clock, secrets
from callbridge.pbx.base import PbxAdapter
from callbridge.store import users
from callbridge.store.accounts import put_account
from callbridge.store.contacts import put_contact


@dataclass
class ApplyReport:
    account: str
    contacts_stored: int = 0
    contact_phones_rejected: list[str] = field(default_factory=list)


def _put_secret(name: str, value: str | None) -> None:
    client = aws.ssm()
    if value is None:
        with contextlib.suppress(client.exceptions.ParameterNotFound):
            client.delete_parameter(Name=name)
        return
    client.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


def _ensure_signing_key(name: str) -> None:
    """Create the account's recording-URL signing key once; an existing key is kept, so that URLs
    already given to a CRM stay valid. Rotate by deleting the parameter and applying again."""
    client = aws.ssm()
    try:
        client.get_parameter(Name=name, WithDecryption=False)
        return
    except client.exceptions.ParameterNotFound:
        pass
    with contextlib.suppress(client.exceptions.ParameterAlreadyExists):
        client.put_parameter(Name=name, Value=token_source.token_hex(32), Type="SecureString", Overwrite=False)


def secret_fields(model: BaseModel) -> dict[str, str]:
    """Every secret of a settings model, by field name: what goes to SSM and never to DynamoDB."""
    found: dict[str, str] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            found[name] = value.get_secret_value()
        elif isinstance(value, BaseModel):
            # A section's secrets (Bitrix24's `app.client_secret`), one level deep: crm.base.with_secrets.
            found.update({f"{name}.{key}": v for key, v in secret_fields(value).items() if "." not in key})
    return found


def _adapter(config: AccountConfig) -> PbxAdapter:
    found = registry.pbx_adapter_or_none(config.pbx.kind)
    if found is None:  # AccountConfig validated the kind against the registry already
        raise ValueError(f"unknown PBX kind {config.pbx.kind!r}")
    return found


def webhook_tokens(config: AccountConfig) -> list[str]:
    """The secrets a PBX presents on our webhooks, checked by digest (callbridge.core.accounts)."""
    return _adapter(config).webhook_tokens(config.pbx)


def apply_account(config: AccountConfig) -> ApplyReport:
    now = clock.iso(clock.now())
    for user in config.users:
        users.put_mapped(config.account, user.pbx_user, {**user.model_dump(mode="json"), "updated_at": now})

    path = secrets.account_path(config.account)
    for name, value in _adapter(config).stored_secrets(config.pbx).items():
        _put_secret(f"{path}/{name}", value)
    for crm in config.crms:
        for name, value in secret_fields(crm).items():
            _put_secret(f"{path}/{secrets.crm_secret_name(crm.name, name)}", value)
    api_keys = [k.get_secret_value() for k in config.api_keys]
    _put_secret(f"{path}/{secrets.API_KEY}", api_keys[0] if api_keys else None)
    _put_secret(f"{path}/{secrets.API_KEY_PREVIOUS}", api_keys[1] if len(api_keys) > 1 else None)
    basic = config.recordings.basic_auth
    _put_secret(f"{path}/{secrets.RECORDINGS_USER}", basic.username if basic else None)
    _put_secret(f"{path}/{secrets.RECORDINGS_PASSWORD}", basic.password.get_secret_value() if basic else None)
    _ensure_signing_key(f"{path}/{secrets.RECORDINGS_SIGNING_KEY}")
    # The account item last: its new `revision` tells every warm Lambda to read the secrets again
    # (infra/secrets.py, core/credentials.py), so they must be in SSM before it is.
    put_account(
        config.account,
        {
            "account": config.account,
            "name": config.name,
            "phone_region": config.phone_region,
            "phone_country_code": country_code(config.phone_region),
            "timezone": config.timezone,
            "pbx_kind": config.pbx.kind,
            "config": config.public(),
            "webhook_token_digests": [token_digest(t) for t in webhook_tokens(config)],
            "updated_at": now,
            "revision": token_source.token_hex(8),
        },
    )

    report = ApplyReport(account=config.account)
    for entry in config.contacts:
        phones = []
        for raw in entry.phones:
            phone = normalize(raw, config.phone_region)
            if phone.e164 is None:
                report.contact_phones_rejected.append(raw)
            else:
                phones.append(phone.e164)
        if phones:
            contact_id = entry.id or hashlib.sha256(("|".join(sorted(phones))).encode()).hexdigest()[:16]
            put_contact(config.account, contact_id, entry.name, phones, entry.responsible)
            report.contacts_stored += 1
    clear_account_cache()
    return report


def cabinet_lines(config: AccountConfig, base_url: str) -> list[str]:
    """What the operator pastes into the PBX web cabinet. Printed to their terminal on purpose;
    never logged."""
    base = base_url.rstrip("/")
    account = config.account
    lines = _adapter(config).cabinet_lines(config, base)
    for crm in config.crms:
        # A CRM whose portal needs our URLs pasted (callbridge.crm.base: `setup_lines`).
        setup = registry.crm_capability(crm.kind, SetupLines)
        if setup is not None:
            lines.extend(setup.setup_lines(config, crm, base))
    if config.recordings.basic_auth:
        lines.append(
            f"account {account}: MiniCRM recording URL template: {base}/v1/{account}/recordings?Rec={{%RefereceId%}}"
        )
    elif any(crm.kind == "minicrm" for crm in config.crms):
        # MiniCRM downloads each recorded call's file from that URL with Basic credentials: without
        # them every download is refused, and it never asks again (docs/minicrm.md).
        lines.append(
            f"account {account}: MiniCRM cannot download recordings: set recordings.basic_auth, then give MiniCRM "
            "support the recording URL template this command prints (docs/minicrm.md)"
        )
    return lines


def apply_accounts_dir(directory: Path, base_url: str) -> list[str]:
    """Apply every account file in `directory`; return the lines to show the operator."""
    lines: list[str] = []
    files = sorted(p for p in directory.iterdir() if p.suffix in ACCOUNT_FILE_SUFFIXES)
    for path in files:
        config = load_account_file(path)
        report = apply_account(config)
        lines.extend(cabinet_lines(config, base_url))
        lines.append(f"account {config.account}: {report.contacts_stored} contacts stored")
        if report.contact_phones_rejected:
            lines.append(
                f"account {config.account}: phones not understood, skipped: {', '.join(report.contact_phones_rejected)}"
            )
    return lines
