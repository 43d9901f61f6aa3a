"""Adapters between faulttol and other fault-tolerance libraries."""
