"""Delivery of stored calls to the account's CRMs: one DLV item per (call, CRM) in the
Calls table, a sparse index of what is pending, realtime (queue) and batch (schedule) modes, leases so
two workers never take the same delivery, and parking of rejected and failed deliveries. See
docs/delivery.md."""
