"""Provenance (every rule): per-job records, the identity of the running job, figure
identities and the audit that checks them.
"""
