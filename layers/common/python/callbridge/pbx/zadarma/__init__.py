"""Zadarma and Novofon cloud PBX (docs/zadarma.md): signed call notifications to us; its REST API v1
(statistics, recordings, callback, extensions) from us."""
