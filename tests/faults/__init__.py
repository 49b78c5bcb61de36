"""Fault injection: kills, lost answers, dropped links, storms, slow consumers."""
