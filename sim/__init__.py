"""Simulated venues: mid-price path, lit order book, dark midpoint pool, background flow."""
