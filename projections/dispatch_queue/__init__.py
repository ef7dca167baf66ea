"""The dispatch-queue projection: notification events become `dispatch_queue` rows (which
notifications need a dispatcher, from when, how urgently), and dead letters are copied to
the dead-letter topic. The dispatchers claim, lease and release those rows."""
