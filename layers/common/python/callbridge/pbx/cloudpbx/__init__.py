"""Cloud PBX "REST API for CRM" (specs/cloudpbx.md, seed 003): the PBX posts history, event and
contact to one address of ours; we post makeCall and accounts to it."""
