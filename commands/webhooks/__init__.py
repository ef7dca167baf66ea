"""Provider webhooks: delivery reports from SendGrid and Twilio, recorded as notification events."""
