"""CRM connectors (the destination side): each package has its settings model (`settings.SETTINGS`, a
callbridge.core.config.CrmSettings) and its connector (`connector.CONNECTOR`: records, limits, `send`,
and the optional capabilities its settings declare), both named in callbridge.registry; the interface
is callbridge.crm.base."""
