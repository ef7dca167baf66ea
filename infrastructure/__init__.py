"""Shared plumbing: settings, logging, servers, HTTP app, process supervision."""
