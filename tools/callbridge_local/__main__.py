"""``python -m callbridge_local``: see runtime.parse_args for the options."""

from __future__ import annotations

import sys

from callbridge_local.runtime import main

if __name__ == "__main__":
    sys.exit(main())
