"""Provider adapters: SendGrid, Twilio and FCM behind one interface, their sandbox credentials,
the protection around their calls, and the checks of what they post back."""
