"""The always-on service behind `watchkeeper serve`: camera workers and their supervisor."""
