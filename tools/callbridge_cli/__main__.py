"""``python -m callbridge_cli``: the same as the ``callbridge`` console script."""

from __future__ import annotations

from callbridge_cli.main import main

if __name__ == "__main__":
    main()
