"""Cloud PBX "REST API for CRM" (docs/cloudpbx.md): the PBX posts history, event and
contact to one address of ours; we post makeCall and accounts to it."""
