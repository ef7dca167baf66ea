"""The provider simulator: SendGrid, Twilio and FCM on one port, as far as the SDKs call them.

Every provider without credentials sends here (see `build_providers`). It checks the
sandbox credentials, counts calls per dedupe key, answers a repeat of an accepted key with
the same message id, fails calls at the configured rates or for magic recipients, and posts
signed delivery webhooks to HERALD_PUBLIC_URL as the real providers would. For push it also
plays the device, whose app posts each push's receipt back. Its counters live in memory, so
it runs as one process with one worker.
"""

from infrastructure.simulator.server import serve_simulator

__all__ = ["serve_simulator"]
