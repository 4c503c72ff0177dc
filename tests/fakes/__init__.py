"""Fake peers on 127.0.0.1 (telediscount, ccrm.pl) that validate our requests against their specs."""
