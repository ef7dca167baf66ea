"""Delivery: dispatchers turn due notifications into provider calls and record every attempt."""
