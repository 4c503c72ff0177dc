"""Contract tests: every CRM connector and every PBX adapter of callbridge.registry against the same
checks, driven through their public interfaces and real HTTP fakes (profiles: crms.py, pbxs.py)."""
