"""Benchmarks for messenger: persisted store-and-forward versus an in-memory relay.

Run with `python -m bench --help`. Each scenario starts its servers as subprocesses
on 127.0.0.1, drives them from several load-generator processes, and stops them.
"""
