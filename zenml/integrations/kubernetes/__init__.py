"""Kubernetes: each step of a run as one batch/v1 Job, exported as manifests."""
