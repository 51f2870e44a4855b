"""Switchboard: control plane, dashboard, runtime, CLI and SDK for serverless Python apps."""
