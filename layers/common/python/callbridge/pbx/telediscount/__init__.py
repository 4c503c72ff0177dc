"""telediscount cloud PBX (docs/telediscount.md): its API client and its webhook protocol."""
