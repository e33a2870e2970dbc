"""OpenAI-compatible endpoints under ``/v1/``: agents as models, requests as runs.

Specified in docs/openai.md.
"""
