"""The `callbridge` operator CLI: accounts, contacts, calls and recordings of a deployed stack or of
the local runtime (`make run`). Entry point: callbridge_cli.main:main."""
