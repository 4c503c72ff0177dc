"""docs/accounts.md carries the field reference generated from the account config models."""

from __future__ import annotations

from callbridge_cli import account_docs


def test_field_reference_is_up_to_date():
    section = account_docs.current_section(account_docs.DOC.read_text(encoding="utf-8"))
    assert section == account_docs.reference(), (
        "docs/accounts.md is out of date with callbridge.core.config: run "
        "`PYTHONPATH=layers/common/python:tools python -m callbridge_cli.account_docs --write`"
    )


def test_every_secret_field_is_marked_as_stored_in_ssm():
    from callbridge.pbx.cloudpbx.settings import CloudPbxSettings

    assert "crm_tokens" in CloudPbxSettings.model_fields
    assert "| `crm_tokens` | list of secret string (stored in SSM) |" in account_docs.reference()
