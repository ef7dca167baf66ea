"""Erasure of data subjects: requests, and the steps that carry them out."""
