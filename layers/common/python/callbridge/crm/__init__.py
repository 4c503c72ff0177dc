"""CRM connectors (the destination side): each package has its settings model (`settings.SETTINGS`, a
callbridge.core.config.CrmSettings) and its connector module (`connector.PACKAGE`: the connector class - records, limits, `send` - and the
table of its optional capabilities), both found through callbridge.registry; the interface is
callbridge.crm.base."""
