"""The `--env-vars` file of `sam local invoke` and `sam local start-api`, pointing every function of
the template at this runtime's emulated AWS.

`sam local` runs each function in a Docker container with the variables its template declares, and
an `--env-vars` file overrides only those (a variable the template does not declare is dropped). So
the file holds, per function logical id, exactly the function's resolved environment here: the
endpoint (template.yaml declares AWS_ENDPOINT_URL, empty on AWS), the table, queue and bucket names
moto has, and the recording links' base URL.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from callbridge_local.provision import ProvisionedStack

PUBLIC_BASE_URL = "PUBLIC_BASE_URL"


def sam_env_vars(stack: ProvisionedStack, *, public_base_url: str = "") -> dict[str, dict[str, str]]:
    """{FunctionLogicalId: {VARIABLE: value}} for every function of the stack (the shape `sam local`
    reads). An empty PUBLIC_BASE_URL becomes ``public_base_url``, as the runtime does for itself."""
    found: dict[str, dict[str, str]] = {}
    for logical_id, env in stack.function_env.items():
        values = dict(env)
        if PUBLIC_BASE_URL in values and not values[PUBLIC_BASE_URL] and public_base_url:
            values[PUBLIC_BASE_URL] = public_base_url
        found[logical_id] = values
    return found


def write_sam_env_vars(path: Path, stack: ProvisionedStack, *, public_base_url: str = "") -> Path:
    """Write the file atomically (a reader never sees half of it); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(sam_env_vars(stack, public_base_url=public_base_url), indent=2, sort_keys=True) + "\n"
    descriptor, temporary = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
