"""Synthetic labelled SMS corpus for the marketing classifier (generator and data)."""
