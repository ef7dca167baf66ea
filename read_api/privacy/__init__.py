"""Erasures and their receipts, as admins and auditors read them."""
