"""CallBridge core: canonical model, store, adapters. Knows nothing of API Gateway.

The core validates an account's PBX and CRM settings with the packages' own models, but must not
know which packages exist: the registry (registry.py, standard library only at import) is handed to
it here, the first thing any use of CallBridge imports (core/catalog.py)."""

from callbridge import registry as _registry
from callbridge.core import catalog as _catalog

_catalog.install(_registry)
