"""Read side: queries served from read models only, never from aggregates."""
