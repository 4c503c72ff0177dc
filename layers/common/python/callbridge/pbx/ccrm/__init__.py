"""ccrm.pl (docs/ccrm.md): a read-only contact-history API we poll for calls and their notes."""
