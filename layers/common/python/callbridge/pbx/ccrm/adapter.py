"""ccrm.pl as a PBX adapter (callbridge.pbx.base), docs/ccrm.md: no webhooks, so no webhook secret
and nothing to paste into a cabinet; its calls come from the scheduled poll and from backfill."""

from __future__ import annotations

from callbridge.pbx.base import Backfill, PbxAdapter, ScheduledJob
from callbridge.pbx.ccrm.protocol import SOURCE

ADAPTER = PbxAdapter(kind=SOURCE, capabilities={ScheduledJob: "importer", Backfill: "backfill"})
