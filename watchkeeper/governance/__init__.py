"""The rules around the watchlist: who may do what, what is kept and for how long,
and the audit log that proves it."""
