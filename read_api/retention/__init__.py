"""Retention and archives as their tenant's admins see them."""
