"""The admin dashboard API: queue, projection and delivery figures for admins and operators."""
