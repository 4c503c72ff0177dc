"""telediscount cloud PBX (specs/telediscount.md): its API client and its webhook protocol."""
