"""Environments (local desktop, browser), the OSWorld-compatible task harness, evaluators and bundled tasks."""
