"""Google Cloud: Vertex AI training and serving, Compute Engine runs, gs:// stores.

Importing this package loads no Google library; each module imports what it
builds on, so `registry` and `storage` paths work with zenml's core alone.
"""
