"""Identity queries: who am I, and the admin's paged lists of users and API keys."""
