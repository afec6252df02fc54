"""Notifications of alerts to other systems: signed webhooks and MQTT, both off until
configured (``notify`` settings), so that nothing leaves the machine otherwise.

An alert's notifications are queued in the database (:mod:`.outbox`) in the very
transaction that stores the alert: a crash can neither lose one nor send one for an
alert that was rolled back. A :class:`~watchkeeper.notify.notifier.Notifier` in the
service delivers them in a background thread, retrying with backoff across restarts.
A notification carries names, a score and a time, never a face, a vector or a camera's
address.
"""
