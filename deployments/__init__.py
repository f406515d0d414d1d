"""Prefect deployments of BOLT's flows (served by `bolt serve`)."""
