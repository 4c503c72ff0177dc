"""CRM connectors (the destination side): each is a settings model in callbridge.core.config, its limits,
and `send(batch) -> per-record results`, registered in callbridge.crm.registry."""
